"""The public entry points: matte_video(), matte_image() and matte_frames().

Each builds its chain (``streammatte.chain.Chain``) from a MatteConfig and runs it: a file
through the threaded pipeline into a FileSink, one still at once, or any iterable of frames
through the same pipeline, handed back in order.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from .chain import Chain, Matter, open_configured_engine, resolved_background
from .compose import OutputMode, alpha_to_uint8, parse_background, read_image_rgb
from .config import MatteConfig
from .errors import ConfigError, SinkError, SourceError
from .frames import FramePacket, RGBImage
from .inference import Engine
from .models.store import ProgressFn
from .pipeline import CancelHandle, Pipeline, PipelineStats
from .sinks.file import FileSink, SharedAudio
from .sinks.formats import FORMATS, OutputFormat, format_for, format_for_stdout
from .sinks.publish import StagedOutput, check_output, publish_all, write_error
from .sources.file import FileSource, is_stdio

__all__ = [
    "MatteResult",
    "Matter",
    "RunReport",
    "WrittenOutput",
    "matte_frames",
    "matte_image",
    "matte_video",
    "open_configured_engine",
]


@dataclass(frozen=True, slots=True)
class WrittenOutput:
    """One file (or PNG folder) a run published, or the stream it wrote to stdout (``path``
    ``-``): ``kind`` is ``composite`` (the main output: the composite, or the cut-out without
    a background), ``matte`` or ``foreground``; ``encoder`` is the one that ran (``libx264``,
    ``h264_nvenc``; None for PNG frames); ``audio_tracks`` what became of each input audio
    track in this output (every output that can hold audio carries it)."""

    kind: str
    path: Path
    format: str
    encoder: str | None
    audio_tracks: tuple[str, ...] = ()


@dataclass(slots=True)
class RunReport:
    """What a run did: counts, speed, and anything the user should know. ``output`` and
    ``format`` are the main output's; ``outputs`` lists every output published, the main
    one first; ``device`` is where the engine ran (``cpu``, ``cuda:0``)."""

    output: Path
    engine: str
    format: str
    frames_in: int
    frames_out: int
    elapsed_s: float
    stats: PipelineStats
    audio_tracks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outputs: list[WrittenOutput] = field(default_factory=list)
    device: str = ""
    #: frames the engine ran on: ``frames_in`` but where a keyframe mode propagated the matte
    engine_frames: int = 0

    @property
    def fps(self) -> float:
        return self.frames_out / self.elapsed_s if self.elapsed_s > 0 else 0.0


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


def _inputs_of(src: Path | None, config: MatteConfig, output: OutputMode) -> list[Path]:
    """The files a run reads (the input, a background file): no output may land on them."""
    background = parse_background(resolved_background(config.background, output))
    return [p for p in (src, background.path) if p is not None]


def matte_video(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    config: MatteConfig | None = None,
    *,
    matte_output: str | os.PathLike[str] | None = None,
    foreground_output: str | os.PathLike[str] | None = None,
    on_progress: Callable[[PipelineStats], None] | None = None,
    on_download: ProgressFn | None = None,
    engine: str | Engine | None = None,
    auth_tokens: Mapping[str, str] | None = None,
    cancel: CancelHandle | None = None,
    **options: Any,
) -> RunReport:
    """Remove or replace the background of a video file.

    ``options`` are MatteConfig fields (``engine="u2net"``, ``background="blur"``, …). The
    output is written to a temporary file beside ``output_path`` and renamed on success; the
    input is never touched. Audio streams are carried over; timestamps are kept (a trim's,
    ``start_s``/``end_s``/``max_frames``, start at zero). ``-`` as the input reads a stream
    from stdin; as ``output_path`` it writes one to stdout (``format_for_stdout``: Matroska
    unless the format is NUT, y4m or GIF), which cannot be staged: a failed run leaves it
    ended early.
    ``engine`` is a name (like the config field) or an open Engine to reuse across calls;
    ``auth_tokens`` ({host: token}) reach gated model sources on a first-use pull.
    ``cancel`` (a ``threading.Event``, or any object with ``is_set()``) is checked between
    frames: once set, the run stops, leaves no output and raises CancelledRun.

    Several outputs come from one decode and one engine run: ``matte_output`` (the matte as
    greyscale video, or PNGs in a folder) and ``foreground_output`` (the foreground colour,
    despilled with ``despill``, with its alpha: a format with alpha, .mov, .webm, .gif or a
    folder) beside ``output_path``; they are files, not stdout. Each carries the input's
    audio (trimmed alike) where its format holds audio, as the main output does:
    ``RunReport.outputs[].audio_tracks`` says what each got. Every output is finished before
    any is published; a run that fails before that publishes none
    (``sinks.publish.publish_all`` says what happens when one of them cannot be published at
    the very end).
    """
    engine, config = _split_engine(engine, config, options)
    src, dst = Path(input_path), Path(output_path)
    to_stdout = is_stdio(dst)
    fmt = format_for_stdout(config.output_format, background=config.background,
                            encoding=config.encoding) if to_stdout \
        else format_for(dst, config.output_format, config.encoding, background=config.background)
    inputs = _inputs_of(src, config, _output_mode(fmt))
    extras = _extra_outputs(dst, matte_output, foreground_output)
    # refused before the input is even opened; each sink checks again as it stages its output
    for path, f in [*([] if to_stdout else [(dst, fmt)]), *[(p, f) for _, p, f in extras]]:
        check_output(path, folder=f.codec is None, overwrite=config.overwrite, inputs=inputs)
    # the sinks before the chain: a folder that cannot be written fails before the model loads
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(FileSource(
            src, strict=config.strict, decode_range=config.decode_range(), audio=True))
        # one read of the input feeds every output's audio (a trim's cut included)
        audio = None if source.audio_feed is None else SharedAudio(source.audio_feed)

        def sink_for(path: Path, f: OutputFormat) -> FileSink:
            return stack.enter_context(FileSink(
                path, f, frame_rate=source.frame_rate, overwrite=config.overwrite,
                audio=audio, inputs=inputs))

        sink = sink_for(dst, fmt)
        others = [(kind, sink_for(path, f)) for kind, path, f in extras]
        chain = stack.enter_context(Chain(config, engine=engine, output=_output_mode(fmt),
                                          on_download=on_download, auth_tokens=auth_tokens))
        write = sink.write if not others else _writer(sink, others)
        pipeline = Pipeline(source, chain.stages(write, want_alpha=bool(others)),
                            max_queue_frames=config.max_queue_frames, cancel=cancel)
        stats = pipeline.run(on_progress)
        engine_frames = chain.engine_frames(stats)
        if sink.frames_written == 0:
            raise SourceError(f"{source.label}: no frame could be decoded: "
                              f"{source.why_empty()}")
        sinks = [("matte" if fmt.matte_only else "composite", sink), *others]
        for _, each in sinks:
            each.finish()
        publish_all([each.staged for _, each in sinks if each.staged is not None])
        notes = chain.run_notes(stats) + _source_notes(source)
        for _, each in sinks:
            notes += each.notes
            if each.padded_to_even:
                notes.append(f"{each.name}: {each.format.name} needs even frame sizes: "
                             f"{source.width}×{source.height} was padded by one repeated pixel "
                             "row/column")
                break  # said once: every such output is padded alike
    return RunReport(
        output=dst, engine=chain.engine.describe(), format=fmt.name, frames_in=stats.frames_in,
        frames_out=sink.frames_written, elapsed_s=stats.elapsed_s, stats=stats,
        audio_tracks=sink.audio_tracks, notes=notes, device=chain.engine.device,
        engine_frames=engine_frames,
        outputs=[WrittenOutput(kind, each.path, each.format.name, each.encoder,
                               tuple(each.audio_tracks)) for kind, each in sinks],
    )


def _extra_outputs(main: Path, matte: str | os.PathLike[str] | None,
                   foreground: str | os.PathLike[str] | None
                   ) -> list[tuple[str, Path, OutputFormat]]:
    """(kind, path, format) of a run's outputs beside the main one, checked up front."""
    extras: list[tuple[str, Path, OutputFormat]] = []
    for kind, path in (("matte", matte), ("foreground", foreground)):
        if path is not None and is_stdio(path):
            raise ConfigError(f"the {kind} output is a file or folder; only the main output "
                              "(-o -) can be written to stdout")
    if matte is not None:
        path = Path(matte)
        # without extension: a folder of greyscale PNGs
        extras.append(("matte", path, format_for(path, "matte") if path.suffix
                       else FORMATS["png"]))
    if foreground is not None:
        path = Path(foreground)
        fmt = format_for(path)
        if not fmt.alpha:
            raise ConfigError(f"{path}: the foreground output needs a format with alpha "
                              "(.mov, .webm, .mkv, .gif, .nut, or a folder for PNG frames)")
        extras.append(("foreground", path, fmt))
    seen = {main.resolve(): main}
    for _, path, _ in extras:
        if path.resolve() in seen:
            raise ConfigError(f"{path}: two outputs of this run would be the same file "
                              f"({seen[path.resolve()]}); give each its own path")
        seen[path.resolve()] = path
    return extras


def _writer(main: FileSink, others: list[tuple[str, FileSink]]
            ) -> Callable[[FramePacket], None]:
    """The encode step for several outputs: the main one takes the composed frame, the
    others their own picture from the frame's alpha."""

    def write(packet: FramePacket) -> None:
        main.write(packet)
        if packet.alpha is None:
            raise RuntimeError(f"frame {packet.index}: the chain gave no alpha")
        alpha = alpha_to_uint8(packet.alpha)
        for kind, sink in others:
            if kind == "matte":
                sink.write_picture(packet, alpha)
            else:
                colour = packet.image if packet.foreground is None else packet.foreground
                sink.write_picture(packet, np.dstack([colour, alpha]))

    return write


def _source_notes(source: FileSource) -> list[str]:
    notes = []
    if source.damaged_packets:
        notes.append(f"{source.name}: {source.damaged_packets} damaged packet(s) could not "
                     "be decoded and were skipped")
    if source.corrupt_frames:
        notes.append(f"{source.name}: {source.corrupt_frames} frame(s) flagged corrupt by "
                     "the decoder were concealed and kept")
    if source.ends_early:
        notes.append(f"{source.name}: {source.ends_early}")
    if source.reordered_timestamps:
        notes.append(f"{source.name}: {source.reordered_timestamps} frame timestamps were "
                     "in decode order (e.g. AVI with packed B-frames) and were put in display "
                     "order")
    if source.rotation:
        notes.append(f"{source.name}: rotated {source.rotation}° by its metadata; "
                     "the output is upright")
    if source.ignored_rotation:
        notes.append(f"{source.name}: its rotation metadata ({source.ignored_rotation}°) "
                     "is no quarter turn (damaged?) and was ignored")
    if source.damaged_timestamps:
        notes.append(f"{source.name}: {source.damaged_timestamps} frame timestamp(s) went "
                     "back or repeated (damaged) and were replaced")
    return notes


def matte_image(
    image: str | os.PathLike[str] | npt.NDArray[np.uint8] | Any,
    output_path: str | os.PathLike[str] | None = None,
    config: MatteConfig | None = None,
    *,
    engine: str | Engine | None = None,
    on_download: ProgressFn | None = None,
    auth_tokens: Mapping[str, str] | None = None,
    **options: Any,
) -> npt.NDArray[np.uint8]:
    """Matte one still image: a path, an H×W×3 uint8 RGB array, or a PIL image.

    Returns the output array: the RGBA cut-out by default (H×W×4), the composite (H×W×3)
    over a background, or the matte (H×W) with ``output_format="matte"``. It is also written
    to ``output_path`` when one is given (PNG keeps alpha; JPEG needs a background),
    atomically, never over the input or an existing file unless ``overwrite``.
    """
    engine, config = _split_engine(engine, config, options)
    return image_run(image, output_path, config, engine=engine, on_download=on_download,
                     auth_tokens=auth_tokens).image


@dataclass(slots=True)
class ImageRun:
    """What ``image_run`` did: the output array, the engine (``describe()``) and its device,
    and the seconds each step took (``read``, ``matte``: engine, alpha and mask, ``compose``,
    ``write``), for the run report."""

    image: npt.NDArray[np.uint8]
    engine: str
    device: str
    timings: list[tuple[str, float]]


def image_run(image: str | os.PathLike[str] | npt.NDArray[np.uint8] | Any,
              output_path: str | os.PathLike[str] | None, config: MatteConfig, *,
              engine: Engine | None = None, on_download: ProgressFn | None = None,
              auth_tokens: Mapping[str, str] | None = None) -> ImageRun:
    """``matte_image`` with its timings (see there)."""
    timings: list[tuple[str, float]] = []
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings.append((name, now - clock))
        clock = now

    src = Path(image) if isinstance(image, (str, os.PathLike)) else None
    dst = Path(output_path) if output_path is not None else None
    has_alpha = dst is None or dst.suffix.lower() in (".png", ".webp", ".tif", ".tiff")
    mode: OutputMode = ("matte" if config.output_format == "matte"
                        else "rgba" if has_alpha else "rgb")
    with contextlib.ExitStack() as cleanup:
        staged = None
        if dst is not None:
            # staged first: a path that would lose something, or a folder that cannot be
            # written, is refused before the model loads
            staged = cleanup.enter_context(StagedOutput(
                dst, folder=False, overwrite=config.overwrite, suffix=dst.suffix,
                inputs=_inputs_of(src, config, mode)))
        clock = time.perf_counter()
        picture = read_image_rgb(src) if src is not None else _rgb_array(image, "image")
        lap("read")
        # a still has no neighbours to smooth against
        chain = cleanup.enter_context(Chain(
            config.with_options(temporal="none"), engine=engine, output=mode,
            on_download=on_download, auth_tokens=auth_tokens))
        clock = time.perf_counter()  # loading the model is no step of the image's
        alpha = chain.alpha(picture)
        lap("matte")
        out = chain.composite(picture, alpha)
        lap("compose")
        if staged is not None:
            _publish_image(staged, out)
            lap("write")
    return ImageRun(out, chain.engine.describe(), chain.engine.device, timings)


def _rgb_array(image: object, what: str) -> RGBImage:
    """An H×W×3 uint8 RGB array from an array or a PIL image, or a ConfigError saying what
    was expected."""
    pil = sys.modules.get("PIL.Image")  # only an imported PIL can have made a PIL image
    if pil is not None and isinstance(image, pil.Image):
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise ConfigError(f"{what}: expected a path, a PIL image or an H×W×3 uint8 RGB array, "
                          f"got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ConfigError(f"{what}: expected an H×W×3 uint8 RGB array, got shape "
                          f"{image.shape} {image.dtype}")
    return np.ascontiguousarray(image)


@dataclass(frozen=True, slots=True)
class MatteResult:
    """One frame's result from ``matte_frames``: ``alpha`` (H×W uint8, 255 = foreground),
    and ``image`` (the H×W×3 RGB composite) when a background was given, else None."""

    index: int
    alpha: npt.NDArray[np.uint8]
    image: npt.NDArray[np.uint8] | None = None


def matte_frames(
    frames: Iterable[npt.NDArray[np.uint8]],
    config: MatteConfig | None = None,
    *,
    engine: str | Engine | None = None,
    on_download: ProgressFn | None = None,
    auth_tokens: Mapping[str, str] | None = None,
    cancel: CancelHandle | None = None,
    **options: Any,
) -> Generator[MatteResult, None, None]:
    """Matte a stream of frames: any iterable of H×W×3 uint8 RGB arrays, one MatteResult per
    frame, in order.

    ``options`` are matte_video's (``engine``, ``temporal``, ``background``, ``upsample``,
    ``device``, ``backend``, …) and mean the same; the chain, and so the alphas, are the
    ones ``matte_video`` writes. ``background`` other than ``auto``/``transparent`` adds the
    composite as ``image``. With a look-ahead temporal mode (the default ``keyframes``: 8;
    ``bidirectional``: 10) a result comes out once ``Chain.delay`` later frames have gone in,
    and the last ones when the iterable ends.

    The frames are read and matted on the pipeline's worker threads; at most a few frames
    per stage are held, so memory stays bounded however long the iterable. Closing the
    generator early (``close()``, or leaving a ``with contextlib.closing(...)`` block) stops
    and joins those threads and closes the engine if it opened it. Options are checked when
    this is called; the engine opens on the first ``next()``. ``cancel`` is as for
    ``matte_video``.
    """
    engine, config = _split_engine(engine, config, options)
    background = config.background.strip().lower()
    composite = background != "auto" and not parse_background(background).is_transparent
    return _matte_frames(frames, config, engine, "rgb" if composite else "matte",
                         on_download, auth_tokens, cancel)


def _matte_frames(frames: Iterable[npt.NDArray[np.uint8]], config: MatteConfig,
                  engine: Engine | None, output: OutputMode, on_download: ProgressFn | None,
                  auth_tokens: Mapping[str, str] | None, cancel: CancelHandle | None
                  ) -> Generator[MatteResult, None, None]:
    with Chain(config, engine=engine, output=output, on_download=on_download,
               auth_tokens=auth_tokens) as chain:
        # a composite needs the float alpha beside it; a matte is the alpha (GPU chain too)
        stages = chain.stages(want_alpha=output == "rgb")
        pipeline = Pipeline(_frame_packets(frames), stages,
                            max_queue_frames=config.max_queue_frames, cancel=cancel)
        with contextlib.closing(pipeline.results()) as results:
            for p in results:
                if p.output is None:
                    raise RuntimeError(f"frame {p.index}: the chain gave no output")
                if output == "matte":
                    yield MatteResult(p.index, p.output)
                elif p.alpha is None:
                    raise RuntimeError(f"frame {p.index}: the chain gave no alpha")
                else:
                    yield MatteResult(p.index, alpha_to_uint8(p.alpha), p.output)


def _frame_packets(frames: Iterable[npt.NDArray[np.uint8]]) -> Iterator[FramePacket]:
    for i, frame in enumerate(frames):
        yield FramePacket(index=i, image=_rgb_array(frame, f"frame {i}"), pts=None,
                          time_base=None)


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
