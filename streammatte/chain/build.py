"""Chain: frame → alpha (→ composite), built in one place from one MatteConfig.

Files (``matte_video``), the frames API, ``streammatte live``, the live server, server jobs,
eval/compare and both benchmarks build their chain here, so what eval scores is what users
run. A caller that needs its own temporal policy (live load shedding) passes the filter in;
nothing patches a built chain from outside.

``Chain.stages`` is the one place the host or the all-GPU chain is chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType

import numpy as np
import numpy.typing as npt

from ..compose import Background, Compositor, OutputMode, parse_background
from ..config import MatteConfig
from ..frames import Alpha, FramePacket, RGBImage
from ..inference import Engine, open_engine
from ..mask import MaskStep
from ..models.store import ProgressFn
from ..pipeline import PipelineStats, Stage
from ..temporal import (
    LOOKAHEAD_FILTERS,
    LookaheadFilter,
    SkipsEngine,
    TemporalFilter,
    ZeroLag,
    make_streaming,
    make_temporal,
)
from .gpu import gpu_chain_blocker, gpu_stages, runs_on_device_buffers
from .host import host_stages
from .matter import Matter


def open_configured_engine(config: MatteConfig, on_download: ProgressFn | None = None,
                           auth_tokens: Mapping[str, str] | None = None) -> Engine:
    """The engine a MatteConfig names, with its model file, cache, device, back-end and
    input size."""
    return open_engine(config.engine, model_file=config.model_file, models_dir=config.models_dir,
                       device=config.device, backend=config.backend, progress=on_download,
                       input_size=config.input_size,
                       short_side=config.short_side, auth_tokens=auth_tokens)


def resolved_background(background: str, output: OutputMode) -> str:
    """``auto`` → transparent where the output keeps alpha (a cut-out, a matte), else white."""
    if background != "auto":
        return background
    return "transparent" if output in ("rgba", "matte") else "white"


class Chain:
    """Frame → alpha (→ composite) for one engine and one MatteConfig.

    ``engine``: an open Engine to use (the caller keeps and closes it); None opens the one
    ``config`` names (model file, cache, device, ``backend``, input size), closed with the
    chain. ``temporal``: a zero-lag filter to use instead of ``config.temporal`` (live load
    shedding passes its ``ShedUnderLoad``). ``output``: what the compose step makes (``rgb``
    composite, ``rgba``, ``matte``) over ``config.background``; None: alpha only.

    ``alpha(image)`` runs one frame through it (stills, the live page: zero-lag modes only);
    ``stages(write)`` gives the chain as pipeline stages (host or GPU, see there), look-ahead
    modes included, whose results lag their input by ``delay`` frames. A context manager.
    """

    def __init__(self, config: MatteConfig, *, engine: Engine | None = None,
                 temporal: TemporalFilter | None = None, output: OutputMode | None = None,
                 on_download: ProgressFn | None = None,
                 auth_tokens: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.output = output
        self.temporal_mode = config.temporal.lower()
        self._own_temporal = temporal
        self._zero_lag: TemporalFilter | None = temporal
        self.background: Background | None = None
        self.compositor: Compositor | None = None
        if output is not None:
            self.background = parse_background(resolved_background(config.background, output))
            self.compositor = Compositor(self.background, output)
        opened: Engine | None = None
        try:
            if engine is None:
                engine = opened = open_configured_engine(config, on_download, auth_tokens)
            self.matter = Matter(engine, rembg_compat=config.rembg_compat,
                                 upsample=config.upsample)
        except BaseException:
            if opened is not None:
                opened.close()
            if self.compositor is not None:
                self.compositor.close()
            raise
        self.engine = engine
        self._owns_engine = opened is not None
        #: threshold, shrink/grow, feather, despill: after temporal, before compositing
        self.mask = MaskStep(config)
        #: what the last ``stages()`` chose, and why: for the run report
        self.notes: list[str] = []
        self._close_gpu: Callable[[], None] | None = None
        self._engine_frames_before = 0
        self._on_gpu = False

    @property
    def delay(self) -> int:
        """Frames a result lags its input in ``stages()``: 0 for zero-lag modes."""
        if self._own_temporal is not None or self.temporal_mode not in LOOKAHEAD_FILTERS:
            return 0
        return LOOKAHEAD_FILTERS[self.temporal_mode]().delay

    def alpha(self, image: RGBImage) -> Alpha:
        """One frame's smoothed alpha, at once (a look-ahead mode is a ConfigError here:
        it needs ``stages()``). A keyframe mode (``SkipsEngine``, also behind live load
        shedding) runs the engine on keyframes only."""
        if self._zero_lag is None:
            self._zero_lag = make_temporal(self.temporal_mode)
        if isinstance(self._zero_lag, SkipsEngine):
            return self.mask.alpha(self._zero_lag.step(image, self.matter.alpha))
        return self.mask.alpha(self._zero_lag(self.matter.alpha(image), image))

    def engine_frames(self, stats: PipelineStats) -> int:
        """How many of the last ``stages()`` run's frames (``stats``) ran the engine: all of
        them but where a keyframe mode propagated the matte instead."""
        if self._on_gpu:
            return stats.frames_in
        return self.matter.engine_frames - self._engine_frames_before

    def composite(self, image: RGBImage, alpha: Alpha) -> npt.NDArray[np.uint8]:
        """The compose step on one frame: what ``output`` asked for over the background."""
        if self.compositor is None:
            raise ValueError("this chain was built without an output (alpha only)")
        return self.compositor(image, alpha, self.mask.foreground(image, alpha))

    def temporal_stream(self) -> LookaheadFilter:
        """A fresh push/flush temporal filter for one stream, look-ahead modes included."""
        if self._own_temporal is not None:
            self._own_temporal.reset()
            return ZeroLag(self._own_temporal)
        return make_streaming(self.temporal_mode)

    def gpu_blocker(self, *, want_alpha: bool = False) -> str | None:
        """Why this chain cannot run all on the GPU (None: it can); only asked of engines
        that run on device buffers."""
        background = self.background or Background("transparent")
        return self.mask.gpu_blocker() or gpu_chain_blocker(
            self.engine, temporal=self.temporal_mode, own_temporal=self._own_temporal is not None,
            background=background, output=self.output, upsample=self.matter.upsample,
            rembg_compat=self.config.rembg_compat, want_alpha=want_alpha)

    def stages(self, write: Callable[[FramePacket], None] | None = None, *,
               want_alpha: bool = False, allow_gpu: bool = True) -> list[Stage]:
        """The chain as pipeline stages, ending with ``write`` when given.

        The all-GPU chain is taken when the engine runs on device buffers and nothing asked
        of the run lacks a kernel (``gpu_blocker``); ``want_alpha`` says the caller reads
        ``packet.alpha`` (the GPU chain fills only ``packet.output``); ``allow_gpu=False``
        keeps the host chain. ``notes`` then says which chain runs and why.
        """
        self._release_gpu()
        self.notes = []
        self._engine_frames_before = self.matter.engine_frames
        self._on_gpu = False
        on_device = runs_on_device_buffers(self.engine)
        blocker = self.gpu_blocker(want_alpha=want_alpha) if on_device else None
        if on_device and not allow_gpu:
            blocker = "the caller asked for the host chain"
        if on_device and blocker is None:
            assert self.background is not None and self.output is not None
            self._on_gpu = True
            stages, self._close_gpu = gpu_stages(
                self.engine, temporal=self.temporal_mode, background=self.background,
                output=self.output, batch_size=self.config.batch_size, write=write)
            self.notes.append("all-GPU chain: frames cross PCIe once each way; preprocess, "
                              "alpha, temporal and composite ran as CUDA kernels")
            return stages
        if blocker is not None:
            self.notes.append(f"host chain around the GPU engine: {blocker}")
        return host_stages(self.matter, self.temporal_stream(), self.compositor, write,
                           self.config.batch_size, self.mask)

    def _release_gpu(self) -> None:
        if self._close_gpu is not None:
            close, self._close_gpu = self._close_gpu, None
            close()

    def close(self) -> None:
        """Free the GPU buffers and the background; close the engine if the chain opened it.
        Safe to call twice."""
        self._release_gpu()
        if self.compositor is not None:
            self.compositor.close()
        if self._owns_engine:
            self._owns_engine = False
            self.engine.close()

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
