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
"""

from __future__ import annotations

import heapq
import os
import re
from collections import deque
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import av.container
import av.logging
import av.packet
import av.stream
import av.video.frame
import numpy as np

from ..errors import SourceError
from ..frames import FramePacket, RGBImage

_REORDER_WINDOW = 4  # frames; more than any B-frame pyramid FFmpeg's MPEG-4 decoder emits
#: demuxers whose header states the length the way it is judged here (FFmpeg format names)
_DECLARES_LENGTH = frozenset({"mov", "mp4", "matroska", "webm", "avi"})


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


class FileSource:
    """Frames of the first video stream of a file, upright, as RGB, with their timestamps."""

    is_live = False

    def __init__(self, path: str | os.PathLike[str], *, strict: bool = False) -> None:
        self.path = Path(path)
        self.strict = strict
        self._container: av.container.InputContainer | None = open_container(self.path)
        container = self._container
        if not container.streams.video:
            kinds: list[str] = sorted({str(s.type) for s in container.streams}) or ["nothing"]
            self.close()
            raise SourceError(f"{self.path}: no video stream (found: {', '.join(kinds)})")
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
        self._coded_size = (codec.width, codec.height)
        self.audio_streams = list(container.streams.audio)
        self.damaged_packets = 0
        self.corrupt_frames = 0
        self.truncated = False
        self.decoded_frames = 0
        self.ends_early: str | None = None
        self.reordered_timestamps = 0
        self.damaged_timestamps = 0
        self._last_pts: int | None = None
        self._pts_step = max(1, round(1 / (self.frame_rate * self.time_base))) \
            if self.frame_rate else 1
        if self._coded_size[0] <= 0 or self._coded_size[1] <= 0:
            self.close()
            raise SourceError(f"{self.path}: video stream has no frame size")

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

    def why_empty(self) -> str:
        """Why no frame came out, for an error that names the input."""
        if self.ends_early:
            return f"the {self.ends_early}"
        if self.damaged_packets:
            return f"all {self.damaged_packets} packet(s) were damaged"
        return "its video stream holds no frames"

    def _judge_end(self, frames: int, demux_failed: bool) -> str | None:
        declared = self._declared_end
        expected = self.declared_frames
        if declared is not None and self._reached_end >= declared - self._end_tolerance:
            return None  # whatever stopped the demuxer came after every declared frame
        if declared is None and not demux_failed:
            return None
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
            raise SourceError(f"{self.path}: {what}{detail}") from exc

    def __iter__(self) -> Iterator[FramePacket]:
        window: deque[FramePacket] = deque()
        pending_pts: list[int] = []
        for packet in self._decoded():
            window.append(packet)
            if packet.pts is None:
                continue
            heapq.heappush(pending_pts, packet.pts)
            if len(window) > _REORDER_WINDOW:
                yield self._restamp(window.popleft(), heapq.heappop(pending_pts))
        while window:
            head = window.popleft()
            yield self._restamp(head, heapq.heappop(pending_pts)) if pending_pts else head

    def _restamp(self, packet: FramePacket, pts: int) -> FramePacket:
        if self._last_pts is not None and pts <= self._last_pts:
            self.damaged_timestamps += 1
            self._fail_or_count(f"damaged timestamp at frame {packet.index}")
            pts = self._last_pts + self._pts_step
        elif packet.pts != pts:
            self.reordered_timestamps += 1
        packet.pts = self._last_pts = pts
        return packet

    def _decoded(self) -> Iterator[FramePacket]:
        if self._container is None:
            raise SourceError(f"{self.path}: source is closed")
        container, stream = self._container, self._stream
        index = 0
        carried = 0  # packets that should each give a frame
        # a whole-file length is judged against every stream's packets (audio may run longer)
        packets: Iterator[av.packet.Packet[Any]] = (
            container.demux() if self._whole_file else container.demux(stream))
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                self.truncated = True
                self._fail_or_count(f"unreadable after frame {index}", exc)
                break
            if packet.stream is not stream:
                if packet.pts is not None and packet.time_base is not None:
                    end = (packet.pts + (packet.duration or 0)) * packet.time_base
                    self._reached_end = max(self._reached_end, end)
                continue
            if packet.size and not packet.is_discard:
                carried += 1
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                self.damaged_packets += 1
                self._fail_or_count(f"damaged packet after frame {index}", exc)
                continue
            for frame in frames:
                yield self._packet(frame, index)
                index += 1
        self.decoded_frames = index
        silent = carried - index - self.damaged_packets
        if silent > 0:
            self.damaged_packets += silent
            self._fail_or_count(f"{silent} damaged packet(s) gave no frame")
        self.ends_early = self._judge_end(index, self.truncated)
        if self.ends_early and self.strict:
            raise SourceError(f"{self.path}: {self.ends_early}")

    def _packet(self, frame: av.video.frame.VideoFrame, index: int) -> FramePacket:
        if frame.is_corrupt:
            self.corrupt_frames += 1
            self._fail_or_count(f"corrupt frame {index}")
        if index == 0:
            rotation = int(getattr(frame, "rotation", 0) or 0)
            # only quarter turns are rotations a camera writes; anything else is damage
            self.rotation, self.ignored_rotation = (rotation, 0) if rotation % 90 == 0 \
                else (0, rotation)
        rgb = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
        image = rotate_upright(rgb, self.rotation)
        pts = frame.pts
        if pts is None and self.frame_rate:
            pts = round(index / (self.frame_rate * self.time_base))
        if pts is not None:
            length = frame.duration * self.time_base if frame.duration else (
                1 / self.frame_rate if self.frame_rate else Fraction(0))
            self._reached_end = max(self._reached_end, pts * self.time_base + length)
        return FramePacket(index=index, image=image, pts=pts, time_base=self.time_base)

    def describe(self) -> str:
        rate = f"{float(self.frame_rate):.3g} fps" if self.frame_rate else "unknown rate"
        count = f"{self.frame_count} frames" if self.frame_count else "unknown length"
        return f"{self.path.name}: {self.codec_name} {self._coded_size[0]}×{self._coded_size[1]}" \
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
