"""MOG2 background subtraction: the classic baseline for static-camera footage.

No network, no weights: a per-pixel Gaussian mixture learns the background over time
(``cv2.createBackgroundSubtractorMOG2``). Shadows (marked 127 by OpenCV) count as background.
It needs a static camera and frames in order, so it is stateful.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..models.catalog import InputSpec, OutputSpec
from .base import Engine


class Mog2Engine(Engine):
    name = "mog2"
    device = "cpu"
    provider = "opencv BackgroundSubtractorMOG2"
    stateful = True

    def __init__(self, *, history: int = 500, var_threshold: float = 16.0,
                 detect_shadows: bool = True, working_width: int = 640) -> None:
        # Frames wider than working_width are subtracted at reduced size: MOG2's cost is per
        # pixel and the mask is upsampled afterwards anyway.
        self.input_spec = InputSpec(name=None, size=None, layout="nhwc", dtype="uint8")
        self.output_spec = OutputSpec()
        self.max_batch = 64
        self._params = (history, var_threshold, detect_shadows)
        self._working_width = working_width
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self.reset()

    def reset(self) -> None:
        history, var_threshold, detect_shadows = self._params
        self._subtractor = cv2.createBackgroundSubtractorMOG2(
            history=history, varThreshold=var_threshold, detectShadows=detect_shadows
        )

    def infer(self, batch: np.ndarray) -> np.ndarray:
        masks = []
        for frame in batch:
            h, w = frame.shape[:2]
            if w > self._working_width:
                size = (self._working_width, round(h * self._working_width / w))
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            fg = self._subtractor.apply(frame)
            fg = np.where(fg == 255, 255, 0).astype(np.uint8)
            fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, self._kernel)
            masks.append(fg.astype(np.float32) / 255.0)
        if len({m.shape for m in masks}) > 1:
            raise ValueError("frames of one batch must share a size")
        return np.stack(masks)
