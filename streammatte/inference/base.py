"""The Engine contract: a model-ready batch in, the model's raw output out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from ..models.catalog import InputSpec, OutputSpec


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """Name, shape (None or a string for a free dimension) and dtype of one graph tensor."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str


class Engine(ABC):
    """Runs one model on one device.

    ``infer`` takes a batch laid out as ``input_spec`` says (N×C×H×W float32 for most models)
    and returns N×… raw output for ``Postprocessor``. The returned array may be reused by the
    next call: copy what you keep. Engines are context managers; ``close()`` is idempotent.
    """

    #: registry name, e.g. "u2netp" or "mog2"
    name: str
    #: "cpu" or "cuda:N"
    device: str
    #: what actually runs the graph, e.g. "onnxruntime CPUExecutionProvider"
    provider: str
    #: how frames must be prepared for this engine, and how to read its output
    input_spec: InputSpec
    output_spec: OutputSpec
    #: largest batch ``infer`` accepts; 1 for graphs with a fixed batch axis
    max_batch: int = 1
    #: True when the engine keeps state across frames (background models): frames must be
    #: fed in order and never dropped ahead of it
    stateful: bool = False
    #: set by the ``auto`` back-end when a GPU back-end it selected failed to open and this
    #: engine runs instead: which one, and why (the run report's fallback note)
    gpu_fallback: str | None = None

    @property
    def inputs(self) -> Mapping[str, TensorSpec]:
        return {}

    @property
    def outputs(self) -> Mapping[str, TensorSpec]:
        return {}

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run the model on ``batch`` (N samples) and return its N raw outputs."""

    def reset(self) -> None:  # noqa: B027 - optional hook, most engines keep no state
        """Forget state carried between frames (seek, scene cut, new stream)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the session; safe to call twice."""

    def describe(self) -> str:
        return f"{self.name} on {self.device} ({self.provider})"

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
