"""The temporal stage: smooths alpha across frames. Pluggable, selected by name.

A filter sees every frame in order and keeps its own state; ``reset()`` forgets it (seek,
scene cut, new stream).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .errors import ConfigError
from .frames import Alpha, RGBImage


class TemporalFilter(Protocol):
    def __call__(self, alpha: Alpha, frame: RGBImage) -> Alpha:
        """Return the smoothed alpha for this frame (same shape as ``alpha``)."""
        ...

    def reset(self) -> None: ...


class NoSmoothing:
    """Per-frame output, unchanged."""

    def __call__(self, alpha: Alpha, frame: RGBImage) -> Alpha:
        return alpha

    def reset(self) -> None:
        pass


class FixedEma:
    """alpha_t = (1 - w)·alpha_{t-1} + w·new: steady, but lags behind fast motion."""

    def __init__(self, new_weight: float = 0.4) -> None:
        if not 0.0 < new_weight <= 1.0:
            raise ConfigError(f"ema weight should be in (0, 1], got {new_weight}")
        self.new_weight = new_weight
        self._state: Alpha | None = None

    def __call__(self, alpha: Alpha, frame: RGBImage) -> Alpha:
        if self._state is None or self._state.shape != alpha.shape:
            self._state = alpha.copy()
        else:
            self._state += self.new_weight * (alpha - self._state)
        out: Alpha = self._state.copy()
        return out

    def reset(self) -> None:
        self._state = None


TEMPORAL_FILTERS: dict[str, Callable[[], TemporalFilter]] = {
    "none": NoSmoothing,
    "ema": FixedEma,
}


def make_temporal(name: str) -> TemporalFilter:
    try:
        factory = TEMPORAL_FILTERS[name.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown temporal mode {name!r} (choose from: {', '.join(TEMPORAL_FILTERS)})"
        ) from None
    return factory()
