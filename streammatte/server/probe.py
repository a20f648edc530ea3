"""What an upload is, decided from its bytes before anything decodes it.

The file type comes from magic bytes, never from the name a client sent. Image sizes are read
from the header (PNG IHDR, JPEG SOF, WebP VP8/VP8L/VP8X), so a decompression bomb is refused
before a single pixel is decoded. Videos are opened by PyAV with the demuxer that matches
their magic bytes forced, so FFmpeg never picks a demuxer that follows references to other
files or URLs (HLS, concat, …); their size and duration come from the container's headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import av
import av.container

from ..errors import SourceError

MediaKind = Literal["image", "video"]

IMAGE_TYPES = "JPEG, PNG or WebP"
VIDEO_TYPES = "MP4, MOV, WebM, MKV or AVI"

# SOFn markers that carry the frame size (C4 DHT, C8 JPG and CC DAC are not frames)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_MP4_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"}


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """The probed facts about one upload."""

    kind: MediaKind
    #: "jpeg", "png", "webp", or the forced FFmpeg demuxer ("mov", "matroska", "avi")
    format: str
    width: int
    height: int
    duration_s: float | None = None
    frame_rate: float | None = None
    frame_count: int | None = None

    @property
    def pixels(self) -> int:
        return self.width * self.height


class ProbeError(SourceError):
    """The upload is not what was expected, or not readable as such.

    ``unsupported`` is True when the type itself is wrong (HTTP 415), False when the type is
    right but the file is damaged (HTTP 422).
    """

    def __init__(self, message: str, *, unsupported: bool) -> None:
        super().__init__(message)
        self.unsupported = unsupported


def sniff(head: bytes) -> tuple[MediaKind, str] | None:
    """(kind, format) from the first bytes of a file, or None when it is neither."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video", "avi"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video", "matroska"
    if len(head) >= 8 and head[4:8] in _MP4_BOXES:
        return "video", "mov"
    return None


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ProbeError(f"{what}: the file ends inside its header (truncated)", unsupported=False)
    return data


def _png_size(f: BinaryIO, name: str) -> tuple[int, int]:
    header = _read_exact(f, 24, name)
    if header[12:16] != b"IHDR":
        raise ProbeError(f"{name}: PNG without an IHDR header", unsupported=False)
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def _jpeg_size(f: BinaryIO, name: str) -> tuple[int, int]:
    f.seek(2)
    while True:
        byte = f.read(1)
        if not byte:
            raise ProbeError(f"{name}: JPEG without a frame header (truncated or damaged)",
                             unsupported=False)
        if byte != b"\xff":
            raise ProbeError(f"{name}: damaged JPEG (expected a marker)", unsupported=False)
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            continue
        code = marker[0]
        if code == 0x01 or 0xD0 <= code <= 0xD8:
            continue  # markers without a length
        if code == 0xD9:
            raise ProbeError(f"{name}: JPEG ends before its frame header", unsupported=False)
        length = int.from_bytes(_read_exact(f, 2, name), "big")
        if length < 2:
            raise ProbeError(f"{name}: damaged JPEG segment length", unsupported=False)
        if code in _JPEG_SOF:
            segment = _read_exact(f, 5, name)
            height = int.from_bytes(segment[1:3], "big")
            width = int.from_bytes(segment[3:5], "big")
            return width, height
        f.seek(length - 2, 1)


def _webp_size(f: BinaryIO, name: str) -> tuple[int, int]:
    header = _read_exact(f, 30, name)
    chunk = header[12:16]
    if chunk == b"VP8 ":
        if header[23:26] != b"\x9d\x01\x2a":
            raise ProbeError(f"{name}: damaged WebP (bad VP8 start code)", unsupported=False)
        width = int.from_bytes(header[26:28], "little") & 0x3FFF
        height = int.from_bytes(header[28:30], "little") & 0x3FFF
        return width, height
    if chunk == b"VP8L":
        bits = int.from_bytes(header[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(header[24:27], "little")
        height = 1 + int.from_bytes(header[27:30], "little")
        return width, height
    raise ProbeError(f"{name}: WebP with an unknown first chunk {chunk!r}", unsupported=False)


def _probe_video(path: Path, fmt: str, name: str) -> MediaInfo:
    try:
        container: av.container.InputContainer = av.open(str(path), mode="r", format=fmt)
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ProbeError(f"{name}: not a readable video ({reason}); the file may be truncated "
                         "or damaged", unsupported=False) from exc
    with container:
        if not container.streams.video:
            kinds = sorted({str(s.type) for s in container.streams}) or ["nothing"]
            raise ProbeError(f"{name}: no video stream (found: {', '.join(kinds)})",
                             unsupported=True)
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            raise ProbeError(f"{name}: the video stream has no frame size", unsupported=False)
        duration: float | None = None
        if container.duration:
            duration = float(container.duration / av.time_base)
        elif stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        rate = stream.average_rate or stream.guessed_rate
        frame_rate = float(rate) if rate else None
        frames = stream.frames or (round(duration * frame_rate)
                                   if duration and frame_rate else None)
        return MediaInfo("video", container.format.name.split(",")[0], width, height,
                         duration_s=duration, frame_rate=frame_rate, frame_count=frames or None)


def probe(path: Path, name: str | None = None) -> MediaInfo:
    """Probe the file at ``path``; messages call it ``name`` (the client's file name).

    Raises ProbeError (``unsupported`` set for a wrong type) for anything that is not a
    JPEG/PNG/WebP image or an MP4/MOV/WebM/MKV/AVI video with a video stream.
    """
    label = name or path.name
    with path.open("rb") as f:
        head = f.read(32)
        found = sniff(head)
        if found is None:
            if not head:
                raise ProbeError(f"{label}: empty file", unsupported=True)
            raise ProbeError(f"{label}: not a supported image ({IMAGE_TYPES}) or video "
                             f"({VIDEO_TYPES})", unsupported=True)
        kind, fmt = found
        if kind == "video":
            return _probe_video(path, fmt, label)
        f.seek(0)
        reader = {"png": _png_size, "jpeg": _jpeg_size, "webp": _webp_size}[fmt]
        width, height = reader(f, label)
    if width <= 0 or height <= 0:
        raise ProbeError(f"{label}: image header says {width}×{height} pixels",
                         unsupported=False)
    return MediaInfo("image", fmt, width, height)
