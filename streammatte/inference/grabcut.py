"""GrabCut: the classic interactive-segmentation baseline (Rother et al. 2004, OpenCV).

No network, no weights. The first frame is cut from a box (a centred one covering
``box_fraction`` of the frame unless the caller gives its own); every later frame starts from
the previous frame's cut, eroded to "probably foreground" and dilated to "probably background",
so the object is tracked as long as it stays roughly in place. It is stateful: frames must come
in order, and ``reset()`` goes back to the box.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import ConfigError
from ..models.catalog import InputSpec, OutputSpec
from .base import Engine

Box = tuple[int, int, int, int]
"""(x, y, width, height) in pixels of the input frame."""


class GrabCutEngine(Engine):
    name = "grabcut"
    device = "cpu"
    provider = "opencv grabCut"
    stateful = True

    def __init__(self, *, box: Box | None = None, box_fraction: float = 0.7,
                 iterations: int = 3, working_width: int = 320) -> None:
        if not 0.0 < box_fraction <= 1.0:
            raise ConfigError(f"box_fraction should be in (0, 1], got {box_fraction}")
        if iterations < 1:
            raise ConfigError(f"iterations should be >= 1, got {iterations}")
        if box is not None and (box[2] < 2 or box[3] < 2):
            raise ConfigError(f"box {box} is too small: width and height should be >= 2 pixels")
        self.input_spec = InputSpec(name=None, size=None, layout="nhwc", dtype="uint8")
        self.output_spec = OutputSpec()
        self.max_batch = 64
        self.box = box
        self.box_fraction = box_fraction
        self.iterations = iterations
        # GrabCut's cost grows with pixels × iterations: cut at reduced size, the mask is
        # upsampled by the postprocessor anyway
        self.working_width = working_width
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
        self._prev: np.ndarray | None = None

    def reset(self) -> None:
        self._prev = None

    def _rect(self, w: int, h: int, scale: float) -> Box:
        if self.box is not None:
            x, y, bw, bh = (round(v * scale) for v in self.box)
            x, y = min(max(0, x), w - 2), min(max(0, y), h - 2)
            return x, y, max(2, min(bw, w - x)), max(2, min(bh, h - y))
        bw, bh = max(2, round(w * self.box_fraction)), max(2, round(h * self.box_fraction))
        return (w - bw) // 2, (h - bh) // 2, bw, bh

    def _cut(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        scale = 1.0
        if w > self.working_width:
            scale = self.working_width / w
            frame = cv2.resize(frame, (self.working_width, max(1, round(h * scale))),
                               interpolation=cv2.INTER_AREA)
            h, w = frame.shape[:2]
        bgr = np.ascontiguousarray(frame[..., ::-1], dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        prev = self._prev
        if prev is not None and prev.shape == (h, w) and prev.any():
            sure_fg = cv2.erode(prev, self._kernel)
            maybe = cv2.dilate(prev, self._kernel)
            mask[:] = cv2.GC_BGD
            mask[maybe > 0] = cv2.GC_PR_BGD
            mask[prev > 0] = cv2.GC_PR_FGD
            mask[sure_fg > 0] = cv2.GC_FGD
            # the whole frame may be "sure" one class: GrabCut needs both to fit its models
            if (mask == cv2.GC_BGD).any() or (mask == cv2.GC_PR_BGD).any():
                cv2.grabCut(bgr, mask, (0, 0, 0, 0), bgd, fgd, self.iterations,
                            cv2.GC_INIT_WITH_MASK)
        else:
            cv2.grabCut(bgr, mask, self._rect(w, h, scale), bgd, fgd, self.iterations,
                        cv2.GC_INIT_WITH_RECT)
        fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
        self._prev = fg
        return np.asarray(fg, dtype=np.uint8)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        masks = [self._cut(frame).astype(np.float32) for frame in batch]
        if len({m.shape for m in masks}) > 1:
            raise ValueError("frames of one batch must share a size")
        return np.stack(masks)
