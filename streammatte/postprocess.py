"""Model output → alpha at frame size.

The default reads the model's output as a probability (applying a sigmoid where the graph ends
in logits), clips it to [0, 1] and resizes it bilinearly. rembg instead stretches every mask by
its own min and max; on video that rescales each frame differently, which shows as flicker in
soft and background regions, so it is only used with ``rembg_compat`` (bit-parity with rembg).
"""

from __future__ import annotations

import cv2
import numpy as np

from .frames import Alpha
from .models.catalog import OutputSpec
from .resample import resize_lanczos


class Postprocessor:
    """Callable (one sample's raw output, (width, height) or None for the model's own
    resolution) → Alpha."""

    def __init__(self, spec: OutputSpec, *, rembg_compat: bool = False) -> None:
        self.spec = spec
        self.rembg_compat = rembg_compat

    def __call__(self, raw: np.ndarray, size: tuple[int, int] | None) -> Alpha:
        pred: np.ndarray = np.asarray(raw, dtype=np.float32)
        if pred.ndim == 3:  # C×H×W: pick the channel the catalog names
            pred = pred[self.spec.channel]
        if pred.ndim != 2:
            raise ValueError(f"model output should be H×W or C×H×W, got shape {raw.shape}")
        if self.spec.activation == "sigmoid":
            pred = 1.0 / (1.0 + np.exp(-pred))
        if self.rembg_compat:
            lo, hi = float(pred.min()), float(pred.max())
            pred = (pred - lo) / (hi - lo) if hi > lo else np.zeros_like(pred)
            mask = (pred * 255).astype(np.uint8)  # truncation, as rembg does
            if size is not None and (mask.shape[1], mask.shape[0]) != size:
                mask = resize_lanczos(mask, size)
            return mask.astype(np.float32) / 255.0
        pred = np.clip(pred, 0.0, 1.0)
        if size is not None and (pred.shape[1], pred.shape[0]) != size:
            pred = cv2.resize(pred, size, interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(pred, dtype=np.float32)
