"""Frame → model input: resize, scale, normalise, lay out.

The input size comes from the catalog (``InputSpec.target_size``): fixed, the short side
scaled to a length (aspect kept), or the frame's own size, each side rounded down to a
multiple where the network needs it.

Two recipes. The default scales pixels by a fixed 1/255 and resizes with OpenCV (area when
shrinking, bilinear when growing). ``rembg_compat`` reproduces rembg exactly instead: Pillow's
Lanczos resize and division by the image's own maximum, which makes the input depend on the
brightest pixel of each frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from .frames import RGBImage
from .models.catalog import InputSpec
from .resample import resize_lanczos


def resize_rgb(image: RGBImage, size: tuple[int, int]) -> RGBImage:
    """OpenCV resize to (width, height): area when shrinking, bilinear when growing."""
    if (image.shape[1], image.shape[0]) == size:
        return image
    shrinking = size[0] * size[1] < image.shape[0] * image.shape[1]
    out = cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return np.asarray(out, dtype=np.uint8)


class Preprocessor:
    """Callable that turns one RGB frame into one model input sample (no batch axis)."""

    def __init__(self, spec: InputSpec, *, rembg_compat: bool = False) -> None:
        self.spec = spec
        self.rembg_compat = rembg_compat
        # Folding 1/255 into the mean/std turns normalisation into one multiply-add.
        std = np.asarray(spec.std, dtype=np.float32)
        self._scale = (1.0 / (255.0 * std)).astype(np.float32)
        self._offset = (-np.asarray(spec.mean, dtype=np.float32) / std).astype(np.float32)

    def __call__(self, image: RGBImage) -> np.ndarray:
        h, w = image.shape[:2]
        size = self.spec.target_size(w, h)
        if size != (w, h):
            image = resize_lanczos(image, size) if self.rembg_compat else resize_rgb(image, size)
        if self.spec.dtype == "uint8":
            sample: np.ndarray = image
        elif self.rembg_compat:
            scaled = image / max(int(image.max()), 1)  # rembg: im_ary / np.max(im_ary), float64
            mean = np.asarray(self.spec.mean)
            std = np.asarray(self.spec.std)
            sample = ((scaled - mean) / std).astype(np.float32)
        else:
            sample = image.astype(np.float32) * self._scale + self._offset
        if self.spec.layout == "nchw":
            sample = np.ascontiguousarray(sample.transpose(2, 0, 1))
        return sample
