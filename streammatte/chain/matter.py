"""Frame → alpha on the host for one engine: preprocess, infer, postprocess (+ upsampling).

No temporal step here: the chain (:class:`streammatte.chain.Chain`) owns that, so every path
smooths the same way. The steps are separate so the pipeline can run them on different threads;
``alpha()`` runs them in order for one frame.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..frames import Alpha, RGBImage
from ..inference.base import Engine
from ..postprocess import Postprocessor
from ..preprocess import Preprocessor
from ..refine import UPSAMPLERS, Upsampler, guided_upsample


class Matter:
    """The engine's part of the chain: ``preprocess`` (frame → model input), ``infer`` (a
    batch of inputs → raw outputs, copied), ``to_alpha`` (raw output → alpha at frame size,
    before any temporal smoothing)."""

    def __init__(self, engine: Engine, *, rembg_compat: bool = False,
                 upsample: Upsampler = "bilinear") -> None:
        if upsample not in UPSAMPLERS:
            raise ConfigError(f"unknown upsampler {upsample!r} (choose from: "
                              f"{', '.join(UPSAMPLERS)})")
        self.engine = engine
        self.preprocess = Preprocessor(engine.input_spec, rembg_compat=rembg_compat)
        self.postprocess = Postprocessor(engine.output_spec, rembg_compat=rembg_compat)
        # rembg parity fixes the resampling, so guided upsampling would break it
        self.upsample: Upsampler = "bilinear" if rembg_compat else upsample

    def infer(self, samples: list[np.ndarray]) -> list[np.ndarray]:
        raw = self.engine.infer(np.stack(samples))
        # the engine may reuse its output buffer on the next call: keep copies
        return [np.array(r) for r in raw]

    def to_alpha(self, raw: np.ndarray, image: RGBImage) -> Alpha:
        """One sample's raw output → alpha at the frame's size (before temporal)."""
        if self.upsample == "guided":
            return guided_upsample(self.postprocess(raw, None), image)
        return self.postprocess(raw, (image.shape[1], image.shape[0]))

    def alpha(self, image: RGBImage) -> Alpha:
        """One frame's alpha, unsmoothed."""
        (raw,) = self.infer([self.preprocess(image)])
        return self.to_alpha(raw, image)
