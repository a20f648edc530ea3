"""Long videos in segments: cut at keyframes, matted in parallel, stitched without re-encoding.

Planning (on the driver): a video longer than ``segment_s`` is cut at the keyframe at or
before every ``segment_s`` seconds (one seek each, no decode). Each segment is the frames whose
time lies in ``[start_s, end_s)`` (``config.DecodeRange``), so every frame belongs to exactly
one.

A segment (on a worker) decodes ``pre_roll`` frames before its range and ``post_roll`` after it
(``FileSource``'s range decode), which go through the chain for the temporal filter's history
and look-ahead and are not written: the frames near a seam get the alpha a one-machine run
gives them (``post_roll`` = the filter's look-ahead makes the backward pass exact; the
forward recursion forgets geometrically, see ``pre_roll_frames``). Each segment is encoded by
its own encoder, so it starts on a keyframe of its own, and is published whole into a hidden
folder beside the output, ``.NAME.segments-DIGEST``; the digest names the input (size, mtime),
the options and the plan, so a run that was stopped reuses what a run like it finished.

Stitching (on a worker, once every segment is there): the segments' packets are remuxed, in
order, into the output's container, with the input's audio carried once, from the source, as
a one-machine run carries it (``sinks.file.AudioCarrier``); a PNG sequence's frames are renamed
into one numbering. Nothing is re-encoded, so stitching costs reading and writing the output
once. The result is published like any output (``sinks.publish``) and the hidden folder goes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.container

from .. import __version__
from ..api import RunReport, WrittenOutput, _output_mode, _source_notes
from ..chain import Chain
from ..config import DecodeRange, MatteConfig
from ..errors import SinkError, SourceError
from ..inference import BUILTIN_ENGINES, Engine
from ..pipeline import Pipeline, PipelineStats
from ..sinks.file import AudioCarrier, FileSink, SharedAudio
from ..sinks.formats import OutputFormat, format_for
from ..sinks.publish import StagedOutput, write_error, write_manifest
from ..sources.file import AudioFeed, FileSource
from ..temporal import LOOKAHEAD_FILTERS

#: the default segment length: long enough that a segment's roll frames and its worker's
#: start are a small share of its work, short enough to spread a feature-length video
DEFAULT_SEGMENT_S = 300.0
#: frames of history before a segment for the recursive temporal modes: the forward pass of
#: ``bidirectional`` and ``keyframes`` forgets by at most its memory (0.9) a frame, so after
#: 40 frames what is left of the missing past is ≤ 0.9**40 ≈ 1.5 % of its weight (measured
#: in docs/scale.md)
HISTORY_FRAMES = 40


@dataclass(frozen=True, slots=True)
class Segment:
    """Frames whose time (seconds from the file's start) is in ``[start_s, end_s)``;
    ``end_s`` None: to the end. ``frames``: about how many (for progress)."""

    index: int
    start_s: float
    end_s: float | None
    frames: int


@dataclass(frozen=True, slots=True)
class SegmentPlan:
    """How one long input is cut: its segments, their roll frames, where they are kept."""

    src: Path
    dst: Path
    work: Path
    segments: tuple[Segment, ...]
    pre_roll: int
    post_roll: int
    extension: str

    def path(self, index: int) -> Path:
        """Where segment ``index`` is published (a folder for a PNG sequence)."""
        return self.work / f"{index:05d}{self.extension}"

    def history_before(self, index: int) -> int:
        """About how many pre-roll frames segment ``index`` decodes (fewer near the start)."""
        return min(self.pre_roll, sum(s.frames for s in self.segments[:index]))

    def done(self) -> list[int]:
        """The segments already published (by this run, or one like it that was stopped)."""
        return [s.index for s in self.segments if self.path(s.index).exists()]

    def remove_work(self) -> None:
        """Remove the hidden folder and what is in it (it holds only this plan's segments)."""
        shutil.rmtree(self.work, ignore_errors=True)


def roll_frames(config: MatteConfig) -> tuple[int, int]:
    """(pre-roll, post-roll) in frames for ``config``'s temporal mode: the look-ahead after a
    segment, and the recursion's history before it (none for per-frame output)."""
    mode = config.temporal.lower()
    if mode == "none":
        return 0, 0
    delay = LOOKAHEAD_FILTERS[mode]().delay if mode in LOOKAHEAD_FILTERS else 0
    return max(delay, HISTORY_FRAMES), delay


def splits(config: MatteConfig) -> bool:
    """Whether ``config``'s engine may be cut into segments: not a background model, whose
    state is the whole past of the video (MOG2)."""
    name = config.engine.lower()
    if name not in BUILTIN_ENGINES:
        return True  # catalog models see one frame at a time
    from ..inference import open_engine

    with open_engine(name) as engine:
        return not engine.stateful


def keyframe_cuts(src: Path, every_s: float) -> tuple[list[float], float | None, Fraction | None]:
    """(cut times, the video's duration, its frame rate): the keyframe at or before every
    ``every_s`` seconds, each found by one seek (no decode); times are seconds from the file's
    start, as ``DecodeRange`` counts them."""
    with av.open(str(src)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        duration = container.duration / av.time_base if container.duration else None
        if duration is None or stream.time_base is None:
            return [], duration, Fraction(rate) if rate else None
        start = Fraction(container.start_time or 0, av.time_base)
        cuts: list[float] = []
        for k in range(1, math.ceil(duration / every_s)):
            # 0.96 s is 0.95999… as a float: a cut on a keyframe's exact time must find it
            target = start + Fraction(k * every_s).limit_denominator(1_000_000)
            try:
                container.seek(math.floor(target / stream.time_base), stream=stream,
                               backward=True)
                key = next((p for p in container.demux(stream)
                            if p.is_keyframe and p.pts is not None), None)
            except av.error.FFmpegError:
                key = None
            if key is None or key.pts is None:
                continue
            # a hair before the keyframe's time: the keyframe is the segment's first frame
            time = float(key.pts * stream.time_base - start) - 1e-6
            if time > (cuts[-1] if cuts else 0.0) + every_s / 2:
                cuts.append(time)
        return cuts, duration, Fraction(rate) if rate else None


def plan_segments(src: Path, dst: Path, config: MatteConfig, segment_s: float
                  ) -> SegmentPlan | None:
    """How to cut ``src`` into segments of about ``segment_s`` seconds at its keyframes, or
    None when it is no longer than that (or cannot be cut: no duration, no keyframe index)."""
    try:
        cuts, duration, rate = keyframe_cuts(src, segment_s)
    except (av.error.FFmpegError, IndexError, OSError):
        return None  # the worker that runs it whole says what is wrong with it
    if not cuts:
        return None
    fps = float(rate) if rate else 0.0
    bounds = [0.0, *cuts]
    ends: list[float | None] = [*cuts, None]
    segments = tuple(
        Segment(i, start, end, round(((end if end is not None else duration or start) - start)
                                     * fps))
        for i, (start, end) in enumerate(zip(bounds, ends, strict=True)))
    pre_roll, post_roll = roll_frames(config)
    fmt = format_for(dst, config.output_format)
    stat = src.stat()
    identity = json.dumps({
        "input": str(src.absolute()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
        "config": {k: str(v) for k, v in asdict(config).items() if k != "overwrite"},
        "cuts": cuts, "roll": [pre_roll, post_roll], "version": __version__,
    }, sort_keys=True)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    work = dst.with_name(f".{dst.name}.segments-{digest}")
    return SegmentPlan(src, dst, work, segments, pre_roll, post_roll, fmt.extension)


def matte_segment(plan: SegmentPlan, index: int, config: MatteConfig, engine: Engine,
                  on_progress: Callable[[PipelineStats], None] | None = None) -> RunReport:
    """Matte one segment into the plan's hidden folder, published whole; its roll frames go
    through the chain (history, look-ahead) and are not written. Nothing is done when the
    segment is there already (a retry after a worker that published it was lost)."""
    segment = plan.segments[index]
    dst = plan.path(index)
    fmt = format_for(plan.dst, config.output_format)
    span = DecodeRange(start_s=segment.start_s, end_s=segment.end_s,
                       pre_roll_frames=plan.pre_roll if index else 0,
                       post_roll_frames=plan.post_roll if segment.end_s is not None else 0)
    try:
        plan.work.mkdir(exist_ok=True)
    except OSError as exc:
        raise write_error(plan.work, exc, "cannot create the segments folder") from exc
    if dst.exists():
        return RunReport(output=dst, engine=engine.describe(), format=fmt.name, frames_in=0,
                         frames_out=0, elapsed_s=0.0, stats=PipelineStats())
    with FileSource(plan.src, strict=config.strict, decode_range=span) as source, \
            FileSink(dst, fmt, frame_rate=source.frame_rate, inputs=[plan.src]) as sink, \
            Chain(config, engine=engine, output=_output_mode(fmt)) as chain:
        stats = Pipeline(source, chain.stages(sink.write),
                         max_queue_frames=config.max_queue_frames).run(on_progress)
        if sink.frames_written == 0:
            raise SourceError(f"{plan.src}: segment {index} ({segment.start_s:.3f} s on): no "
                              f"frame could be decoded: {source.why_empty()}")
        notes = chain.notes + _source_notes(source)
        engine_frames = chain.engine_frames(stats)
        if sink.padded_to_even:
            notes.append(f"{fmt.name} needs even frame sizes: {source.width}×{source.height} was "
                         "padded by one repeated pixel row/column")
    return RunReport(output=dst, engine=chain.engine.describe(), format=fmt.name,
                     frames_in=stats.frames_in, frames_out=sink.frames_written,
                     elapsed_s=stats.elapsed_s, stats=stats, notes=notes,
                     engine_frames=engine_frames,
                     outputs=[WrittenOutput("composite", dst, fmt.name, sink.encoder)])


def stitch(plan: SegmentPlan, config: MatteConfig) -> RunReport:
    """Join the plan's segments into its output, the input's audio carried once, and publish
    it (``config.overwrite`` as for any output); the hidden folder is removed after."""
    fmt = format_for(plan.dst, config.output_format)
    paths = [plan.path(s.index) for s in plan.segments]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise SinkError(f"{plan.dst}: cannot stitch, segment(s) {', '.join(missing)} missing "
                        f"from {plan.work}")
    with StagedOutput(plan.dst, folder=fmt.codec is None, overwrite=config.overwrite,
                      suffix=fmt.extension, inputs=[plan.src]) as staged:
        assert staged.temp is not None
        try:
            if fmt.codec is None:
                frames, tracks = _join_sequences(paths, staged.temp, plan.src)
            else:
                frames, tracks = _remux(paths, staged.temp, plan.src, fmt)
        except (OSError, av.error.FFmpegError) as exc:
            if isinstance(exc, SinkError):
                raise
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise SinkError(f"{plan.dst}: cannot stitch the segments: {reason}") from exc
        staged.publish()
    plan.remove_work()
    return RunReport(output=plan.dst, engine="", format=fmt.name, frames_in=frames,
                     frames_out=frames, elapsed_s=0.0, stats=PipelineStats(),
                     audio_tracks=tracks)


class _SourceAudio:
    """The input's audio, demuxed alone (no video decoded) into an AudioFeed as far as the
    stitch has come, for an AudioCarrier to carry as a one-machine run's sink carries it.
    A context manager; ``carrier`` is None when the input has no audio."""

    #: demux this far past what is asked for, beyond the carrier's own lead
    _AHEAD_S = 2.0

    def __init__(self, src: Path, out: av.container.OutputContainer,
                 fmt: OutputFormat | None) -> None:
        self._container = av.open(str(src))
        streams = list(self._container.streams.audio)
        self._feed = AudioFeed(streams)
        self._packets = iter(self._container.demux(*streams) if streams else ())
        self.carrier = AudioCarrier(SharedAudio(self._feed).reader(), out, fmt) \
            if streams else None

    def mux_until(self, time_s: float | None) -> None:
        """Mux the audio up to ``time_s`` seconds (None: all of it, and flush)."""
        if self.carrier is None:
            return
        for packet in self._packets:
            if packet.dts is None and not packet.size:
                continue  # the demuxer's flush packet
            self._feed.put(packet)
            if (time_s is not None and packet.pts is not None and packet.time_base is not None
                    and float(packet.pts * packet.time_base) > time_s + self._AHEAD_S):
                break
        if time_s is None:
            self.carrier.finish()
        else:
            self.carrier.mux_until(time_s)

    def tracks(self) -> list[str]:
        return [t.description for t in self.carrier.tracks] if self.carrier else []

    def __enter__(self) -> _SourceAudio:
        return self

    def __exit__(self, *exc: object) -> None:
        self._container.close()


def _remux(paths: list[Path], out_path: Path, src: Path, fmt: OutputFormat
           ) -> tuple[int, list[str]]:
    """The segments' video packets, in order, into one container; the input's audio beside
    them. Each segment starts on a keyframe of its own encoder with the same settings, so
    the stream's parameters (extradata) are the same in each: checked, not assumed."""
    frames = 0
    with av.open(str(out_path), mode="w", options=fmt.container_options) as out, \
            av.open(str(paths[0])) as first, contextlib.ExitStack() as stack:
        template = first.streams.video[0]
        stream: Any = out.add_stream_from_template(template)
        stream.time_base = template.time_base
        # the template leaves the tag out: MOV would then call ProRes 4444 "apch" (422 HQ),
        # and players that go by the tag would drop the alpha
        stream.codec_context.codec_tag = template.codec_context.codec_tag
        audio = stack.enter_context(_SourceAudio(src, out, fmt))
        last_dts: int | None = None
        for path in paths:
            with av.open(str(path)) as segment:
                video = segment.streams.video[0]
                if video.codec_context.extradata != template.codec_context.extradata:
                    raise SinkError(f"{path}: its stream parameters differ from the first "
                                    "segment's; the segments cannot be joined without "
                                    "re-encoding")
                for packet in segment.demux(video):
                    if packet.dts is None:
                        continue  # the demuxer's flush packet
                    packet.stream = stream
                    if last_dts is not None and packet.dts <= last_dts:
                        # the next encoder's first timestamps are its own guess at the B-frame
                        # delay; decode order must still rise, and never pass presentation
                        if packet.pts is not None and last_dts + 1 > packet.pts:
                            raise SinkError(f"{path}: its first timestamps overlap the previous "
                                            "segment's")
                        packet.dts = last_dts + 1
                    last_dts = packet.dts
                    frames += 1
                    out.mux(packet)
                    if packet.pts is not None and packet.time_base:
                        audio.mux_until(float(packet.pts * packet.time_base))
        audio.mux_until(None)
        tracks = audio.tracks()
    return frames, tracks


def _join_sequences(paths: list[Path], folder: Path, src: Path) -> tuple[int, list[str]]:
    """The segments' PNG frames renamed into one numbering in ``folder``; the input's audio
    into ``audio.mka`` beside them, as a one-machine run puts it."""
    frames = 0
    for path in paths:
        names = sorted(n for n in os.listdir(path) if n.startswith("frame_"))
        for name in names:
            os.rename(path / name, folder / f"frame_{frames:06d}.png")
            frames += 1
    tracks: list[str] = []
    with av.open(str(src)) as probe:
        has_audio = bool(probe.streams.audio)
    if has_audio:
        with av.open(str(folder / "audio.mka"), mode="w") as sidecar, \
                _SourceAudio(src, sidecar, None) as audio:
            audio.mux_until(None)
            tracks = [f"{track} → audio.mka" for track in audio.tracks()]
    write_manifest(folder, frames)
    return frames, tracks


__all__ = ["DEFAULT_SEGMENT_S", "HISTORY_FRAMES", "Segment", "SegmentPlan",
           "keyframe_cuts", "matte_segment", "plan_segments", "roll_frames", "splits",
           "stitch"]
