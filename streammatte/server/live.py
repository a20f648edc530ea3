"""Live background replacement over WebRTC: the /live and /obs pages and ``POST /api/offer``.

A browser sends its webcam; :class:`MatteTrack` sends it back with the background replaced.

Latency policy: the newest frame wins. A pump task drains the incoming track as fast as frames
arrive (so aiortc's own receive queue never grows) into a single slot; a worker task takes the
frame in the slot and runs the matte in the peer's own executor thread, never on the event
loop, and hands the result to ``recv()``. A frame that arrives while the slot is full replaces
the waiting one and is counted as dropped, so at most one frame waits and one is being
processed or waits for the sender: added latency is bounded by about two frame-processing
times (or one processing and one encoding time), however long the call lasts. The worker
takes the next frame as soon as ``recv()`` has taken the last, so the matte of one frame runs
while the RTP sender encodes the one before. Returned frames carry the input's ``pts`` and
``time_base``, in I420 (what the VP8/H.264 encoders take) at even sizes.

``install(app, settings)`` is the extension hook the server's ``create_app`` calls: the live
routes take their settings from the server's own :class:`ServerSettings`, their engines from
its engine provider, and its one security middleware checks the token on every one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiohttp import web
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from ..chain import Chain
from ..compose import NAMED_COLOURS, Compositor, parse_background
from ..config import DEFAULT_ENGINE, MatteConfig
from ..errors import ConfigError, StreamMatteError
from ..inference import Engine
from ..temporal import DEFAULT_LIVE_MODE, TEMPORAL_FILTERS, ShedUnderLoad
from .api import ENGINES_KEY, OPENAPI_PATHS_KEY
from .jobs import EngineProvider, server_temp_dir
from .settings import (
    SETTINGS_KEY,
    STATIC_DIR,
    ServerSettings,
    add_page,
    api_error,
    check_background,
    check_media,
    save_upload,
    too_large,
)

log = logging.getLogger(__name__)

EngineFactory = Callable[[str], Engine]
#: what an uploaded picture is stored as: the compositor tells a picture from a clip by suffix
_IMAGE_SUFFIX = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


# ---------------------------------------------------------------------------------------------
# settings a page can change, and the per-peer frame processor


@dataclass(frozen=True, slots=True)
class LiveSettings:
    """What the page controls. ``background`` is never a server path: only ``blur``, a colour,
    or ``upload:<id>`` naming a file uploaded through ``POST /api/live/backgrounds``."""

    engine: str = DEFAULT_ENGINE
    background: str = "blur"
    temporal: str = DEFAULT_LIVE_MODE
    #: keep ``temporal`` even while frames are dropped; by default the smoothing steps down
    #: (flow → adaptive → none) while the machine falls behind, and back up when it catches up
    keep_smoothing: bool = False
    refine: bool = False
    #: colour and alpha side by side (for /obs?alpha=1) instead of a composite
    alpha: bool = False

    def merged(self, changes: Mapping[str, object]) -> LiveSettings:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown} (known: {sorted(known)})")
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name in ("refine", "alpha", "keep_smoothing"):
                if not isinstance(value, bool):
                    raise ConfigError(f"setting {name!r}: expected true or false, got {value!r}")
            elif not isinstance(value, str) or not value:
                raise ConfigError(f"setting {name!r}: expected a non-empty string, got {value!r}")
            values[name] = value
        out = replace(self, **values)
        if out.temporal.lower() not in TEMPORAL_FILTERS:
            raise ConfigError(f"unknown temporal mode {out.temporal!r} "
                              f"(choose from: {', '.join(TEMPORAL_FILTERS)})")
        check_background(out.background, live=True)
        return out


class FrameProcessor:
    """One peer's matting state. Confined to that peer's executor thread: every call to
    ``apply``, ``process`` and ``close`` runs there, one at a time, so it needs no lock."""

    def __init__(self, open_engine: EngineFactory, resolve_upload: Callable[[str], Path],
                 dropped: Callable[[], int] = lambda: 0) -> None:
        self._open_engine = open_engine
        self._resolve_upload = resolve_upload
        #: the track's running count of frames dropped because this processor was busy
        self._dropped = dropped
        self.settings: LiveSettings | None = None
        self._engine: Engine | None = None
        self._chain: Chain | None = None
        self._shedder: ShedUnderLoad | None = None
        self._compositor: Compositor | None = None
        self._refine: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    @property
    def engine_description(self) -> str:
        return self._engine.describe() if self._engine is not None else ""

    @property
    def smoothing(self) -> str:
        """The temporal mode running now: the one asked for, or a cheaper one while shedding."""
        if self._shedder is not None:
            return self._shedder.mode
        return self.settings.temporal if self.settings is not None else ""

    def apply(self, settings: LiveSettings) -> LiveSettings:
        """Switch to ``settings``; on error the previous settings stay in force."""
        old = self.settings
        engine, chain = self._engine, self._chain
        opened: Engine | None = None
        try:
            shedder = self._shedder
            if old is None or chain is None or engine is None or settings.engine != old.engine:
                opened = engine = self._open_engine(settings.engine)
                rebuild = True
            else:
                rebuild = (settings.temporal, settings.keep_smoothing) != (old.temporal,
                                                                           old.keep_smoothing)
            if rebuild:
                # a new chain over the engine: the smoothing policy goes in, never patched in
                shedder = None if settings.keep_smoothing else ShedUnderLoad(
                    settings.temporal, self._dropped)
                chain = Chain(MatteConfig(engine=settings.engine, temporal=settings.temporal),
                              engine=engine, temporal=shedder)
            compositor = self._compositor
            if old is None or settings.background != old.background or compositor is None:
                compositor = LiveCompositor(self._background(settings.background), "rgb")
            refine = _refiner() if settings.refine else None
        except BaseException:
            if opened is not None:
                opened.close()
            raise
        if opened is not None and self._engine is not None:
            self._engine.close()
        if compositor is not self._compositor and self._compositor is not None:
            self._compositor.close()
        self._engine, self._chain, self._compositor = engine, chain, compositor
        self._shedder = shedder
        self._refine = refine
        self.settings = settings
        return settings

    def _background(self, text: str) -> Any:
        lowered = text.strip().lower()
        if lowered == "transparent":
            # a composite has no alpha: show the cut-out on black (the alpha view carries alpha)
            return parse_background("black")
        if lowered.startswith("upload:"):
            return parse_background(str(self._resolve_upload(text.strip()[len("upload:"):])))
        return parse_background(text)

    def process(self, frame: av.VideoFrame) -> av.VideoFrame:
        if self._chain is None or self._compositor is None or self.settings is None:
            raise RuntimeError("FrameProcessor.apply() must run before process()")
        image = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
        alpha = self._chain.alpha(image)
        if self._refine is not None:
            alpha = np.asarray(self._refine(alpha, image), dtype=np.float32)
        out = side_by_side(image, alpha) if self.settings.alpha else self._compositor(image, alpha)
        result = encoder_frame(out)
        result.pts = frame.pts
        if frame.time_base is not None:
            result.time_base = frame.time_base
        return result

    def close(self) -> None:
        if self._compositor is not None:
            self._compositor.close()
            self._compositor = None
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self._chain = None
        self._shedder = None


class LiveCompositor(Compositor):
    """The composite with OpenCV's blendLinear: within one level of ``compose.blend`` (it
    rounds ties differently), a third of the time, and off the GIL — on a live path every
    millisecond is latency."""

    def __call__(self, frame: np.ndarray, alpha: np.ndarray,
                 foreground: np.ndarray | None = None) -> np.ndarray:
        import cv2

        backdrop = self._backdrop(frame)
        weight = np.ascontiguousarray(alpha, dtype=np.float32)
        colour = frame if foreground is None else foreground
        return np.asarray(cv2.blendLinear(colour, backdrop, weight, 1.0 - weight), np.uint8)


def _refiner() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Edge refinement comes from streammatte.refine (the edge-quality work) when present."""
    try:
        from .. import refine as refine_module  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        raise ConfigError("refine: edge refinement is not available in this build") from None
    fn = getattr(refine_module, "guided_refine", None) or getattr(refine_module, "refine", None)
    if not callable(fn):
        raise ConfigError("refine: streammatte.refine has no guided_refine(alpha, frame)")
    return fn  # type: ignore[no-any-return]


def encoder_frame(rgb: np.ndarray) -> av.VideoFrame:
    """An RGB image as the frame the RTP encoder takes: I420 at even sizes. The encoder would
    otherwise convert it itself (swscale, ~2 ms at 1280×720, on the sender's thread);
    OpenCV's BT.601 limited-range conversion takes ~0.3 ms and lands within a level of it in
    luma (a few in chroma at sharp edges: it sites chroma differently, as swscale does from
    ``sinks.virtualcam.rgb_to_i420``'s exact 2×2 means, which cost 5 ms)."""
    import cv2

    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    i420 = np.asarray(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420), np.uint8)
    return av.VideoFrame.from_ndarray(i420, format="yuv420p")


def side_by_side(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Colour on the left, alpha as grey on the right: WebRTC codecs carry no alpha channel,
    so the /obs page recombines the two halves in WebGL."""
    a8 = np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out = np.empty((image.shape[0], image.shape[1] * 2, 3), np.uint8)
    out[:, : image.shape[1]] = image
    out[:, image.shape[1]:] = a8[..., None]
    return out


# ---------------------------------------------------------------------------------------------
# the track


@dataclass(slots=True)
class LiveStats:
    """Counters of one live track; latencies are server receive → send, in seconds."""

    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    errors: int = 0
    last_error: str | None = None
    last_receive_s: float = 0.0
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=300))
    sent_at_s: deque[float] = field(default_factory=lambda: deque(maxlen=120))

    def fps(self, now_s: float | None = None) -> float:
        """Frames sent per second over the last two seconds."""
        now = time.perf_counter() if now_s is None else now_s
        recent = [t for t in self.sent_at_s if now - t <= 2.0]
        if len(recent) < 2:
            return 0.0
        span = now - recent[0]
        return (len(recent) - 1) / span if span > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_s, dtype=np.float64) * 1000.0
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "dropped": self.dropped,
            "errors": self.errors,
            "error": self.last_error,
            "fps": round(self.fps(), 2),
            "latency_ms": {
                "last": round(float(lat[-1]), 2) if lat.size else None,
                "p50": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
                "p95": round(float(np.percentile(lat, 95)), 2) if lat.size else None,
            },
        }


ProcessFn = Callable[[av.VideoFrame], av.VideoFrame]


class MatteTrack(MediaStreamTrack):
    """The incoming camera track, matted. The newest frame wins (see the module docstring).

    ``process`` runs in ``executor`` (one thread per peer keeps the matting state confined);
    when it raises, the frame goes out unchanged and the error is counted, so a bad setting
    shows up on the page instead of freezing the call.
    """

    kind = "video"

    def __init__(self, source: MediaStreamTrack, process: ProcessFn,
                 executor: ThreadPoolExecutor, stats: LiveStats | None = None) -> None:
        super().__init__()
        self.source = source
        self.stats = stats or LiveStats()
        self._process = process
        self._executor = executor
        self._slot: tuple[av.VideoFrame, float] | None = None
        self._arrived = asyncio.Event()
        self._source_ended = False
        #: a matted frame waiting for ``recv`` (None: the source ended)
        self._ready: asyncio.Queue[tuple[av.VideoFrame, float] | None] = asyncio.Queue(1)
        self._pump_task = asyncio.ensure_future(self._pump())
        self._work_task = asyncio.ensure_future(self._work())

    @property
    def frames_waiting(self) -> int:
        """0 or 1: the bound on frames queued in front of the engine."""
        return 0 if self._slot is None else 1

    async def _pump(self) -> None:
        try:
            while True:
                frame = await self.source.recv()
                if not isinstance(frame, av.VideoFrame):
                    continue
                now = time.perf_counter()
                self.stats.frames_in += 1
                self.stats.last_receive_s = now
                if self._slot is not None:
                    self.stats.dropped += 1
                self._slot = (frame, now)
                self._arrived.set()
        except MediaStreamError:
            pass
        finally:
            self._source_ended = True
            self._arrived.set()

    async def _work(self) -> None:
        """Matte the newest frame, hand it to ``recv``, and start on the next one as soon as
        ``recv`` has taken it: the engine works on frame N+1 while the RTP sender encodes
        frame N (two cores busy, not one after the other)."""
        loop = asyncio.get_running_loop()
        while True:
            while self._slot is None:
                if self._source_ended:
                    await self._ready.put(None)
                    return
                self._arrived.clear()
                await self._arrived.wait()
            frame, received = self._slot
            self._slot = None
            try:
                out = await loop.run_in_executor(self._executor, self._process, frame)
            except (StreamMatteError, ValueError, RuntimeError, OSError) as exc:
                self.stats.errors += 1
                self.stats.last_error = str(exc)
                if self.stats.errors == 1:
                    log.warning("live frame processing failed: %s", exc)
                out = frame
            # the RTP sender derives timestamps from pts: keep the camera's timing
            out.pts = frame.pts
            if frame.time_base is not None:
                out.time_base = frame.time_base
            await self._ready.put((out, received))
            # at most one matted frame waits for the sender: take the next camera frame only
            # once this one is gone, so it is the newest one then
            await self._ready.join()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        item = await self._ready.get()
        self._ready.task_done()
        if item is None:
            self.stop()
            raise MediaStreamError
        out, received = item
        sent = time.perf_counter()
        self.stats.frames_out += 1
        self.stats.latencies_s.append(sent - received)
        self.stats.sent_at_s.append(sent)
        return out

    def stop(self) -> None:
        super().stop()
        for task in (self._pump_task, self._work_task):
            if not task.done():
                task.cancel()


# ---------------------------------------------------------------------------------------------
# peers and the HTTP side


class LivePeer:
    """One browser connection: its peer connection, executor, processor and tracks."""

    def __init__(self, server: LiveServer, pc: RTCPeerConnection, settings: LiveSettings) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.server = server
        self.pc = pc
        self.settings = settings
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sm-live-{self.id}")
        self.stats = LiveStats()
        self.processor = FrameProcessor(server.engines.open, server.upload_path,
                                        dropped=lambda: self.stats.dropped)
        self.track: MatteTrack | None = None
        self.channel: RTCDataChannel | None = None
        self.created_s = time.perf_counter()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    async def run_in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def start_tasks(self) -> None:
        self.track_task(self._watch())

    def track_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _watch(self) -> None:
        """Send stats to the page; tear the peer down when it stops sending frames."""
        interval = self.server.settings.live_stats_interval_s
        idle_limit = self.server.settings.live_idle_timeout_s
        while not self._closed:
            await asyncio.sleep(interval)
            now = time.perf_counter()
            if now - (self.stats.last_receive_s or self.created_s) > idle_limit:
                log.info("live peer %s sent no frame for %.1f s: closing", self.id, idle_limit)
                await self.close()
                return
            self.send({"type": "stats", **self.stats_json()})

    def stats_json(self) -> dict[str, Any]:
        stats = self.stats.as_json()
        stats["engine"] = self.processor.engine_description
        stats["smoothing"] = self.processor.smoothing
        stats["settings"] = {f.name: getattr(self.settings, f.name)
                             for f in fields(self.settings)}
        return stats

    def send(self, message: Mapping[str, Any]) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps(message))

    async def on_message(self, raw: object) -> None:
        try:
            message = json.loads(raw) if isinstance(raw, (str, bytes)) else None
            if not isinstance(message, dict) or message.get("type") != "settings" or \
                    not isinstance(message.get("settings"), dict):
                raise ConfigError('expected {"type": "settings", "settings": {...}}')
            wanted = self.settings.merged(message["settings"])
            self.server.engines.check(wanted.engine)
            self.settings = await self.run_in_thread(self.processor.apply, wanted)
            self.send({"type": "applied", **self.stats_json()})
        except (StreamMatteError, ValueError, OSError) as exc:
            self.send({"type": "error", "message": str(exc)})

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.server.peers.pop(self.id, None)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if self.track is not None:
            self.track.stop()
        try:
            await self.pc.close()
            # close the processor on its own thread, after any frame in flight
            with contextlib.suppress(RuntimeError):
                await self.run_in_thread(self.processor.close)
        finally:
            # also when this close is cancelled (a second close() returns at once, and the
            # loop may end first): otherwise the idle worker thread would live on
            self.executor.shutdown(wait=False)
        log.info("live peer %s closed", self.id)


@dataclass(frozen=True, slots=True)
class LiveUpload:
    """A background uploaded for live sessions."""

    path: Path
    size: int
    created_s: float


class LiveServer:
    """The live endpoints' state: peers, uploaded backgrounds. Configured by the server's
    ServerSettings; each peer opens an engine of its own from the server's EngineProvider."""

    def __init__(self, settings: ServerSettings, engines: EngineProvider) -> None:
        self.settings = settings
        self.engines = engines
        self.peers: dict[str, LivePeer] = {}
        self._uploads_dir: Path | None = None
        self.uploads: dict[str, LiveUpload] = {}
        self._sweeper: asyncio.Task[None] | None = None

    # --- uploads

    def upload_path(self, upload_id: str) -> Path:
        upload = self.uploads.get(upload_id)
        if upload is None:
            raise ConfigError(f"background upload:{upload_id}: no such upload "
                              "(upload it first with POST /api/live/backgrounds)")
        return upload.path

    def _uploads(self) -> Path:
        if self._uploads_dir is None:
            self._uploads_dir = server_temp_dir("live")
        return self._uploads_dir

    def _in_use(self) -> set[str]:
        """Ids of the uploads a connected session has as its background."""
        backgrounds = (peer.settings.background.strip().lower() for peer in self.peers.values())
        return {b[len("upload:"):] for b in backgrounds if b.startswith("upload:")}

    def _drop_upload(self, upload_id: str) -> None:
        self.uploads.pop(upload_id).path.unlink(missing_ok=True)

    def expire_uploads(self, now: float | None = None) -> list[str]:
        """Remove the uploads older than ``live_background_expiry_s`` that no session uses."""
        now = time.time() if now is None else now
        in_use = self._in_use()
        gone = [i for i, u in self.uploads.items() if i not in in_use
                and now - u.created_s >= self.settings.live_background_expiry_s]
        for upload_id in gone:
            self._drop_upload(upload_id)
        return gone

    def _make_room(self, size: int) -> None:
        """Remove the oldest uploads no session uses until one more of ``size`` bytes fits
        the count and total caps; 503 when the ones in use leave no room."""
        settings, in_use = self.settings, self._in_use()
        spare = sorted((u.created_s, i) for i, u in self.uploads.items() if i not in in_use)
        while len(self.uploads) >= settings.max_live_backgrounds or \
                sum(u.size for u in self.uploads.values()) + size \
                > settings.max_live_backgrounds_bytes:
            if not spare:
                raise api_error(
                    web.HTTPServiceUnavailable,
                    f"no room for another live background: the {len(self.uploads)} kept are "
                    f"in use by sessions (limits: {settings.max_live_backgrounds} backgrounds, "
                    f"{settings.max_live_backgrounds_bytes} bytes in all); end a session or "
                    "switch its background first", **{"Retry-After": "30"})
            self._drop_upload(spare.pop(0)[1])

    async def _expire_forever(self) -> None:
        interval = min(30.0, self.settings.live_background_expiry_s / 2)
        while True:
            await asyncio.sleep(interval)
            self.expire_uploads()

    async def start(self, app: web.Application | None = None) -> None:
        self._sweeper = asyncio.create_task(self._expire_forever(), name="sm-live-expiry")

    # --- handlers

    async def page(self, request: web.Request) -> web.StreamResponse:
        name = "obs.html" if request.path.rstrip("/") == "/obs" else "live.html"
        return web.FileResponse(STATIC_DIR / name, headers={"Cache-Control": "no-cache"})

    async def script(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in ("live.js", "obs.js", "common.js", "app.css"):
            raise web.HTTPNotFound()
        return web.FileResponse(STATIC_DIR / name, headers={"Cache-Control": "no-cache"})

    def _defaults(self) -> LiveSettings:
        # the server's ``engine`` is for files; live starts on its own unless it is not offered
        live = self.settings.live_engine
        engine = live if live in self.engines.names() else self.settings.engine
        return LiveSettings(engine=engine, background=self.settings.live_background,
                            temporal=self.settings.live_temporal)

    async def client_config(self, request: web.Request) -> web.Response:
        defaults = self._defaults()
        return web.json_response({
            "engines": self.engines.names(),
            "temporal": sorted(TEMPORAL_FILTERS),
            "colours": sorted(NAMED_COLOURS),
            "ice_servers": [s.as_json() for s in self.settings.ice_servers],
            "max_peers": self.settings.max_peers,
            "max_background_bytes": self.settings.max_live_background_bytes,
            "defaults": {f.name: getattr(defaults, f.name) for f in fields(defaults)},
        })

    async def peer_stats(self, request: web.Request) -> web.Response:
        return web.json_response({pid: peer.stats_json() for pid, peer in self.peers.items()})

    async def upload(self, request: web.Request) -> web.Response:
        """A background picture or clip as the raw body: typed and sized from its headers
        like any upload (check_media), then kept for ``live_background_expiry_s``."""
        settings = self.settings
        cap, what = settings.max_live_background_bytes, "background upload"
        if request.content_length is not None and request.content_length > cap:
            raise too_large(request.content_length, cap, what=what)
        self.expire_uploads()
        upload_id = uuid.uuid4().hex[:16]
        path = self._uploads() / f"{upload_id}.upload"
        try:
            size = await save_upload(request.content.read, path, cap, what=what)
            info = await asyncio.to_thread(check_media, settings, path, what,
                                           ("image", "video"))
            final = path.with_suffix(_IMAGE_SUFFIX[info.format] if info.kind == "image"
                                     else ".video")
            path.rename(final)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        try:
            self._make_room(size)
        except web.HTTPException:
            final.unlink(missing_ok=True)
            raise
        self.uploads[upload_id] = LiveUpload(final, size, time.time())
        return web.json_response({"id": upload_id, "kind": info.kind,
                                  "background": f"upload:{upload_id}"})

    async def offer(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            raise api_error(web.HTTPBadRequest, "offer: expected a JSON body "
                            '{"sdp": ..., "type": "offer", "settings": {...}}') from None
        if not isinstance(body, dict) or not isinstance(body.get("sdp"), str) \
                or body.get("type") != "offer":
            raise api_error(web.HTTPBadRequest, 'offer: expected {"sdp": "<SDP text>", '
                            '"type": "offer"}')
        if len(self.peers) >= self.settings.max_peers:
            raise api_error(web.HTTPServiceUnavailable,
                            f"too many live sessions (limit {self.settings.max_peers}); "
                            "close another tab or raise the limit")
        try:
            settings = self._defaults().merged(body.get("settings") or {})
            self.engines.check(settings.engine)
        except ConfigError as exc:
            raise api_error(web.HTTPBadRequest, str(exc)) from None

        ice = [RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
               for s in self.settings.ice_servers]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=ice))
        peer = LivePeer(self, pc, settings)
        self.peers[peer.id] = peer
        try:
            peer.settings = await peer.run_in_thread(peer.processor.apply, settings)
            self._wire(peer)
            if not body["sdp"].lstrip().startswith("v=0"):
                raise ConfigError("offer: malformed SDP (expected SDP text starting with v=0)")
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="offer"))
            except Exception as exc:  # aiortc raises assorted types on malformed SDP
                raise ConfigError(f"offer: malformed SDP ({type(exc).__name__}: {exc})") from exc
            if peer.track is None:
                raise ConfigError("offer: no video track (send the camera with "
                                  "addTrack or a sendrecv video transceiver)")
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except (StreamMatteError, ValueError, OSError) as exc:
            await peer.close()
            raise api_error(web.HTTPBadRequest, str(exc)) from None
        except BaseException:
            await peer.close()
            raise
        peer.start_tasks()
        local = pc.localDescription
        return web.json_response({"sdp": local.sdp, "type": local.type, "peer": peer.id})

    def _wire(self, peer: LivePeer) -> None:
        pc = peer.pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind != "video" or peer.track is not None:
                return
            peer.track = MatteTrack(track, peer.processor.process, peer.executor, peer.stats)
            pc.addTrack(peer.track)

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            peer.channel = channel

            @channel.on("message")
            def on_message(message: object) -> None:
                peer.track_task(peer.on_message(message))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await peer.close()

    async def close(self, app: web.Application | None = None) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await asyncio.gather(*(peer.close() for peer in list(self.peers.values())))
        self.uploads.clear()
        if self._uploads_dir is not None:
            shutil.rmtree(self._uploads_dir, ignore_errors=True)
            self._uploads_dir = None


LIVE_SERVER = web.AppKey("streammatte_live", LiveServer)


def install(app: web.Application, settings: ServerSettings) -> LiveServer:
    """Add the live routes to an app made by ``create_app(settings)``: /live, /obs, their
    scripts, /api/offer, and /api/live/{config,peers,backgrounds}. Peers are closed and
    uploads removed when the app shuts down."""
    if app.get(SETTINGS_KEY) is not settings or ENGINES_KEY not in app:
        raise ConfigError("install the live routes with create_app(settings, extensions=("
                          "'streammatte.server.live',)): its middleware checks the token on "
                          "every route, and its engine provider opens the live engines")
    server = LiveServer(settings, app[ENGINES_KEY])
    app[LIVE_SERVER] = server
    add_page(app, "/live", server.page)
    add_page(app, "/obs", server.page)
    app.router.add_get("/live/{name}", server.script)
    app.router.add_post("/api/offer", server.offer)
    app.router.add_get("/api/live/config", server.client_config)
    app.router.add_get("/api/live/peers", server.peer_stats)
    app.router.add_post("/api/live/backgrounds", server.upload)
    app.on_startup.append(server.start)
    app.on_shutdown.append(server.close)
    paths = app.get(OPENAPI_PATHS_KEY)
    if paths is None:
        paths = app[OPENAPI_PATHS_KEY] = {}
    paths.update(openapi_paths())
    return server


def openapi_paths() -> dict[str, Any]:
    """OpenAPI 3.0 path items of the live routes (merged into /api/openapi.json)."""
    def json_body(schema: dict[str, Any]) -> dict[str, Any]:
        return {"application/json": {"schema": schema}}

    error = json_body({"$ref": "#/components/schemas/Error"})
    settings = {"type": "object", "description": "what the page controls; each is optional",
                "properties": {
                    "engine": {"type": "string"},
                    "background": {"type": "string", "description": "blur, a colour name, "
                                   "#rrggbb, or upload:<id> from /api/live/backgrounds"},
                    "temporal": {"type": "string", "enum": sorted(TEMPORAL_FILTERS)},
                    "keep_smoothing": {"type": "boolean", "description": "keep temporal "
                                       "while frames are dropped (default false: it steps "
                                       "down flow → adaptive → none, and back up)"},
                    "refine": {"type": "boolean"},
                    "alpha": {"type": "boolean",
                              "description": "colour and matte side by side (/obs?alpha=1)"}}}
    return {
        "/api/offer": {"post": {
            "summary": "Start a live session: a WebRTC offer with a camera track in, the answer "
                       "out; the matted video comes back on the same connection",
            "requestBody": {"required": True, "content": json_body({
                "type": "object", "required": ["sdp", "type"], "properties": {
                    "sdp": {"type": "string"}, "type": {"type": "string", "enum": ["offer"]},
                    "settings": settings}})},
            "responses": {
                "200": {"description": "the answer", "content": json_body({
                    "type": "object", "properties": {
                        "sdp": {"type": "string"},
                        "type": {"type": "string", "enum": ["answer"]},
                        "peer": {"type": "string"}}})},
                "400": {"description": "malformed offer or setting", "content": error},
                "401": {"description": "missing or wrong token", "content": error},
                "503": {"description": "too many live sessions", "content": error}}}},
        "/api/live/config": {"get": {
            "summary": "Engines, temporal modes, colours, ICE servers and defaults for the page",
            "responses": {"200": {"description": "the live page's configuration"},
                          "401": {"description": "missing or wrong token", "content": error}}}},
        "/api/live/peers": {"get": {
            "summary": "Per-session statistics: fps, latency percentiles, drops, settings, "
                       "the smoothing running",
            "responses": {"200": {"description": "peer id → statistics"},
                          "401": {"description": "missing or wrong token", "content": error}}}},
        "/api/live/backgrounds": {"post": {
            "summary": "Upload a background image or video (raw body) for live sessions",
            "requestBody": {"required": True, "content": {
                "application/octet-stream": {"schema": {"type": "string",
                                                        "format": "binary"}}}},
            "responses": {
                "200": {"description": "use its background value in settings",
                        "content": json_body({"type": "object", "properties": {
                            "id": {"type": "string"},
                            "kind": {"type": "string", "enum": ["image", "video"]},
                            "background": {"type": "string"}}})},
                "401": {"description": "missing or wrong token", "content": error},
                "413": {"description": "upload, image or video too large", "content": error},
                "415": {"description": "not a supported image or video", "content": error},
                "422": {"description": "the file is damaged or truncated", "content": error},
                "503": {"description": "the backgrounds kept are all in use",
                        "content": error}}}},
    }


__all__ = ["LiveServer", "LiveSettings", "LiveStats", "LiveUpload", "MatteTrack", "install",
           "side_by_side"]
