"""Chain: frame → alpha (→ composite), built in one place from one MatteConfig.

Files (``matte_video``), the frames API, ``streammatte live``, the live server, server jobs,
eval/compare and both benchmarks build their chain here, so what eval scores is what users
run. A caller that needs its own temporal policy (live load shedding) passes the filter in;
nothing patches a built chain from outside.

``Chain.stages`` is the one place the host or the all-GPU chain is chosen; a chain whose engine
runs on a GPU because a GPU back-end (or ``auto``) was asked for is guarded there, and in
``Chain.alpha``, by the self-check of :mod:`.check`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import TracebackType

import numpy as np
import numpy.typing as npt

from ..compose import Background, Compositor, OutputMode, parse_background
from ..config import MatteConfig
from ..cuda.select import GPU_BACKENDS
from ..errors import GpuCheckError, StreamMatteError
from ..frames import Alpha, FramePacket, RGBImage
from ..inference import Engine, open_engine
from ..mask import MaskStep
from ..models.store import ProgressFn
from ..pipeline import PipelineStats, Stage
from ..temporal import (
    LOOKAHEAD_FILTERS,
    DecidesEngine,
    LookaheadFilter,
    SkipsEngine,
    TemporalFilter,
    ZeroLag,
    make_streaming,
    make_temporal,
)
from .check import GpuCheck, default_records, open_failure_note, runs_on_gpu
from .gpu import gpu_chain_blocker, gpu_stages, runs_on_device_buffers
from .host import EngineCount, KeyframeGate, encode_stage, host_stages
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

    With ``config.backend`` ``auto``, ``trt`` or ``onnxruntime-cuda`` and an engine on a GPU,
    both check the GPU chain on first use (:mod:`.check`): ``auto`` falls back to the CPU
    chain (then ``engine`` is the CPU engine and ``notes`` say why), the others raise
    GpuCheckError. A GPU back-end that raises while opening fails the same way.
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
                engine = opened = self._open(on_download, auth_tokens)
            self.matter = Matter(engine, rembg_compat=config.rembg_compat,
                                 upsample=config.upsample)
        except BaseException:
            if opened is not None:
                opened.close()
            if self.compositor is not None:
                self.compositor.close()
            raise
        self.engine = engine
        #: engines this chain closes: the one it opened, the CPU one after a fallback
        self._owned: list[Engine] = [opened] if opened is not None else []
        #: threshold, shrink/grow, feather, despill: after temporal, before compositing
        self.mask = MaskStep(config)
        #: what the last ``stages()`` chose, and why: for the run report
        self.notes: list[str] = []
        self._opening_notes: list[str] = []
        self._close_gpu: Callable[[], None] | None = None
        #: the last host run's count of frames that ran the engine; None: the all-GPU chain
        self._engine_count: EngineCount | None = None
        self._host_around_gpu = False
        self._check: GpuCheck | None = None
        if config.backend == "auto" and engine.gpu_fallback:
            self._opening_notes.append(open_failure_note(
                engine, engine.gpu_fallback, default_records(config.models_dir), config.device))
        if GpuCheck.applies(engine, config.backend):
            self._check = GpuCheck(
                engine, backend=config.backend,
                open_reference=lambda: open_configured_engine(
                    self._reference_config(), on_download, auth_tokens),
                on_fallback=self._fall_back, note=lambda text: self.notes.append(text),
                records=default_records(config.models_dir), upsample=self.matter.upsample,
                rembg_compat=config.rembg_compat)

    def _open(self, on_download: ProgressFn | None,
              auth_tokens: Mapping[str, str] | None) -> Engine:
        config = self.config
        try:
            return open_configured_engine(config, on_download, auth_tokens)
        except Exception as exc:
            if config.backend not in GPU_BACKENDS or isinstance(exc, StreamMatteError):
                raise
            # an explicit GPU back-end that breaks while opening says so in one line
            raise GpuCheckError(f"backend {config.backend!r} failed to open {config.engine}: "
                                f"{type(exc).__name__}: {exc}") from exc

    def _reference_config(self) -> MatteConfig:
        """The CPU chain's config: the same model (and file) on ONNX Runtime's CPU provider."""
        name = self.engine.name
        same = name == self.config.engine.lower()
        return self.config.with_options(engine=name, backend="onnxruntime", device="cpu",
                                        model_file=self.config.model_file if same else None)

    def _fall_back(self, cpu: Matter) -> None:
        """The self-check rejected the GPU chain: the CPU engine's steps replace it."""
        self._owned.append(cpu.engine)
        self.engine, self.matter = cpu.engine, cpu
        self._host_around_gpu = False
        self.notes = [n for n in self.notes if not n.startswith(_CHAIN_NOTES)]

    @property
    def delay(self) -> int:
        """Frames a result lags its input in ``stages()``: 0 for zero-lag modes."""
        if self._own_temporal is not None or self.temporal_mode not in LOOKAHEAD_FILTERS:
            return 0
        return LOOKAHEAD_FILTERS[self.temporal_mode]().delay

    def alpha(self, image: RGBImage) -> Alpha:
        """One frame's smoothed alpha, at once (a look-ahead mode is a ConfigError here:
        it needs ``stages()``). A keyframe mode (``SkipsEngine``, also behind live load
        shedding) runs the engine on keyframes only, unless the engine is stateful (MOG2 learns
        from every frame)."""
        if self._zero_lag is None:
            self._zero_lag = make_temporal(self.temporal_mode)
        check, matter = self._check, self.matter
        engine: Callable[[RGBImage], Alpha] = matter.alpha
        if check is not None and check.rejected is None:
            engine = functools.partial(check.alpha, matter=matter)
        if isinstance(self._zero_lag, SkipsEngine) and not self.engine.stateful:
            return self.mask.alpha(self._zero_lag.step(image, engine))
        return self.mask.alpha(self._zero_lag(engine(image), image))

    def engine_frames(self, stats: PipelineStats) -> int:
        """How many of the last ``stages()`` run's frames (``stats``) ran the engine: all of
        them but where a keyframe mode propagated the matte instead."""
        if self._engine_count is None:
            return stats.frames_in
        return self._engine_count.frames

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
        keeps the host chain. ``notes`` then says which chain runs and why. A chain under
        self-check gets the guard stages of :mod:`.check` around either.
        """
        self._release_gpu()
        self.notes = list(self._opening_notes)
        self._engine_count = None
        on_device = runs_on_device_buffers(self.engine)
        blocker = self.gpu_blocker(want_alpha=want_alpha) if on_device else None
        if on_device and not allow_gpu:
            blocker = "the caller asked for the host chain"
        check = self._check if self._check is not None and self._check.rejected is None \
            else None
        if on_device and blocker is None:
            assert self.background is not None and self.output is not None
            stages, self._close_gpu = gpu_stages(
                self.engine, temporal=self.temporal_mode, background=self.background,
                output=self.output, batch_size=self.config.batch_size, write=None,
                capture_alpha=1 if check is not None else 0)
            self.notes.append("all-GPU chain: frames cross PCIe once each way; preprocess, "
                              "alpha, temporal and composite ran as CUDA kernels")
            if check is not None:
                stages = check.guard(
                    [_passing("preprocess"), stages[0], _passing("compose")],
                    self._cpu_stages, kind="all-GPU chain", gpu_alpha=lambda p: p.alpha,
                    composite=lambda p, alpha: self.composite(p.image, alpha),
                    release_primary=self._release_gpu)
        else:
            if blocker is not None:
                self.notes.append(f"host chain around the GPU engine: {blocker}")
            self._host_around_gpu = runs_on_gpu(self.engine)
            stream = self.temporal_stream()
            # a keyframe mode's motion stage goes first, outside the self-check's guard: the
            # host stages it may fall back to take their frames through the same gate. A
            # zero-lag one (keyframes-live, live load shedding) is behind ZeroLag here
            decides = stream.inner if isinstance(stream, ZeroLag) else stream
            gate = (KeyframeGate(decides, every_frame=self.engine.stateful)
                    if isinstance(decides, DecidesEngine) else None)
            count = self._engine_count = EngineCount()
            stages = host_stages(self.matter, stream, self.compositor, None,
                                 self.config.batch_size, self.mask, gate=gate, count=count)
            if check is not None:
                gpu = self.matter
                stages = check.guard(
                    stages, lambda cpu: self._cpu_stages(cpu, stream, gate, count),
                    kind="host chain",
                    gpu_alpha=lambda p: None if p.raw_output is None else gpu.to_alpha(
                        p.raw_output, p.image),
                    composite=None, release_primary=lambda: None)
            if gate is not None:
                stages.insert(0, gate.stage())
        if write is not None:
            stages.append(encode_stage(write))
        return stages

    def _cpu_stages(self, cpu: Matter, stream: LookaheadFilter | None = None,
                    gate: KeyframeGate | None = None, count: EngineCount | None = None
                    ) -> list[Stage]:
        """The host chain on the CPU engine: what a rejected GPU chain restarts as (with the
        host run's own ``stream``, ``gate`` and ``count`` when it replaces host stages)."""
        if count is None:  # the all-GPU chain fell back: count from here on the host
            count = self._engine_count = EngineCount()
        return host_stages(cpu, stream or self.temporal_stream(), self.compositor, None,
                           self.config.batch_size, self.mask, gate=gate, count=count)

    def run_notes(self, stats: PipelineStats) -> list[str]:
        """``notes`` for the run report after a run of ``stages()``, with what the host
        stages cost beside a GPU engine when the host chain ran around one: their ms/frame
        against the engine's, from the run's stage stats."""
        notes = list(self.notes)
        if self._host_around_gpu:
            cost = _host_cost(stats, self.temporal_mode)
            if cost is not None:
                notes.append(cost)
        return notes

    def _release_gpu(self) -> None:
        if self._close_gpu is not None:
            close, self._close_gpu = self._close_gpu, None
            close()

    def close(self) -> None:
        """Free the GPU buffers and the background; close the engines the chain opened.
        Safe to call twice."""
        self._release_gpu()
        if self.compositor is not None:
            self.compositor.close()
        if self._check is not None:
            self._check.close()
        owned, self._owned = self._owned, []
        for engine in owned:
            engine.close()

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


#: the notes ``stages()`` starts with to say which chain runs; void once the GPU is rejected
_CHAIN_NOTES = ("all-GPU chain", "host chain around the GPU engine")


def _passing(name: str) -> Stage:
    """A stage that hands frames on untouched: where the host chain has a step that the
    all-GPU chain does on the device (the self-check's guard switches it to the host's)."""
    return Stage(name, lambda batch: batch)


def _host_cost(stats: PipelineStats, temporal: str) -> str | None:
    ms = {s.name: s.ms_per_frame for s in stats.stages if s.frames}
    if "infer" not in ms or "compose" not in ms:
        return None
    # a keyframe mode's motion stage (its flow, ahead of the engine) is host work too
    motion = (f", {ms['motion']:.1f} ms/frame (motion: the flow that picks the keyframes)"
              if "motion" in ms else "")
    slowest = max(ms.get("preprocess", 0.0), ms.get("motion", 0.0), ms["infer"], ms["compose"])
    return (f"the host stages around the GPU engine took {ms['compose']:.1f} ms/frame "
            f"(compose: alpha to frame size, {temporal!r} smoothing, composite){motion} and "
            f"{ms.get('preprocess', 0.0):.1f} ms/frame (preprocess) on the CPU, against the "
            f"engine's {ms['infer']:.1f} ms/frame: the slowest holds the run to "
            f"{1000.0 / slowest:.3g} fps at most")
