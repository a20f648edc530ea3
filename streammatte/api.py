"""The public entry points: matte_video() and matte_image()."""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .compose import Compositor, OutputMode, parse_background, read_image_rgb
from .config import MatteConfig
from .cuda.chain import gpu_chain_blocker, gpu_stages, runs_on_device_buffers
from .errors import ConfigError, SinkError, SourceError
from .frames import Alpha, FramePacket, RGBImage
from .inference import Engine, open_engine
from .models.store import ProgressFn
from .pipeline import Pipeline, PipelineStats, Stage
from .postprocess import Postprocessor
from .preprocess import Preprocessor
from .refine import UPSAMPLERS, Upsampler, guided_upsample
from .sinks.file import FileSink
from .sinks.formats import OutputFormat, format_for
from .sinks.publish import StagedOutput, check_output, write_error
from .sources.file import FileSource
from .temporal import (
    LOOKAHEAD_FILTERS,
    LookaheadFilter,
    NoSmoothing,
    TemporalFilter,
    ZeroLag,
    make_streaming,
    make_temporal,
)


@dataclass(slots=True)
class RunReport:
    """What a run did: counts, speed, and anything the user should know."""

    output: Path
    engine: str
    format: str
    frames_in: int
    frames_out: int
    elapsed_s: float
    stats: PipelineStats
    audio_tracks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames_out / self.elapsed_s if self.elapsed_s > 0 else 0.0


class Matter:
    """Frame → alpha for one engine: preprocess, infer, postprocess (+ optional guided
    upsampling), temporal.

    The steps are exposed separately so the pipeline can run them on different threads;
    ``alpha()`` runs them in order for one frame. ``temporal`` is the zero-lag filter used
    frame by frame (a look-ahead mode has no future to see there, so it runs as ``none``);
    ``temporal_stream()`` gives the push/flush filter the pipeline drives, look-ahead included.
    """

    def __init__(self, engine: Engine, *, temporal: str = "none",
                 rembg_compat: bool = False, upsample: Upsampler = "bilinear") -> None:
        if upsample not in UPSAMPLERS:
            raise ConfigError(f"unknown upsampler {upsample!r} (choose from: "
                              f"{', '.join(UPSAMPLERS)})")
        self.engine = engine
        self.preprocess = Preprocessor(engine.input_spec, rembg_compat=rembg_compat)
        self.postprocess = Postprocessor(engine.output_spec, rembg_compat=rembg_compat)
        # rembg parity fixes the resampling, so guided upsampling would break it
        self.upsample: Upsampler = "bilinear" if rembg_compat else upsample
        self.temporal_mode = temporal.lower()
        self.temporal: TemporalFilter = (
            NoSmoothing() if self.temporal_mode in LOOKAHEAD_FILTERS
            else make_temporal(self.temporal_mode))

    def temporal_stream(self) -> LookaheadFilter:
        """A fresh push/flush filter for one stream. A zero-lag mode drives ``self.temporal``
        (reset), so a caller that swapped in its own filter (the live load shedding) gets it."""
        if self.temporal_mode in LOOKAHEAD_FILTERS:
            return make_streaming(self.temporal_mode)
        self.temporal.reset()
        return ZeroLag(self.temporal)

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
        (raw,) = self.infer([self.preprocess(image)])
        return self.temporal(self.to_alpha(raw, image), image)


def open_configured_engine(config: MatteConfig, on_download: ProgressFn | None = None,
                           auth_tokens: Mapping[str, str] | None = None) -> Engine:
    """The engine a MatteConfig names, with its model file, cache, device and input size."""
    return open_engine(config.engine, model_file=config.model_file, models_dir=config.models_dir,
                       device=config.device, backend=config.backend, progress=on_download,
                       input_size=config.input_size,
                       short_side=config.short_side, auth_tokens=auth_tokens)


def _split_engine(engine: str | Engine | None, config: MatteConfig | None,
                  options: dict[str, Any]) -> tuple[Engine | None, MatteConfig]:
    if isinstance(engine, str):
        options = {**options, "engine": engine}
        engine = None
    return engine, (config or MatteConfig()).with_options(**options)


def _output_mode(fmt: OutputFormat) -> OutputMode:
    if fmt.matte_only:
        return "matte"
    return "rgba" if fmt.alpha else "rgb"


def _background_for(config: MatteConfig, fmt: OutputFormat) -> str:
    if config.background != "auto":
        return config.background
    return "transparent" if fmt.alpha or fmt.matte_only else "white"


def build_stages(matter: Matter, compositor: Compositor,
                 write: Callable[[FramePacket], None], batch_size: int) -> list[Stage]:
    """The standard chain: preprocess → infer → postprocess/temporal/compose → write."""

    def preprocess(batch: list[FramePacket]) -> list[FramePacket]:
        for p in batch:
            p.model_input = matter.preprocess(p.image)
        return batch

    def infer(batch: list[FramePacket]) -> list[FramePacket]:
        outputs = matter.infer([p.model_input for p in batch if p.model_input is not None])
        for p, raw in zip(batch, outputs, strict=True):
            p.raw_output = raw
            p.model_input = None
        return batch

    # A look-ahead temporal filter answers a few frames late: packets wait here, in order,
    # until their smoothed alpha comes back, and the end-of-stream flush releases the rest.
    stream = matter.temporal_stream()
    waiting: collections.deque[FramePacket] = collections.deque()

    def finish(alphas: list[Alpha]) -> list[FramePacket]:
        done = []
        for alpha in alphas:
            p = waiting.popleft()
            p.alpha = alpha
            p.output = compositor(p.image, alpha)
            done.append(p)
        return done

    def compose(batch: list[FramePacket]) -> list[FramePacket]:
        ready: list[FramePacket] = []
        for p in batch:
            assert p.raw_output is not None
            alpha = matter.to_alpha(p.raw_output, p.image)
            p.raw_output = None
            waiting.append(p)
            ready.extend(finish(stream.push(alpha, p.image)))
        return ready

    def flush() -> list[FramePacket]:
        return finish(stream.flush())

    def write_batch(batch: list[FramePacket]) -> list[FramePacket]:
        for p in batch:
            write(p)
        return batch

    return [
        Stage("preprocess", preprocess),
        Stage("infer", infer, batch_size=batch_size),
        Stage("compose", compose, flush=flush),
        Stage("encode", write_batch),
    ]


def matte_video(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    config: MatteConfig | None = None,
    *,
    on_progress: Callable[[PipelineStats], None] | None = None,
    on_download: ProgressFn | None = None,
    engine: str | Engine | None = None,
    auth_tokens: Mapping[str, str] | None = None,
    **options: Any,
) -> RunReport:
    """Remove or replace the background of a video file.

    ``options`` are MatteConfig fields (``engine="u2net"``, ``background="blur"``, …). The
    output is written to a temporary file beside ``output_path`` and renamed on success; the
    input is never touched. Audio streams are carried over; timestamps are kept.
    ``engine`` is a name (like the config field) or an open Engine to reuse across calls;
    ``auth_tokens`` ({host: token}) reach gated model sources on a first-use pull.
    """
    engine, config = _split_engine(engine, config, options)
    src, dst = Path(input_path), Path(output_path)
    fmt = format_for(dst, config.output_format)
    background = parse_background(_background_for(config, fmt))
    inputs = [src] + ([background.path] if background.path is not None else [])
    # refused before the input is even opened; the sink checks again as it stages its output
    check_output(dst, folder=fmt.codec is None, overwrite=config.overwrite, inputs=inputs)
    compositor = Compositor(background, _output_mode(fmt))
    with FileSource(src, strict=config.strict) as source, \
            FileSink(dst, fmt, frame_rate=source.frame_rate, overwrite=config.overwrite,
                     audio_from=src if source.audio_streams else None, inputs=inputs) as sink:
        own_engine = engine is None
        if engine is None:
            engine = open_configured_engine(config, on_download, auth_tokens)
        chain_notes: list[str] = []
        close_gpu: Callable[[], None] | None = None
        try:
            on_gpu = runs_on_device_buffers(engine)
            blocker = gpu_chain_blocker(engine, temporal=config.temporal,
                                        background=background, upsample=config.upsample,
                                        rembg_compat=config.rembg_compat) if on_gpu else None
            if on_gpu and blocker is None:
                stages, close_gpu = gpu_stages(
                    engine, temporal=config.temporal, background=background,
                    output=_output_mode(fmt), batch_size=config.batch_size,
                    write=sink.write)
                chain_notes.append("all-GPU chain: frames cross PCIe once each way; "
                                   "preprocess, alpha, temporal and composite ran as "
                                   "CUDA kernels")
            else:
                if blocker is not None:
                    chain_notes.append(f"host chain around the GPU engine: {blocker}")
                matter = Matter(engine, temporal=config.temporal,
                                rembg_compat=config.rembg_compat, upsample=config.upsample)
                stages = build_stages(matter, compositor, sink.write, config.batch_size)
            pipeline = Pipeline(source, stages, max_queue_frames=config.max_queue_frames)
            stats = pipeline.run(on_progress)
            if sink.frames_written == 0:
                raise SourceError(f"{src}: no frame could be decoded: {source.why_empty()}")
        finally:
            if close_gpu is not None:
                close_gpu()
            compositor.close()
            if own_engine:
                engine.close()
        notes = chain_notes + _source_notes(source)
        if sink.padded_to_even:
            notes.append(f"{fmt.name} needs even frame sizes: {source.width}×{source.height} was "
                         "padded by one repeated pixel row/column")
    return RunReport(
        output=dst, engine=engine.describe(), format=fmt.name, frames_in=stats.frames_in,
        frames_out=sink.frames_written, elapsed_s=stats.elapsed_s, stats=stats,
        audio_tracks=sink.audio_tracks, notes=notes,
    )


def _source_notes(source: FileSource) -> list[str]:
    notes = []
    if source.damaged_packets:
        notes.append(f"{source.path.name}: {source.damaged_packets} damaged packet(s) could not "
                     "be decoded and were skipped")
    if source.corrupt_frames:
        notes.append(f"{source.path.name}: {source.corrupt_frames} frame(s) flagged corrupt by "
                     "the decoder were concealed and kept")
    if source.ends_early:
        notes.append(f"{source.path.name}: {source.ends_early}")
    if source.reordered_timestamps:
        notes.append(f"{source.path.name}: {source.reordered_timestamps} frame timestamps were "
                     "in decode order (e.g. AVI with packed B-frames) and were put in display "
                     "order")
    if source.rotation:
        notes.append(f"{source.path.name}: rotated {source.rotation}° by its metadata; "
                     "the output is upright")
    if source.ignored_rotation:
        notes.append(f"{source.path.name}: its rotation metadata ({source.ignored_rotation}°) "
                     "is no quarter turn (damaged?) and was ignored")
    if source.damaged_timestamps:
        notes.append(f"{source.path.name}: {source.damaged_timestamps} frame timestamp(s) went "
                     "back or repeated (damaged) and were replaced")
    return notes


def matte_image(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str] | None = None,
    config: MatteConfig | None = None,
    *,
    engine: str | Engine | None = None,
    on_download: ProgressFn | None = None,
    auth_tokens: Mapping[str, str] | None = None,
    **options: Any,
) -> np.ndarray:
    """Matte one still image. Returns the output array (RGBA cut-out by default) and writes it
    to ``output_path`` (PNG keeps alpha; JPEG needs a background) when one is given."""
    engine, config = _split_engine(engine, config, options)
    src = Path(input_path)
    dst = Path(output_path) if output_path is not None else None
    has_alpha = dst is None or dst.suffix.lower() in (".png", ".webp", ".tif", ".tiff")
    only_mask = config.output_format == "matte"
    bg = config.background if config.background != "auto" else (
        "transparent" if has_alpha else "white")
    mode: OutputMode = "matte" if only_mask else ("rgba" if has_alpha else "rgb")
    background = parse_background(bg)
    with contextlib.ExitStack() as cleanup:
        staged = None
        if dst is not None:
            # staged first: a path that would lose something, or a folder that cannot be
            # written, is refused before the model loads
            inputs = [src] + ([background.path] if background.path is not None else [])
            staged = cleanup.enter_context(StagedOutput(
                dst, folder=False, overwrite=config.overwrite, suffix=dst.suffix,
                inputs=inputs))
        compositor = Compositor(background, mode)
        image = read_image_rgb(src)
        own_engine = engine is None
        if engine is None:
            engine = open_configured_engine(config, on_download, auth_tokens)
        try:
            alpha = Matter(engine, rembg_compat=config.rembg_compat,
                           upsample=config.upsample).alpha(image)
        finally:
            if own_engine:
                engine.close()
        out = compositor(image, alpha)
        compositor.close()
        if staged is not None:
            _publish_image(staged, out)
    return out


def _publish_image(staged: StagedOutput, image: np.ndarray) -> None:
    if image.ndim == 3:
        code = cv2.COLOR_RGBA2BGRA if image.shape[2] == 4 else cv2.COLOR_RGB2BGR
        image = cv2.cvtColor(image, code)
    dst = staged.path
    ok, encoded = cv2.imencode(dst.suffix.lower() or ".png", image)
    if not ok:
        raise SinkError(f"{dst}: cannot encode an image of this type (use .png, .jpg or .webp)")
    assert staged.temp is not None
    try:
        staged.temp.write_bytes(encoded.tobytes())
    except OSError as exc:
        raise write_error(dst, exc) from exc
    staged.publish()
