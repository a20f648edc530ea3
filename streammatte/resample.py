"""Lanczos resizing exactly as rembg does it, for ``rembg_compat``.

rembg resizes with ``PIL.Image.resize(..., LANCZOS)`` on 8-bit images, so calling Pillow is what
makes the result bit-identical. OpenCV's INTER_LANCZOS4 differs by several levels: Pillow widens
its filter when shrinking (antialiasing), rounds its weights to fixed point and rounds to 8 bits
after each of its two passes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image


def resize_lanczos(image: npt.NDArray[np.uint8], size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """Resize an H×W, H×W×3 or H×W×4 uint8 image to ``size`` = (width, height), as Pillow
    does."""
    resized = Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.Resampling.LANCZOS)
    return np.array(resized, dtype=np.uint8)
