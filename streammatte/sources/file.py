"""Video files in, through PyAV.

Damaged input: by default the source conceals and counts. FFmpeg's decoders already conceal
most bitstream errors themselves; a packet the decoder rejects outright is skipped and counted
in ``damaged_packets``, a frame FFmpeg flags as corrupt is kept and counted in
``corrupt_frames``, and a file that ends early is said in ``ends_early``
(``"input ends early: 8 of 10 frames"``). With ``strict=True`` each of these raises
SourceError instead.

Ending early: a container that stops being readable part-way is one sign; the other is a file
cut short, which most demuxers read to its new end without complaint. So the end the frames
reached is compared with the one the container declares: the video stream's own duration or
frame count, in the stream's time base, where it has one (MP4, MOV, AVI; the per-track
``DURATION`` tag FFmpeg and mkvmerge write in Matroska and WebM), within half a frame; else the
whole file's duration, against the end every stream's packets reached, within one and a half
frames. Formats whose length is only estimated (MPEG-TS, raw streams: their durations come
from the bitrate or the last timestamp found) or absent are not judged, nor are those whose
declared length means something else per muxer (FLV's counts from zero, not from its start).

Timestamps: decoders return frames in display order, but some containers (AVI with packed
B-frames, the "Megamind" case) stamp them with decode-order times. A small reorder window hands
out the timestamps in increasing order, which is what they were meant to be; well-formed
streams pass through unchanged. ``reordered_timestamps`` counts the frames it restamped. A
timestamp that still goes back or repeats is damage (the muxer would refuse it): it is
replaced by the previous one plus a frame and counted in ``damaged_timestamps``.

A packet that the decoder takes without complaint but turns into no frame (damage it could
not conceal) is counted in ``damaged_packets`` too: at the end of the stream, the packets that
carried data are compared with the frames that came out.

Ranges (``DecodeRange``): the source seeks to the keyframe before the range's start (less its
pre-roll) and decodes forward, dropping the frames before it, so the first frame is the one a
decode from the beginning would give there; a seek that lands late (an index that is off, a
format without one) is retried from further back, down to the file's start. Damage before the
range's start is not the output's and is not counted. A range that ends before the file does is
not judged for ending early (a trim is not a truncation); one the file ends inside is.

Standard input: the path ``-`` reads a stream from stdin, in any format FFmpeg reads without
seeking (Matroska, MPEG-TS, NUT, y4m); a range is then decoded from the stream's beginning.

Audio: with ``audio=True`` the audio packets demuxed beside the video (one read of the input,
which is what lets stdin carry audio) go to ``audio_feed``, for one sink to carry: cut to the
range (to within an audio packet) and rebased with it.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import os
import re
from collections import deque
from collections.abc import Generator, Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import av.audio.stream
import av.container
import av.logging
import av.packet
import av.stream
import av.video.frame
import numpy as np

from ..config import DecodeRange
from ..errors import SourceError
from ..frames import FramePacket, RGBImage

__all__ = ["STDIO", "AudioFeed", "DecodeRange", "FileSource", "check_input_file", "is_stdio",
           "open_container", "rotate_upright"]

_REORDER_WINDOW = 4  # frames; more than any B-frame pyramid FFmpeg's MPEG-4 decoder emits
#: demuxers whose header states the length the way it is judged here (FFmpeg format names)
_DECLARES_LENGTH = frozenset({"mov", "mp4", "matroska", "webm", "avi"})
#: after a range's end, how far past it other streams' packets are read for audio that is
#: interleaved late (seconds)
_AUDIO_TAIL_S = 5
#: the path that means standard input (for a source) or standard output (for a sink)
STDIO = "-"


def is_stdio(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is ``-``: standard input for a source, standard output for a sink."""
    return os.fspath(path) == STDIO


def _tagged_duration(metadata: dict[str, str]) -> Fraction | None:
    """A Matroska track's ``DURATION`` tag (``00:00:02.400000000``) in seconds."""
    for key, value in metadata.items():
        if key.upper() == "DURATION" or key.upper().startswith("DURATION-"):
            match = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", value.strip())
            if match:
                hours, minutes, seconds = match.groups()
                return (int(hours) * 3600 + int(minutes) * 60) + Fraction(seconds)
    return None


def _ffmpeg_reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def check_input_file(path: Path, expected: str = "a video file") -> None:
    """Raise SourceError naming ``path`` unless it is a non-empty regular file."""
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    if path.is_dir():
        raise SourceError(f"{path}: is a directory, expected {expected}")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: empty file (0 bytes), expected {expected}")


def open_container(path: Path) -> av.container.InputContainer:
    """``path`` opened for reading (``-``: standard input), or SourceError saying why not."""
    if is_stdio(path):
        try:
            return av.open("pipe:0", mode="r")
        except (av.error.FFmpegError, UnicodeDecodeError) as exc:
            raise SourceError(
                f"stdin: not a readable video stream ({_ffmpeg_reason(exc)}); expected "
                "Matroska, MPEG-TS, NUT or y4m, e.g. ffmpeg -i IN -f matroska - | streammatte "
                "video - -o OUT"
            ) from exc
    check_input_file(path)
    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise SourceError(
            f"{path}: not a readable video ({_ffmpeg_reason(exc)}); expected a video file "
            "such as MP4, MOV, MKV, WebM or AVI"
        ) from exc


def rotate_upright(image: RGBImage, rotation: int) -> RGBImage:
    """Turn a decoded frame upright given its display-matrix rotation (degrees, CCW)."""
    quarter_turns = (rotation // 90) % 4
    if quarter_turns == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=quarter_turns))


class AudioFeed:
    """The input's audio packets, handed from the source's thread to one sink's, in demux order.

    ``streams`` are the input's audio streams (what an output's streams are made from). The
    source puts each packet as it demuxes it, already cut to its range and rebased with it;
    ``take`` hands them out; ``complete`` turns True once the source has put the last one. A
    packet goes to one taker: one sink carries the audio.
    """

    def __init__(self, streams: list[av.audio.stream.AudioStream]) -> None:
        self.streams = streams
        self.complete = False
        self._packets: deque[av.packet.Packet[Any]] = deque()  # appends and pops are atomic

    def put(self, packet: av.packet.Packet[Any]) -> None:
        self._packets.append(packet)

    def take(self, until_s: float | None = None) -> list[av.packet.Packet[Any]]:
        """The packets put so far that start at or before ``until_s`` seconds (None: all of
        them), in order; a packet without a timestamp goes with those before it."""
        out: list[av.packet.Packet[Any]] = []
        while self._packets:
            head = self._packets[0]
            if (until_s is not None and head.pts is not None and head.time_base is not None
                    and float(head.pts * head.time_base) > until_s):
                break
            out.append(self._packets.popleft())
        return out


class _Reseek(Exception):
    """The seek landed too late for the range: go back to ``target`` (seconds) and retry."""

    def __init__(self, target: Fraction) -> None:
        super().__init__(target)
        self.target = target


class FileSource:
    """Frames of the first video stream of a file (or of stdin, path ``-``), upright, as RGB,
    with their timestamps.

    ``decode_range`` (a DecodeRange) picks part of the file, with pre- and post-roll frames
    marked ``in_range=False``; ``index`` counts from 0 at the first frame in the range (pre-roll
    frames are negative). ``audio=True`` puts the audio packets into ``audio_feed`` (None when
    the input has no audio). The source is iterated once.
    """

    is_live = False

    def __init__(self, path: str | os.PathLike[str], *, strict: bool = False,
                 decode_range: DecodeRange | None = None, audio: bool = False) -> None:
        self.path = Path(path)
        self.stdin = is_stdio(path)
        #: what messages call the input: its path, or "stdin"
        self.label = "stdin" if self.stdin else str(self.path)
        #: what notes call it: its file name, or "stdin"
        self.name = "stdin" if self.stdin else self.path.name
        self.strict = strict
        self.decode_range = decode_range or DecodeRange()
        self._container: av.container.InputContainer | None = open_container(self.path)
        container = self._container
        if not container.streams.video:
            kinds: list[str] = sorted({str(s.type) for s in container.streams}) or ["nothing"]
            self.close()
            raise SourceError(f"{self.label}: no video stream (found: {', '.join(kinds)})")
        self._stream = container.streams.video[0]
        self._stream.thread_type = "AUTO"
        codec = self._stream.codec_context
        self.codec_name: str = codec.name
        self.time_base: Fraction = self._stream.time_base or Fraction(1, 90000)
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.frame_rate: Fraction | None = Fraction(rate) if rate else None
        self.frame_count: int | None = self._stream.frames or self._estimate_frame_count()
        self._declared_end, self._end_tolerance, self._whole_file = self._declared()
        self._reached_end = Fraction(0)
        self.rotation: int = 0
        self.ignored_rotation: int = 0
        self._rotation_known = False
        self._coded_size = (codec.width, codec.height)
        self.audio_streams = list(container.streams.audio)
        #: the audio packets, for a sink (``audio=True`` and an input with audio)
        self.audio_feed: AudioFeed | None = (AudioFeed(self.audio_streams)
                                             if audio and self.audio_streams else None)
        self.damaged_packets = 0
        self.corrupt_frames = 0
        self.truncated = False
        #: frames yielded in the range, once iterated
        self.decoded_frames = 0
        self.ends_early: str | None = None
        self.reordered_timestamps = 0
        self.damaged_timestamps = 0
        self._last_pts: int | None = None
        self._pts_step = max(1, round(1 / (self.frame_rate * self.time_base))) \
            if self.frame_rate else 1
        self._stream_start = (self._stream.start_time or 0) * self.time_base
        self._file_start = Fraction(container.start_time or 0, av.time_base)
        span = self.decode_range
        # the range in the file's own seconds; Fraction(str()) keeps a typed 0.1 exact
        self._start = self._file_start + Fraction(str(span.start_s))
        self._end = None if span.end_s is None else self._file_start + Fraction(str(span.end_s))
        self._packets: Iterator[av.packet.Packet[Any]] = iter(())
        self._fresh = True  # nothing read yet: the demuxer is at the stream's beginning
        self._sought = False
        self._floor: int | None = None  # the keyframe a seek landed on (pts)
        self._decoded_total = 0  # frames out of the decoder since the decode started
        self._video_end = Fraction(0)
        self._first_s: Fraction | None = None  # the first in-range frame's time
        self._covered_s: Fraction | None = None  # the last in-range frame's time so far
        self._range_done = False
        self._audio_end: Fraction | None = None
        self._held: deque[av.packet.Packet[Any]] = deque()
        if self._coded_size[0] <= 0 or self._coded_size[1] <= 0:
            self.close()
            raise SourceError(f"{self.label}: video stream has no frame size")

    def _estimate_frame_count(self) -> int | None:
        duration = self._container.duration if self._container else None
        if duration and self.frame_rate:
            return round(duration / av.time_base * self.frame_rate)
        return None

    def _declared(self) -> tuple[Fraction | None, Fraction, bool]:
        """(where the video should end in seconds, how far short of it is still whole, whether
        that end is the whole file's rather than the video stream's own)."""
        container, stream = self._container, self._stream
        names = set(container.format.name.split(",")) if container else set()
        if container is None or not self.frame_rate or not names & _DECLARES_LENGTH:
            return None, Fraction(0), False
        step = 1 / self.frame_rate
        start = stream.start_time or 0
        # AVI states a frame count in its header, and FFmpeg re-derives the duration from the
        # packets it finds, which in a file cut short is the shorter length
        if stream.frames and (not stream.duration or "avi" in names):
            return start * self.time_base + stream.frames * step, step / 2, False
        if stream.duration:
            return (start + stream.duration) * self.time_base, step / 2, False
        tagged = _tagged_duration(dict(stream.metadata))
        if tagged:
            return start * self.time_base + tagged, step / 2, False
        if container.duration:
            file_start = Fraction(container.start_time or 0, av.time_base)
            return file_start + Fraction(container.duration, av.time_base), step * 3 / 2, True
        return None, Fraction(0), False

    @property
    def declared_frames(self) -> int | None:
        """How many frames the container says the video has, where it says so."""
        if self._declared_end is None or not self.frame_rate:
            return None
        if self._stream.frames:
            return int(self._stream.frames)
        start = (self._stream.start_time or 0) * self.time_base
        return round((self._declared_end - start) * self.frame_rate)

    @property
    def expected_frames(self) -> int | None:
        """About how many frames the range holds (pre- and post-roll left out), where the
        file says enough to tell: for progress, not for judging."""
        span, rate = self.decode_range, self.frame_rate
        total = self.frame_count
        if total is not None and span.start_s and rate:
            total = max(0, total - round(span.start_s * rate))
        if span.end_s is not None and rate:
            within = math.ceil((span.end_s - span.start_s) * rate)
            total = within if total is None else min(total, within)
        if span.max_frames is not None:
            total = span.max_frames if total is None else min(total, span.max_frames)
        return total

    def why_empty(self) -> str:
        """Why no frame came out, for an error that names the input."""
        if self.ends_early:
            return f"the {self.ends_early}"
        if self.damaged_packets:
            return f"all {self.damaged_packets} packet(s) were damaged"
        if self.decode_range.trims and self._decoded_total:
            return (f"no frame lies in the range asked for (from {self.decode_range.start_s:g} "
                    f"s); the video ends at {float(self._video_end - self._file_start):.3g} s")
        return "its video stream holds no frames"

    def _judge_end(self) -> str | None:
        declared = self._declared_end
        expected = self.declared_frames
        if declared is not None and self._reached_end >= declared - self._end_tolerance:
            return None  # whatever stopped the demuxer came after every declared frame
        if declared is None and not self.truncated:
            return None
        frames = self._decoded_total
        if self._sought and self.frame_rate:  # the frames before the seek were not counted
            frames = round((self._video_end - self._stream_start) * self.frame_rate)
        if expected is not None and expected > frames:
            return f"input ends early: {frames} of {expected} frames"
        return f"input ends early: {frames} frames read, the rest is unreadable"

    @property
    def width(self) -> int:
        w, h = self._coded_size
        return h if self.rotation % 180 else w

    @property
    def height(self) -> int:
        w, h = self._coded_size
        return w if self.rotation % 180 else h

    @property
    def duration_s(self) -> float | None:
        if self._container is None or not self._container.duration:
            return None
        return float(self._container.duration / av.time_base)

    def _fail_or_count(self, what: str, exc: BaseException | None = None) -> None:
        if self.strict:
            detail = f" ({_ffmpeg_reason(exc)})" if exc else ""
            raise SourceError(f"{self.label}: {what}{detail}") from exc

    def _counts(self, time: Fraction | None) -> bool:
        """Whether damage at ``time`` is the output's (nothing before the range's start is)."""
        return not self.decode_range.start_s or time is None or time >= self._start

    def _time(self, pts: int | None) -> Fraction | None:
        return None if pts is None else pts * self.time_base

    # -- the range ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[FramePacket]:
        if self._container is None:
            raise SourceError(f"{self.label}: source is closed")
        span = self.decode_range
        lead = Fraction(span.pre_roll_frames + 1) / self.frame_rate if self.frame_rate \
            else Fraction(1)
        target = self._start - lead
        while True:
            counters = (self.damaged_packets, self.corrupt_frames, self.reordered_timestamps,
                        self.damaged_timestamps)
            try:
                yield from self._ranged(target)
                return
            except _Reseek as again:  # raised before the first yield: nothing went out
                (self.damaged_packets, self.corrupt_frames, self.reordered_timestamps,
                 self.damaged_timestamps) = counters
                target = again.target

    def _seek(self, target: Fraction) -> None:
        """Put the demuxer at the keyframe at or before ``target`` (seconds), or at the
        stream's beginning when that is where the target lies (or the input cannot seek)."""
        assert self._container is not None
        self._last_pts, self._floor, self._decoded_total = None, None, 0
        self._held.clear()
        if self.stdin or (target <= self._stream_start and self._fresh):
            self._sought = False
        else:
            begin = target <= self._stream_start
            ticks = (self._stream.start_time or 0) if begin \
                else math.floor(target / self.time_base)
            try:
                self._container.seek(ticks, stream=self._stream, backward=True)
            except av.error.FFmpegError as exc:
                if not self._fresh:
                    raise SourceError(f"{self.label}: cannot seek back to "
                                      f"{float(target):.3f} s ({_ffmpeg_reason(exc)})") from exc
                # a first seek that fails leaves the demuxer where it was: at the beginning
                begin = True
            self._sought = not begin
        self._fresh = False
        streams = [self._stream, *(self.audio_streams if self.audio_feed else [])]
        # a whole-file length is judged against every stream's packets (audio may run longer)
        self._packets = self._container.demux() if self._whole_file \
            else self._container.demux(*streams)

    def _ranged(self, target: Fraction) -> Iterator[FramePacket]:
        span = self.decode_range
        self._seek(target)
        before: deque[tuple[av.video.frame.VideoFrame, int | None]] = deque(
            maxlen=span.pre_roll_frames)
        first_s: Fraction | None = None  # the first usable frame after the seek
        inside = post = 0
        with contextlib.closing(self._restamped(self._decoded())) as frames:
            for frame, pts in frames:
                time = self._time(pts)
                if self._range_done:
                    if post >= span.post_roll_frames:
                        break
                    yield self._emit(frame, pts, inside + post, in_range=False)
                    post += 1
                    continue
                if inside == 0 and self._floor is not None and pts is not None \
                        and pts < self._floor:
                    continue  # shown before the keyframe the seek landed on (open GOP)
                if first_s is None:
                    first_s = time
                if inside == 0 and time is not None and time < self._start:
                    before.append((frame, pts))
                    continue
                if time is not None and self._end is not None and time >= self._end:
                    self._close_range(self._end)
                    if inside == 0 or span.post_roll_frames == 0:
                        break
                    yield self._emit(frame, pts, inside, in_range=False)
                    post = 1
                    continue
                if inside == 0:
                    self._check_landing(target, first_s, len(before))
                    self._first_s = time
                    for k, (early, early_pts) in enumerate(before):
                        yield self._emit(early, early_pts, k - len(before), in_range=False)
                    before.clear()
                yield self._emit(frame, pts, inside, in_range=True)
                inside += 1
                self._covered_s = time
                self._release_audio()
                if span.max_frames is not None and inside >= span.max_frames:
                    end = None if time is None else time + self._frame_length(frame)
                    self._close_range(end if self._end is None or end is None
                                      else min(end, self._end))
                    if span.post_roll_frames == 0:
                        break
        self.decoded_frames = inside
        if self._range_done:
            self._audio_tail()
        else:
            self._release_audio(final=True)
            self.ends_early = self._judge_end()
        if self.audio_feed is not None:
            self.audio_feed.complete = True
        if self.ends_early and self.strict:
            raise SourceError(f"{self.label}: {self.ends_early}")

    def _check_landing(self, target: Fraction, first_s: Fraction | None, pre_rolled: int) -> None:
        """Raise _Reseek when the seek landed after the range's start, or too late for its
        pre-roll, and an earlier start could do better."""
        if not self._sought or first_s is None:
            return
        short = pre_rolled < self.decode_range.pre_roll_frames
        if first_s > self._start or (short and first_s > self._stream_start):
            lead = max(self._start - target, Fraction(1))
            raise _Reseek(self._start - 4 * lead)

    def _frame_length(self, frame: av.video.frame.VideoFrame) -> Fraction:
        if frame.duration:
            return frame.duration * self.time_base
        return 1 / self.frame_rate if self.frame_rate else Fraction(0)

    def _close_range(self, audio_end: Fraction | None) -> None:
        """The range has ended before the file: audio goes up to ``audio_end`` (seconds)."""
        self._range_done = True
        self._audio_end = audio_end
        self._release_audio()

    # -- decoding -----------------------------------------------------------------------------

    def _restamped(self, decoded: Generator[tuple[av.video.frame.VideoFrame, int | None]]
                   ) -> Generator[tuple[av.video.frame.VideoFrame, int | None]]:
        """Frames with their timestamps handed out in increasing order (see the module's
        docstring)."""
        window: deque[tuple[av.video.frame.VideoFrame, int | None]] = deque()
        pending_pts: list[int] = []
        try:
            for frame, pts in decoded:
                window.append((frame, pts))
                if pts is None:
                    continue
                heapq.heappush(pending_pts, pts)
                if len(window) > _REORDER_WINDOW:
                    yield self._restamp(*window.popleft(), heapq.heappop(pending_pts))
            while window:
                head, pts = window.popleft()
                yield self._restamp(head, pts, heapq.heappop(pending_pts)) if pending_pts \
                    else (head, pts)
        finally:
            decoded.close()

    def _restamp(self, frame: av.video.frame.VideoFrame, stamped: int | None, pts: int
                 ) -> tuple[av.video.frame.VideoFrame, int]:
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + self._pts_step
            if self._counts(self._time(pts)):
                self.damaged_timestamps += 1
                self._fail_or_count(f"damaged timestamp at {float(pts * self.time_base):.3f} s")
        elif stamped != pts and self._counts(self._time(pts)):
            self.reordered_timestamps += 1
        self._last_pts = pts
        return frame, pts

    def _decoded(self) -> Generator[tuple[av.video.frame.VideoFrame, int | None]]:
        """Every frame the decoder gives from where the demuxer stands, with its pts; at the end
        of the stream, the packets that gave no frame are counted as damaged."""
        stream = self._stream
        carried = 0  # packets that should each give a frame
        landing = self._sought  # the first video packet after a seek is its keyframe
        while True:
            try:
                packet = next(self._packets)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                self.truncated = True
                self._fail_or_count(f"unreadable after frame {self._decoded_total}", exc)
                break
            if packet.stream is not stream:
                self._other_packet(packet)
                continue
            if landing and packet.pts is not None:
                self._floor = packet.pts if packet.is_keyframe else None
                landing = False
            counts = self._counts(self._time(packet.pts))
            if packet.size and not packet.is_discard:
                carried += 1
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                if counts:
                    self.damaged_packets += 1
                    self._fail_or_count(f"damaged packet after frame {self._decoded_total}", exc)
                continue
            for frame in frames:
                pts = frame.pts
                if pts is None and self.frame_rate and not self._sought:
                    pts = round(self._decoded_total / (self.frame_rate * self.time_base))
                if pts is not None:
                    end = pts * self.time_base + self._frame_length(frame)
                    self._video_end = max(self._video_end, end)
                    self._reached_end = max(self._reached_end, end)
                self._decoded_total += 1
                yield frame, pts
        # only a decode from the very beginning has every packet's frame to count
        silent = carried - self._decoded_total - self.damaged_packets
        if not self.decode_range.start_s and silent > 0:
            self.damaged_packets += silent
            self._fail_or_count(f"{silent} damaged packet(s) gave no frame")

    def _other_packet(self, packet: av.packet.Packet[Any]) -> None:
        if self._whole_file and packet.pts is not None and packet.time_base is not None:
            end = (packet.pts + (packet.duration or 0)) * packet.time_base
            self._reached_end = max(self._reached_end, end)
        if self.audio_feed is not None and packet.stream.type == "audio":
            self._held.append(packet)
            self._release_audio()

    def _emit(self, frame: av.video.frame.VideoFrame, pts: int | None, index: int, *,
              in_range: bool) -> FramePacket:
        if frame.is_corrupt and in_range:
            self.corrupt_frames += 1
            self._fail_or_count(f"corrupt frame {index}")
        if not self._rotation_known:
            rotation = int(getattr(frame, "rotation", 0) or 0)
            # only quarter turns are rotations a camera writes; anything else is damage
            self.rotation, self.ignored_rotation = (rotation, 0) if rotation % 90 == 0 \
                else (0, rotation)
            self._rotation_known = True
        rgb = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
        image = rotate_upright(rgb, self.rotation)
        if self.decode_range.rebase and pts is not None and self._first_s is not None:
            pts -= round(self._first_s / self.time_base)
        return FramePacket(index=index, image=image, pts=pts, time_base=self.time_base,
                           in_range=in_range)

    # -- audio --------------------------------------------------------------------------------

    def _release_audio(self, *, final: bool = False) -> None:
        """Hand the held audio packets that are known to lie in the range to the feed, drop
        those known to lie outside it, and keep the rest until the video tells."""
        feed, span = self.audio_feed, self.decode_range
        if feed is None:
            return
        low = (self._first_s if self._first_s is not None else self._start) \
            if span.start_s else None
        high = self._audio_end if self._range_done else self._end
        needs_first = bool(span.start_s) or span.rebase
        while self._held:
            packet = self._held[0]
            time = None if packet.pts is None or packet.time_base is None \
                else packet.pts * packet.time_base
            if time is not None:
                outside = (low is not None and time < low) or (high is not None and time >= high)
                if outside or (needs_first and self._first_s is None
                               and (final or self._range_done)):
                    self._held.popleft()
                    continue
                waiting = (needs_first and self._first_s is None) or (
                    not final and not self._range_done and span.max_frames is not None
                    and (self._covered_s is None or time > self._covered_s))
                if waiting:
                    return
            self._held.popleft()
            if span.rebase and self._first_s is not None and packet.time_base is not None:
                shift = round(self._first_s / packet.time_base)
                if packet.pts is not None:
                    packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
            feed.put(packet)

    def _audio_tail(self) -> None:
        """After a range that ended before the file: read on to the audio that belongs with
        its last frames (audio is interleaved a little after the video it goes with)."""
        if self.audio_feed is None or self._audio_end is None or self._first_s is None:
            self._release_audio(final=True)
            return
        wanted = {s.index for s in self.audio_streams}
        passed: set[int] = set()
        while passed != wanted:
            try:
                packet = next(self._packets)
            except (StopIteration, av.error.FFmpegError):
                break
            time = None if packet.pts is None or packet.time_base is None \
                else packet.pts * packet.time_base
            if packet.stream.type == "audio" and packet.stream.index in wanted:
                self._held.append(packet)
                if time is not None and time >= self._audio_end:
                    passed.add(packet.stream.index)
            elif time is not None and time >= self._audio_end + _AUDIO_TAIL_S:
                break  # an audio stream that ended before the range did
        self._release_audio(final=True)

    # -- the rest -----------------------------------------------------------------------------

    def describe(self) -> str:
        rate = f"{float(self.frame_rate):.3g} fps" if self.frame_rate else "unknown rate"
        count = f"{self.frame_count} frames" if self.frame_count else "unknown length"
        return f"{self.name}: {self.codec_name} {self._coded_size[0]}×{self._coded_size[1]}" \
               f", {rate}, {count}, {len(self.audio_streams)} audio stream(s)"

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> FileSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
