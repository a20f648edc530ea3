"""Benchmark of the live path: sustained fps and added latency through the WebRTC server.

``python -m streammatte.bench_live --size 640x480 --duration-s 180`` starts the live server
in this process on loopback, connects an aiortc client that sends a synthetic (or DAVIS)
camera at the requested rate, and prints a table: fps delivered back to the client, the
server's added latency (receive → send, p50/p95) for the whole run and per minute (growth
shows there), and the dropped-frame share.

The client pieces (:class:`CameraTrack`, :class:`LiveClient`) are also what the tests use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiohttp import ClientSession, web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from .temporal import DEFAULT_LIVE_MODE, TEMPORAL_FILTERS

VIDEO_CLOCK = Fraction(1, 90000)
FrameFn = Callable[[int], np.ndarray]


class CameraTrack(MediaStreamTrack):
    """A paced synthetic camera: frame ``i`` is ``make_frame(i)`` at ``pts = i·90000/fps``.

    ``make_frame`` gives an H×W×3 RGB image, or with ``pixel_format="yuv420p"`` a
    (H·3/2)×W I420 one (what a browser's camera hands its encoder: no conversion per frame).
    ``frames``: how many to send before the track ends (None: endless). ``freeze()`` stops
    it producing without ending it, as a peer that vanished would.
    """

    kind = "video"

    def __init__(self, make_frame: FrameFn, *, fps: float = 30.0, frames: int | None = None,
                 pixel_format: str = "rgb24") -> None:
        super().__init__()
        self.make_frame = make_frame
        self.pixel_format = pixel_format
        self.fps = fps
        self.frames = frames
        self.sent = 0
        self.sent_pts: dict[int, int] = {}
        self._start: float | None = None
        self._frozen = asyncio.Event()

    def pts_of(self, index: int) -> int:
        return round(index * 90000 / self.fps)

    def freeze(self) -> None:
        self._frozen.set()

    async def recv(self) -> av.VideoFrame:
        if self.frames is not None and self.sent >= self.frames:
            self.stop()
            raise MediaStreamError
        if self._frozen.is_set():
            await asyncio.Event().wait()  # never again
        if self._start is None:
            self._start = time.perf_counter()
        index = self.sent
        delay = self._start + index / self.fps - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.VideoFrame.from_ndarray(self.make_frame(index), format=self.pixel_format)
        frame.pts = self.pts_of(index)
        frame.time_base = VIDEO_CLOCK
        self.sent_pts[index] = frame.pts
        self.sent += 1
        return frame


@dataclass(slots=True)
class Received:
    image: np.ndarray
    pts: int
    at_s: float


@dataclass(slots=True)
class LiveClient:
    """An aiortc peer talking to ``/api/offer``: sends ``track``, keeps what comes back."""

    pc: RTCPeerConnection
    channel: Any
    peer_id: str
    received: deque[Received] = field(default_factory=lambda: deque(maxlen=64))
    count: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    keep_images: bool = True
    _reader: asyncio.Task[None] | None = None
    _new_message: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def connect(cls, base_url: str, track: MediaStreamTrack, *,
                      settings: dict[str, Any] | None = None, token: str | None = None,
                      keep_images: bool = True) -> LiveClient:
        pc = RTCPeerConnection()
        pc.addTrack(track)
        channel = pc.createDataChannel("control")
        await pc.setLocalDescription(await pc.createOffer())
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = {"sdp": pc.localDescription.sdp, "type": "offer", "settings": settings or {}}
        async with ClientSession() as http, \
                http.post(f"{base_url}/api/offer", json=body, headers=headers) as response:
            reply = await response.json()
            if response.status != 200:
                await pc.close()
                raise RuntimeError(f"offer refused ({response.status}): {reply.get('error')}")
        client = cls(pc=pc, channel=channel, peer_id=reply["peer"], keep_images=keep_images)

        @channel.on("message")
        def on_message(message: object) -> None:
            if isinstance(message, str):
                client.messages.append(json.loads(message))
                client._new_message.set()

        @pc.on("track")
        def on_track(remote: MediaStreamTrack) -> None:
            client._reader = asyncio.ensure_future(client._read(remote))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type=reply["type"]))
        return client

    async def _read(self, remote: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await remote.recv()
                if not isinstance(frame, av.VideoFrame) or frame.pts is None:
                    continue
                image = frame.to_ndarray(format="rgb24") if self.keep_images else np.empty(0)
                self.received.append(Received(image, frame.pts, time.perf_counter()))
                self.count += 1
        except MediaStreamError:
            pass

    async def wait_frames(self, count: int, timeout_s: float = 20.0) -> None:
        deadline = time.perf_counter() + timeout_s
        while self.count < count:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"received {self.count} of {count} frames in {timeout_s} s")
            await asyncio.sleep(0.02)

    async def send_settings(self, settings: dict[str, Any], timeout_s: float = 20.0
                            ) -> dict[str, Any]:
        """Send a settings message; return the server's ``applied`` or ``error`` reply."""
        while self.channel.readyState != "open":
            await asyncio.sleep(0.02)
        seen = len(self.messages)
        self.channel.send(json.dumps({"type": "settings", "settings": settings}))
        deadline = time.perf_counter() + timeout_s
        while True:
            for message in self.messages[seen:]:
                if message.get("type") in ("applied", "error"):
                    return message
            seen = len(self.messages)
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError("no reply to the settings message")
            self._new_message.clear()
            try:
                await asyncio.wait_for(self._new_message.wait(), remaining)
            except asyncio.TimeoutError:
                continue

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()


async def start_server(app: web.Application, host: str = "127.0.0.1"
                       ) -> tuple[web.AppRunner, str]:
    """Run ``app`` on a free port; returns the runner (``await runner.cleanup()``) and URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://{host}:{port}"


# ---------------------------------------------------------------------------------------------
# the benchmark


def synthetic_frames(width: int, height: int, count: int = 60) -> list[np.ndarray]:
    """A person-sized bright ellipse swaying over a textured background."""
    yy, xx = np.mgrid[0:height, 0:width]
    backdrop = ((xx // 8 + yy // 8) % 2 * 60 + 40).astype(np.uint8)
    frames = []
    for i in range(count):
        cx = width / 2 + width / 6 * np.sin(2 * np.pi * i / count)
        inside = ((xx - cx) / (width / 6)) ** 2 + ((yy - height * 0.6) / (height * 0.45)) ** 2 < 1
        frame = np.dstack([backdrop, backdrop, backdrop])
        frame[inside] = (205, 170, 150)
        frames.append(frame)
    return frames


def davis_frames(folder: Path, width: int, height: int, count: int = 60) -> list[np.ndarray]:
    import cv2

    frames = []
    for path in sorted(folder.glob("*.jpg"))[:count]:
        bgr = np.asarray(cv2.imread(str(path)), np.uint8)
        frames.append(cv2.cvtColor(cv2.resize(bgr, (width, height)), cv2.COLOR_BGR2RGB))
    if not frames:
        raise FileNotFoundError(f"{folder}: no .jpg frames")
    return frames


def fastest_engine() -> str:
    from .inference import engine_names

    names = engine_names()
    for preferred in ("mediapipe-selfie", "selfie", "mediapipe_selfie", "u2netp"):
        if preferred in names:
            return preferred
    return names[0]


@dataclass(slots=True)
class BenchResult:
    size: str
    engine: str
    temporal: str
    #: the smoothing running at the end: ``temporal``, or what it was shed to under load
    smoothing: str
    duration_s: float
    sent: int
    frames_in: int
    frames_out: int
    dropped: int
    client_fps: float
    p50_ms: float
    p95_ms: float
    per_window: list[tuple[float, float, float, float]]  # (start s, fps, p50 ms, p95 ms)


async def bench_one(size: tuple[int, int], *, engine: str, duration_s: float, fps: float,
                    frames: list[np.ndarray], models_dir: Path | None, window_s: float,
                    background: str, temporal: str = DEFAULT_LIVE_MODE,
                    keep_smoothing: bool = False) -> BenchResult:
    from .server import ServerSettings, create_app
    from .server.live import LIVE_SERVER, encoder_frame

    app = create_app(ServerSettings(
        engine=engine, live_background=background, live_temporal=temporal,
        models_dir=models_dir, live_idle_timeout_s=max(30.0, duration_s),
        extensions=("streammatte.server.live",)))
    runner, url = await start_server(app)
    server = app[LIVE_SERVER]
    # the camera's frames in I420, converted once: a browser's camera hands its encoder I420,
    # so converting each frame here would bill the server for the bench's own work
    converted = [encoder_frame(f) for f in frames]
    camera = [c.to_ndarray() for c in converted]
    track = CameraTrack(lambda i: camera[i % len(camera)], fps=fps,
                        pixel_format=converted[0].format.name)
    client = await LiveClient.connect(url, track, keep_images=False,
                                      settings={"keep_smoothing": keep_smoothing})
    try:
        await client.wait_frames(1, timeout_s=120.0)
        stats = server.peers[client.peer_id].track.stats  # type: ignore[union-attr]
        # warm-up over: measure from here, keeping every latency
        latencies: list[tuple[float, float]] = []
        stats.latencies_s = deque()
        base_in, base_out, base_drop = stats.frames_in, stats.frames_out, stats.dropped
        base_client, sent0 = client.count, track.sent
        start = time.perf_counter()
        last_len = 0
        while (now := time.perf_counter()) - start < duration_s:
            await asyncio.sleep(0.5)
            fresh = list(stats.latencies_s)[last_len:]
            last_len += len(fresh)
            latencies.extend((now - start, v) for v in fresh)
        elapsed = time.perf_counter() - start
        values = np.asarray([v for _, v in latencies]) * 1000.0
        windows = []
        t = 0.0
        while t < elapsed - 1e-6:
            w = np.asarray([v for s, v in latencies if t <= s < t + window_s]) * 1000.0
            span = min(window_s, elapsed - t)
            if w.size:
                windows.append((t, w.size / span, float(np.percentile(w, 50)),
                                float(np.percentile(w, 95))))
            t += window_s
        processor = server.peers[client.peer_id].processor
        return BenchResult(
            size=f"{size[0]}×{size[1]}", engine=processor.engine_description,
            temporal=temporal + (" (kept)" if keep_smoothing else ""),
            smoothing=processor.smoothing, duration_s=elapsed, sent=track.sent - sent0,
            frames_in=stats.frames_in - base_in, frames_out=stats.frames_out - base_out,
            dropped=stats.dropped - base_drop,
            client_fps=(client.count - base_client) / elapsed,
            p50_ms=float(np.percentile(values, 50)) if values.size else float("nan"),
            p95_ms=float(np.percentile(values, 95)) if values.size else float("nan"),
            per_window=windows)
    finally:
        await client.close()
        await runner.cleanup()


def format_table(results: Sequence[BenchResult]) -> str:
    lines = ["| size | engine | temporal | at the end | s | sent | server in | out | dropped "
             "| fps back | p50 ms | p95 ms |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        dropped = f"{r.dropped} ({100 * r.dropped / max(1, r.frames_in):.0f} %)"
        lines.append(f"| {r.size} | {r.engine} | {r.temporal} | {r.smoothing} "
                     f"| {r.duration_s:.0f} | {r.sent} "
                     f"| {r.frames_in} | {r.frames_out} | {dropped} | {r.client_fps:.1f} "
                     f"| {r.p50_ms:.1f} | {r.p95_ms:.1f} |")
    for r in results:
        lines.append("")
        lines.append(f"{r.size}, {r.temporal}, over time (window start s: fps, p50 ms, "
                     "p95 ms)")
        for t, wfps, p50, p95 in r.per_window:
            lines.append(f"  {t:6.0f}: {wfps:5.1f} fps  p50 {p50:6.1f}  p95 {p95:6.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m streammatte.bench_live",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", action="append", default=None,
                        help="WxH, repeatable (default: 640x480 and 1280x720)")
    parser.add_argument("--engine", default=None, help="default: the fastest in the catalog")
    parser.add_argument("--duration-s", type=float, default=180.0)
    parser.add_argument("--fps", type=float, default=30.0, help="camera rate sent (default 30)")
    parser.add_argument("--window-s", type=float, default=60.0,
                        help="report fps and latency per window of this length")
    parser.add_argument("--background", default="blur")
    parser.add_argument("--temporal", default=DEFAULT_LIVE_MODE, choices=sorted(TEMPORAL_FILTERS),
                        help=f"smoothing on the server (default: {DEFAULT_LIVE_MODE}, as live)")
    parser.add_argument("--under-load", choices=["shed", "keep", "both"], default="shed",
                        help="shed smoothing while frames drop (the default, as live), keep it "
                        "(keep_smoothing), or run each size both ways, back to back")
    parser.add_argument("--davis", type=Path, default=None,
                        help="a DAVIS frames folder to send instead of synthetic frames")
    args = parser.parse_args(argv)
    env = os.environ.get("STREAMMATTE_MODELS_DIR")
    models_dir = Path(env) if env else None
    engine = args.engine or fastest_engine()
    results = []
    for text in args.size or ["640x480", "1280x720"]:
        w, h = (int(v) for v in text.lower().split("x"))
        frames = davis_frames(args.davis, w, h) if args.davis else synthetic_frames(w, h)
        for keep in {"shed": [False], "keep": [True], "both": [False, True]}[args.under_load]:
            results.append(asyncio.run(bench_one(
                (w, h), engine=engine, duration_s=args.duration_s, fps=args.fps, frames=frames,
                models_dir=models_dir, window_s=args.window_s, background=args.background,
                temporal=args.temporal, keep_smoothing=keep)))
            print(f"done {text}{' (kept)' if keep else ''}", file=sys.stderr)
    print(format_table(results))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
