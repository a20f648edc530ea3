"""Mask controls: threshold, shrink/grow, feather and despill, in the one place the chain
applies them (after temporal smoothing, before compositing).

These are what users of the OBS plugin and rembg ask for against halos and colour spill:

- ``threshold``: alpha ≥ t → opaque, else clear; a hard mask, no soft edge left;
- ``shrink_px`` / ``grow_px``: erode or dilate by a disc of that radius, in frame pixels
  (grey-level, so a soft edge moves as a whole);
- ``feather_px``: a Gaussian blur whose edge ramps from 10 % to 90 % over about that many
  pixels (σ = feather / 2.56);
- ``despill``: the foreground colour under soft edges is estimated
  (``refine.decontaminate``), so the old background no longer shows through the edge of the
  composite or the foreground output.

They apply in that order: a threshold first, so shrink and feather then work on a clean mask.
"""

from __future__ import annotations

import cv2
import numpy as np

from .config import MatteConfig
from .frames import Alpha, RGBImage
from .refine import decontaminate

#: the 10–90 % rise of a Gaussian-blurred step is 2.56 σ
_RAMP_PER_SIGMA = 2.56


class MaskStep:
    """The mask controls of one MatteConfig, as two calls: ``alpha`` (the mask itself) and
    ``foreground`` (the colour to compose with, or None when ``despill`` is off)."""

    def __init__(self, config: MatteConfig) -> None:
        self.threshold = config.threshold
        self.radius = config.grow_px or -config.shrink_px  # > 0 grows, < 0 shrinks
        self.feather_px = config.feather_px
        self.despill = config.despill
        self._disc: np.ndarray | None = None
        if self.radius:
            # a Euclidean disc: OpenCV's MORPH_ELLIPSE is lopsided by a pixel
            r = abs(self.radius)
            yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
            self._disc = (np.hypot(yy, xx) <= r).astype(np.uint8)

    @property
    def changes_alpha(self) -> bool:
        return self.threshold is not None or bool(self.radius) or self.feather_px > 0

    @property
    def active(self) -> bool:
        """True when any control is set (False: the step is skipped)."""
        return self.changes_alpha or self.despill

    def describe(self) -> str:
        """The controls in effect, as CLI flags (``threshold 0.5, shrink 2 px``)."""
        parts = []
        if self.threshold is not None:
            parts.append(f"threshold {self.threshold:g}")
        if self.radius:
            parts.append(f"{'grow' if self.radius > 0 else 'shrink'} {abs(self.radius)} px")
        if self.feather_px:
            parts.append(f"feather {self.feather_px:g} px")
        if self.despill:
            parts.append("despill")
        return ", ".join(parts)

    def gpu_blocker(self) -> str | None:
        """Why the all-GPU chain cannot run these controls (None: there are none)."""
        if not self.active:
            return None
        return f"mask controls ({self.describe()}) run on the CPU"

    def alpha(self, alpha: Alpha) -> Alpha:
        """``alpha`` (H×W float32 in [0, 1]) with threshold, shrink/grow and feather applied;
        the same array when none is set."""
        if not self.changes_alpha:
            return alpha
        out = np.asarray(alpha, np.float32)
        if self.threshold is not None:
            out = (out >= np.float32(self.threshold)).astype(np.float32)
        if self._disc is not None:
            morph = cv2.dilate if self.radius > 0 else cv2.erode
            out = np.asarray(morph(out, self._disc, borderType=cv2.BORDER_REPLICATE),
                             np.float32)
        if self.feather_px > 0:
            sigma = self.feather_px / _RAMP_PER_SIGMA
            out = np.asarray(cv2.GaussianBlur(out, (0, 0), sigma,
                                              borderType=cv2.BORDER_REPLICATE), np.float32)
            np.clip(out, 0.0, 1.0, out=out)
        return out

    def foreground(self, image: RGBImage, alpha: Alpha) -> RGBImage | None:
        """The colour to compose with: ``image`` decontaminated under ``alpha``'s soft edges
        when ``despill`` is on, else None (compose with the frame itself)."""
        if not self.despill:
            return None
        return decontaminate(image, alpha)
