"""Pillow-exact Lanczos resampling, for bit-parity with rembg without depending on Pillow.

rembg resizes with ``PIL.Image.resize(..., LANCZOS)`` on 8-bit images. Pillow's filter widens
its support when downscaling (an antialiasing filter), rounds its weights to 22-bit fixed point
and rounds to uint8 after each of its two passes (horizontal, then vertical). OpenCV's
INTER_LANCZOS4 does none of these, so its results differ by several levels; this module
reproduces Pillow's arithmetic. Float64 matrix products are exact here: every partial sum is an
integer below 2**53.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt

_PRECISION_BITS = 32 - 8 - 2
_LANCZOS_SUPPORT = 3.0


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x *= math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    if -_LANCZOS_SUPPORT <= x < _LANCZOS_SUPPORT:
        return _sinc(x) * _sinc(x / _LANCZOS_SUPPORT)
    return 0.0


@lru_cache(maxsize=32)
def _weights(in_size: int, out_size: int) -> npt.NDArray[np.float64]:
    """(out_size, in_size) matrix of Pillow's fixed-point Lanczos coefficients."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = _LANCZOS_SUPPORT * filterscale
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        taps = [_lanczos((x + xmin - center + 0.5) / filterscale) for x in range(xmax - xmin)]
        total = sum(taps)
        for x, w in enumerate(taps):
            w = w / total if total != 0.0 else w
            fixed = int(0.5 + w * (1 << _PRECISION_BITS)) if w >= 0 else int(
                -0.5 + w * (1 << _PRECISION_BITS))
            matrix[xx, x + xmin] = fixed
    return matrix


def _pass(image: npt.NDArray[np.uint8], weights: npt.NDArray[np.float64], axis: int
          ) -> npt.NDArray[np.uint8]:
    moved = np.moveaxis(image, axis, -1).astype(np.float64)
    acc = moved @ weights.T + float(1 << (_PRECISION_BITS - 1))
    out = np.clip(np.floor(acc / float(1 << _PRECISION_BITS)), 0, 255).astype(np.uint8)
    return np.moveaxis(out, -1, axis)


def resize_lanczos(image: npt.NDArray[np.uint8], size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """Resize an H×W or H×W×C uint8 image to ``size`` = (width, height), as Pillow does."""
    width, height = size
    in_height, in_width = image.shape[:2]
    horizontal = (_weights(in_width, width), 1) if in_width != width else None
    vertical = (_weights(in_height, height), 0) if in_height != height else None
    # Pillow runs the horizontal pass first, except when the width grows while the height
    # shrinks (checked against Pillow 13 on every combination of growing and shrinking axes).
    passes = [vertical, horizontal] if width > in_width and height < in_height else [
        horizontal, vertical]
    out = image
    for step in passes:
        if step is not None:
            out = _pass(out, *step)
    return np.ascontiguousarray(out)
