"""FramePacket: what travels between pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

RGBImage = npt.NDArray[np.uint8]
"""H×W×3 uint8, RGB order."""
Alpha = npt.NDArray[np.float32]
"""H×W float32 in [0, 1]; 1 is foreground."""


@dataclass(slots=True)
class FramePacket:
    """One video frame and everything the stages attach to it.

    ``pts`` and ``time_base`` come from the source and leave the pipeline unchanged, so variable
    frame rate survives. Stages fill the later fields in order: ``model_input`` (preprocess),
    ``raw_output`` (engine), ``alpha`` (postprocess, temporal) and ``output`` (compose).
    ``run_engine`` False marks a frame that a stage before the engine has decided needs no
    engine run (that stage supplies its ``alpha``); preprocess and infer pass it through.
    ``in_range`` False marks a frame decoded only as context for the temporal stage (a
    ``DecodeRange``'s pre- or post-roll): it goes through every stage, and sinks skip it.
    """

    index: int
    image: RGBImage
    pts: int | None
    time_base: Fraction | None
    model_input: np.ndarray | None = None
    raw_output: np.ndarray | None = None
    alpha: Alpha | None = None
    output: npt.NDArray[np.uint8] | None = None
    run_engine: bool = True
    in_range: bool = True
    #: the foreground colour under soft edges when the mask step despills (else None: the
    #: frame itself); set with ``alpha``
    foreground: RGBImage | None = None

    @property
    def time_s(self) -> float | None:
        """Presentation time in seconds, or None when the source gave no timestamp."""
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frame."""
        return int(self.image.shape[1]), int(self.image.shape[0])
