"""Live sources: a local camera (PyAV's v4l2 on Linux, OpenCV elsewhere), or a video file
played in real time and looped, standing in for a camera.

Both are ``is_live``: run them with the ``latest`` back-pressure, so a slow engine drops frames
instead of falling behind. Timestamps grow monotonically across loops.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np

from ..errors import SourceError
from ..frames import FramePacket
from .file import FileSource


def camera_device(spec: str | int) -> str | int:
    """``0`` → ``/dev/video0`` on Linux (an index elsewhere); a path stays a path."""
    text = str(spec).strip()
    if text.isdigit():
        return f"/dev/video{text}" if platform.system() == "Linux" else int(text)
    return text


class CameraSource:
    """Frames from a camera, as RGB, stamped with the capture clock (microseconds).

    ``size`` (width, height) and ``fps`` are requests; the camera may choose the nearest mode
    it has (``width``/``height``/``frame_rate`` say what it chose).
    """

    is_live = True

    def __init__(self, device: str | int, *, size: tuple[int, int] | None = None,
                 fps: float | None = None) -> None:
        self.device = camera_device(device)
        self._container: Any = None
        self._capture: Any = None
        self.time_base = Fraction(1, 1_000_000)
        if isinstance(self.device, str) and platform.system() == "Linux":
            self._open_v4l2(self.device, size, fps)
        else:
            self._open_opencv(self.device, size, fps)

    def _open_v4l2(self, path: str, size: tuple[int, int] | None, fps: float | None) -> None:
        if not os.path.exists(path):
            present = sorted(str(p) for p in Path("/dev").glob("video*"))
            raise SourceError(f"camera {path}: no such device (found: "
                              f"{', '.join(present) or 'no /dev/video* devices'})")
        options = {}
        if size:
            options["video_size"] = f"{size[0]}x{size[1]}"
        if fps:
            options["framerate"] = f"{fps:g}"
        try:
            self._container = av.open(path, format="v4l2", options=options)
        except av.error.FFmpegError as exc:
            raise SourceError(f"camera {path}: cannot open ({getattr(exc, 'strerror', exc)}); "
                              "is another program using it?") from exc
        stream = self._container.streams.video[0]
        self._stream = stream
        self.width, self.height = stream.codec_context.width, stream.codec_context.height
        rate = stream.average_rate or stream.guessed_rate
        self.frame_rate: Fraction | None = Fraction(rate) if rate else None

    def _open_opencv(self, index: str | int, size: tuple[int, int] | None,
                     fps: float | None) -> None:
        import cv2

        capture = cv2.VideoCapture(index)
        if not capture.isOpened():
            raise SourceError(f"camera {index}: cannot open (no such camera, or it is in use)")
        if size:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        if fps:
            capture.set(cv2.CAP_PROP_FPS, fps)
        self._capture = capture
        self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        rate = capture.get(cv2.CAP_PROP_FPS)
        self.frame_rate = Fraction(rate).limit_denominator(1001) if rate and rate > 0 else None

    def __iter__(self) -> Iterator[FramePacket]:
        start = time.perf_counter()
        index = 0
        if self._container is not None:
            for frame in self._container.decode(self._stream):
                image = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
                pts = round((time.perf_counter() - start) * 1_000_000)
                yield FramePacket(index=index, image=image, pts=pts, time_base=self.time_base)
                index += 1
            return
        import cv2

        while self._capture is not None:
            ok, bgr = self._capture.read()
            if not ok:
                raise SourceError(f"camera {self.device}: stopped delivering frames")
            image = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
            pts = round((time.perf_counter() - start) * 1_000_000)
            yield FramePacket(index=index, image=image, pts=pts, time_base=self.time_base)
            index += 1

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> CameraSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class LoopedFileSource:
    """A video file played at its own pace, from the start again at the end, like a camera.

    ``loops``: how many times to play it (None: until closed). ``realtime=False`` plays as
    fast as it decodes (tests). pts keep growing across loops, in the file's time base.
    """

    is_live = True

    def __init__(self, path: str | os.PathLike[str], *, loops: int | None = None,
                 realtime: bool = True) -> None:
        self.path = Path(path)
        with FileSource(self.path) as probe:  # fail now, with the file's own message
            self.width, self.height = probe.width, probe.height
            self.frame_rate = probe.frame_rate
            self.time_base = probe.time_base
        self.loops = loops
        self.realtime = realtime
        self._closed = False

    def __iter__(self) -> Iterator[FramePacket]:
        index = 0
        offset = 0
        start = time.perf_counter()
        frame_pts = round(1 / (self.frame_rate * self.time_base)) if self.frame_rate else 1
        played = 0
        while not self.is_closed() and (self.loops is None or played < self.loops):
            last: int | None = None
            with FileSource(self.path) as source:
                first = None
                for packet in source:
                    if self.is_closed():  # close() from another thread
                        return
                    pts = packet.pts if packet.pts is not None else packet.index * frame_pts
                    first = pts if first is None else first
                    packet.pts = offset + pts - first
                    packet.index = index
                    if self.realtime:
                        due = start + float(packet.pts * self.time_base)
                        delay = due - time.perf_counter()
                        if delay > 0:
                            time.sleep(delay)
                    last = packet.pts
                    index += 1
                    yield packet
            if last is None:
                raise SourceError(f"{self.path}: no frames to loop")
            offset = last + frame_pts
            played += 1

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> LoopedFileSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
