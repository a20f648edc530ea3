"""Engines shared by requests, and the video job queue.

Everything slow runs in executor threads, never on the event loop: opening an engine (which
may pull a model), probing, matting. Engines are opened once and shared between requests;
ONNX Runtime sessions may run concurrently. A stateful engine (MOG2 learns a background) is
opened fresh for each job instead.

A job is cancelled through matte_video's cancel contract: the job's event is its ``cancel``
handle, checked between frames; the pipeline stops its threads and raises CancelledRun, and
FileSink removes its temporary output on the way out, so a cancelled or failed job leaves no
partial result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..api import matte_video
from ..config import MatteConfig
from ..errors import CancelledRun, ConfigError, StreamMatteError
from ..inference import BUILTIN_ENGINES, BUILTIN_GOOD_FOR, Engine, open_engine
from ..models.catalog import load_catalog
from ..models.store import ModelStore
from ..pipeline import PipelineStats
from ..sinks.formats import FORMATS
from ..sinks.publish import MANIFEST
from ..temporal import DEFAULT_FILE_MODE
from .probe import MediaInfo
from .settings import ServerSettings

log = logging.getLogger("streammatte.server")

T = TypeVar("T")
JobState = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled"})

_JOB_DIR = re.compile(r"(img-)?[0-9a-f]{32}")
#: the temporary folders a server makes (server_temp_dir): its process id is in the name
_SERVER_TEMP_DIR = re.compile(r"streammatte-(?:jobs|live)-([1-9][0-9]*)-[a-z0-9_]+")
#: engines that only make sense on a video (they learn the background over frames)
_VIDEO_ONLY = frozenset({"mog2"})
_BUILTIN_TITLES = {
    "mog2": "MOG2 background subtraction (static camera, video only)",
    "grabcut": "GrabCut graph-cut segmentation (a traditional baseline)",
}


# -- engines ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What the page and ``GET /api/engines`` say about one engine."""

    name: str
    title: str
    kind: Literal["model", "builtin"]
    licence: str | None = None
    non_commercial: bool = False
    size_bytes: int | None = None
    video_only: bool = False
    #: what it suits, in a few words (the catalog's good_for, as ``models list`` shows it)
    good_for: str | None = None
    #: how the page groups and ranks it: "people" / "anything" / "static camera", and
    #: "fastest" … "best" (the catalog's subject and tier)
    subject: str | None = None
    tier: str | None = None


class EngineProvider:
    """Opens engines by name (in the calling thread) and shares the stateless ones."""

    def __init__(self, infos: Sequence[EngineInfo], opener: Callable[[str], Engine], *,
                 is_cached: Callable[[str], bool] | None = None) -> None:
        self._infos = {i.name: i for i in infos}
        self._opener = opener
        self._is_cached = is_cached or (lambda name: True)
        self._engines: dict[str, Engine] = {}
        self._locks = {name: threading.Lock() for name in self._infos}
        self._closed = False

    @classmethod
    def from_catalog(cls, settings: ServerSettings) -> EngineProvider:
        """Every catalog model and builtin engine, opened with the server's device and cache."""
        catalog = load_catalog()
        infos = [EngineInfo(name=s.name, title=s.title, kind="model", licence=s.licence,
                            non_commercial=s.non_commercial, size_bytes=s.size_bytes,
                            good_for=s.good_for, subject=s.subject, tier=s.tier)
                 for s in catalog.values()]
        infos += [EngineInfo(name=name, title=_BUILTIN_TITLES[name], kind="builtin",
                             video_only=name in _VIDEO_ONLY, good_for=BUILTIN_GOOD_FOR[name],
                             subject="static camera" if name in _VIDEO_ONLY else "anything")
                  for name in BUILTIN_ENGINES]
        store = ModelStore(settings.models_dir)

        def opener(name: str) -> Engine:
            return open_engine(name, models_dir=settings.models_dir, device=settings.device)

        def is_cached(name: str) -> bool:
            return name not in catalog or store.is_cached(catalog[name])

        if settings.engines is not None:
            offered = {n.lower() for n in settings.engines}
            unknown = offered - {i.name for i in infos}
            if unknown:
                raise ConfigError(f"unknown engine(s) {sorted(unknown)} (choose from: "
                                  f"{', '.join(sorted(i.name for i in infos))})")
            infos = [i for i in infos if i.name in offered]
        return cls(sorted(infos, key=lambda i: i.name), opener, is_cached=is_cached)

    def names(self) -> list[str]:
        return list(self._infos)

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": i.name, "title": i.title, "kind": i.kind, "licence": i.licence,
                 "non_commercial": i.non_commercial, "size_bytes": i.size_bytes,
                 "video_only": i.video_only, "good_for": i.good_for,
                 "subject": i.subject, "tier": i.tier,
                 "cached": self._is_cached(i.name),
                 "loaded": i.name in self._engines}
                for i in self._infos.values()]

    def check(self, name: str, *, for_image: bool = False) -> str:
        """The registry name for ``name``; ConfigError for an unknown or unsuitable engine."""
        key = name.strip().lower()
        if key not in self._infos:
            raise ConfigError(f"unknown engine {name!r} (choose from: {', '.join(self._infos)})")
        if for_image and self._infos[key].video_only:
            raise ConfigError(f"engine {key} needs a video (it learns the background over "
                              "frames); choose a model for a still image")
        return key

    @contextlib.contextmanager
    def acquire(self, name: str) -> Iterator[Engine]:
        """An open engine for ``name``. Blocks while it loads: call from an executor thread."""
        key = self.check(name)
        with self._locks[key]:
            if self._closed:
                raise ConfigError("the server is shutting down")
            engine = self._engines.get(key)
            if engine is None:
                engine = self._opener(key)
                if not engine.stateful:
                    self._engines[key] = engine
        try:
            yield engine
        finally:
            if engine.stateful:
                engine.close()

    def open(self, name: str) -> Engine:
        """A fresh engine of its own for ``name``, never shared (a live session's: the caller
        closes it). Blocks while it loads: call from an executor thread."""
        key = self.check(name)
        if self._closed:
            raise ConfigError("the server is shutting down")
        return self._opener(key)

    def close(self) -> None:
        self._closed = True
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()


# -- jobs -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class VideoOptions:
    engine: str
    background: str = "auto"
    output_format: str = "vp9"
    temporal: str = DEFAULT_FILE_MODE
    #: guided-filter upsampling of the matte (edges follow the frame)
    refine: bool = False
    #: an uploaded background picture or clip (server-side path, never shown to clients)
    background_file: Path | None = None
    #: mask controls (MatteConfig's fields of the same names)
    threshold: float | None = None
    shrink_px: int = 0
    grow_px: int = 0
    feather_px: float = 0.0
    despill: bool = False

    @property
    def extension(self) -> str:
        """What the result is served as: the PNG sequence (a folder) travels as one zip."""
        return FORMATS[self.output_format].extension or ".zip"

    def as_json(self) -> dict[str, str]:
        return {"engine": self.engine,
                "background": "uploaded file" if self.background_file else self.background,
                "format": self.output_format, "temporal": self.temporal,
                "refine": "true" if self.refine else "false",
                "threshold": "" if self.threshold is None else f"{self.threshold:g}",
                "shrink": str(self.shrink_px), "grow": str(self.grow_px),
                "feather": f"{self.feather_px:g}",
                "despill": "true" if self.despill else "false"}


MEDIA_TYPES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
               ".zip": "application/zip"}


class _TooLong(Exception):
    """The video turned out longer than the duration cap (its header did not say)."""


@dataclass(slots=True)
class Job:
    id: str
    dir: Path
    input_path: Path
    #: the client's file name, for messages and the download name (never used as a path)
    filename: str
    options: VideoOptions
    media: MediaInfo
    #: the client session that created the job (client_session): only it sees the job listed
    owner: str
    state: JobState = "queued"
    created_s: float = field(default_factory=time.time)
    started_s: float | None = None
    finished_s: float | None = None
    frames_done: int = 0
    fps: float = 0.0
    error: str | None = None
    result_path: Path | None = None
    notes: list[str] = field(default_factory=list)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task[None] | None = None

    @property
    def frames_total(self) -> int | None:
        return self.media.frame_count

    @property
    def download_name(self) -> str:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(self.filename).stem)[:80] or "video"
        return f"{stem}-nobg{self.options.extension}"

    def as_json(self, queue_position: int | None = None) -> dict[str, Any]:
        total = self.frames_total
        progress: float | None = None
        eta: float | None = None
        if self.state == "done":
            progress = 1.0
        elif total:
            progress = min(1.0, self.frames_done / total)
            if self.state == "running" and self.fps > 0:
                eta = max(0.0, (total - self.frames_done) / self.fps)
        end = self.finished_s or time.time()
        return {
            "id": self.id,
            "state": self.state,
            "filename": self.filename,
            "progress": progress,
            "frames_done": self.frames_done,
            "frames_total": total,
            "fps": round(self.fps, 2),
            "eta_s": None if eta is None else round(eta, 1),
            "elapsed_s": None if self.started_s is None else round(end - self.started_s, 2),
            "queue_position": queue_position,
            "error": self.error,
            "notes": self.notes,
            "options": self.options.as_json(),
            "media": {"width": self.media.width, "height": self.media.height,
                      "duration_s": self.media.duration_s, "frame_rate": self.media.frame_rate,
                      "container": self.media.format},
            "created_s": self.created_s,
            "finished_s": self.finished_s,
            "result_url": f"/api/jobs/{self.id}/result" if self.state == "done" else None,
        }


class QueueFullError(StreamMatteError):
    """Too many jobs are running or waiting."""


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def server_temp_dir(kind: Literal["jobs", "live"]) -> Path:
    """A private temporary folder for this server, named with its process id
    (``streammatte-jobs-<pid>-…``), so that the next server can tell when its owner is gone
    (sweep_dead_servers)."""
    return Path(tempfile.mkdtemp(prefix=f"streammatte-{kind}-{os.getpid()}-"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_dead_servers(root: Path | None = None) -> list[Path]:
    """Remove the temporary folders (server_temp_dir) of servers that died without cleaning
    up (SIGKILL, a crash): only folders that match our own name pattern, belong to this user,
    and whose process is no longer alive. Returns what was removed."""
    root = Path(tempfile.gettempdir()) if root is None else root
    removed = []
    for path in root.iterdir():
        match = _SERVER_TEMP_DIR.fullmatch(path.name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        try:
            info = path.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() \
                or _alive(int(match.group(1))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        log.info("removed %s, left by a server that is no longer running", path)
        removed.append(path)
    return removed


class JobManager:
    """Video jobs: a bounded queue in front of ``max_concurrent_jobs`` executor threads,
    files under ``jobs_dir/<id>/``, expiry of finished jobs, and of folders no job owns."""

    def __init__(self, settings: ServerSettings, engines: EngineProvider, jobs_dir: Path) -> None:
        self.settings = settings
        self.engines = engines
        self.jobs_dir = jobs_dir
        self._jobs: dict[str, Job] = {}
        #: folders handed out by new_dir whose request is still running (not a job yet)
        self._pending: set[str] = set()
        self._slots = asyncio.Semaphore(settings.max_concurrent_jobs)
        self._image_slots = asyncio.Semaphore(settings.max_concurrent_images)
        self._video_pool = ThreadPoolExecutor(settings.max_concurrent_jobs,
                                              thread_name_prefix="sm-job")
        self._image_pool = ThreadPoolExecutor(settings.max_concurrent_images,
                                              thread_name_prefix="sm-image")
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.jobs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await asyncio.to_thread(self._sweep_orphans, set())
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="sm-job-expiry")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for job in list(self._jobs.values()):
            job.cancel_event.set()
        tasks = [j.task for j in self._jobs.values() if j.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._video_pool.shutdown(wait=True, cancel_futures=True)
        self._image_pool.shutdown(wait=True, cancel_futures=True)
        await asyncio.to_thread(self.engines.close)

    def _sweep_orphans(self, known: set[str]) -> list[str]:
        """Remove job folders no job or request owns (``known``: the names of those that
        are owned) once they are older than the expiry: a previous server's, or one a request
        could not remove. A job's state lives in memory, so they can never be served again."""
        cutoff = time.time() - self.settings.job_expiry_s
        removed = []
        for path in self.jobs_dir.iterdir():
            if path.name not in known and _JOB_DIR.fullmatch(path.name) and path.is_dir() \
                    and path.stat().st_mtime < cutoff:
                _remove(path)
                removed.append(path.name)
        return removed

    async def sweep(self, now: float | None = None) -> None:
        """Expire finished jobs, then remove orphaned folders; runs every
        ``min(30 s, expiry / 2)`` while the server runs."""
        await self.expire(now)
        known = {j.dir.name for j in self._jobs.values()} | self._pending
        await asyncio.to_thread(self._sweep_orphans, known)

    async def _sweep_forever(self) -> None:
        interval = min(30.0, self.settings.job_expiry_s / 2)
        while True:
            await asyncio.sleep(interval)
            await self.sweep()

    async def expire(self, now: float | None = None) -> list[str]:
        """Forget finished jobs older than the expiry and remove their files."""
        now = time.time() if now is None else now
        gone = [j for j in self._jobs.values() if j.finished_s is not None
                and now - j.finished_s >= self.settings.job_expiry_s]
        for job in gone:
            del self._jobs[job.id]
            await asyncio.to_thread(_remove, job.dir)
        return [j.id for j in gone]

    # -- files --------------------------------------------------------------------------------

    def new_dir(self, *, image: bool = False) -> tuple[str, Path]:
        """A fresh, private folder named by the server: (id, path). It belongs to the request
        until ``submit`` makes it a job's, or ``discard`` removes it."""
        job_id = secrets.token_hex(16)
        path = self.jobs_dir / (f"img-{job_id}" if image else job_id)
        path.mkdir(mode=0o700)
        self._pending.add(path.name)
        return job_id, path

    async def discard(self, folder: Path) -> None:
        """Remove a folder from new_dir that did not become a job."""
        await asyncio.to_thread(_remove, folder)
        self._pending.discard(folder.name)

    # -- images -------------------------------------------------------------------------------

    async def run_image(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the image pool, at most ``max_concurrent_images`` at once."""
        async with self._image_slots:
            return await asyncio.get_running_loop().run_in_executor(self._image_pool, fn)

    async def run_blocking(self, fn: Callable[[], T]) -> T:
        """Short blocking work (probing, file removal) off the event loop."""
        return await asyncio.to_thread(fn)

    # -- jobs ---------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def jobs_of(self, owner: str) -> list[Job]:
        """The jobs the client session ``owner`` created, oldest first."""
        return sorted((j for j in self._jobs.values() if j.owner == owner),
                      key=lambda j: j.created_s)

    def queue_position(self, job: Job) -> int | None:
        if job.state != "queued":
            return None
        queued = sorted((j for j in self._jobs.values() if j.state == "queued"),
                        key=lambda j: j.created_s)
        return next(i for i, j in enumerate(queued) if j is job) + 1

    def submit(self, job: Job) -> None:
        """Queue ``job``; QueueFullError when every slot and queue place is taken."""
        active = sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))
        limit = self.settings.max_concurrent_jobs + self.settings.max_queued_jobs
        if active >= limit:
            raise QueueFullError(f"{active} jobs are running or queued (the limit is {limit}); "
                                 "try again when one has finished")
        self._jobs[job.id] = job
        self._pending.discard(job.dir.name)
        job.task = asyncio.create_task(self._drive(job), name=f"sm-job-{job.id}")

    async def delete(self, job: Job) -> None:
        """Cancel ``job`` if it has not finished, wait for its thread, remove its files."""
        job.cancel_event.set()
        if job.task is not None and not job.task.done():
            if job.state == "queued":
                job.task.cancel()
            # the pipeline notices within its progress interval; never wait forever on it
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(job.task), timeout=30.0)
        self._jobs.pop(job.id, None)
        await asyncio.to_thread(_remove, job.dir)

    async def _drive(self, job: Job) -> None:
        try:
            async with self._slots:
                if job.cancel_event.is_set():
                    raise CancelledRun("cancelled before it started")
                job.state = "running"
                job.started_s = time.time()
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._video_pool, self._run, job)
            job.state = "done"
        except (CancelledRun, asyncio.CancelledError):
            job.state = "cancelled"
            job.error = "cancelled"
        except Exception as exc:
            job.state = "failed"
            job.error = self._message(job, exc)
            if not isinstance(exc, (StreamMatteError, _TooLong)):
                log.error("job %s failed", job.id, exc_info=exc)
        finally:
            job.finished_s = time.time()
            if job.state != "done" and job.result_path is not None:
                await asyncio.to_thread(_remove, job.result_path)
                job.result_path = None

    def _message(self, job: Job, exc: BaseException) -> str:
        text = str(exc) if isinstance(exc, (StreamMatteError, _TooLong)) else \
            f"internal error ({type(exc).__name__}: {exc})"
        # server paths mean nothing to the client; its own file name does
        text = text.replace(str(job.input_path), job.filename)
        return text.replace(str(job.dir) + "/", "").replace(str(self.jobs_dir), "<jobs>")

    def _run(self, job: Job) -> None:
        """The job itself, in an executor thread."""
        settings = self.settings
        rate = job.media.frame_rate or 60.0
        max_frames = None if job.media.duration_s else int(settings.max_video_duration_s * rate)

        def on_progress(stats: PipelineStats) -> None:
            job.frames_done = stats.frames_out
            job.fps = stats.fps
            if max_frames is not None and stats.frames_in > max_frames:
                raise _TooLong(f"{job.filename}: longer than the server's limit of "
                               f"{settings.max_video_duration_s:g} s")

        options = job.options
        background = (str(options.background_file) if options.background_file is not None
                      else options.background)
        config = MatteConfig(engine=options.engine, background=background,
                             output_format=options.output_format, temporal=options.temporal,
                             upsample="guided" if options.refine else "bilinear",
                             models_dir=settings.models_dir, device=settings.device,
                             threshold=options.threshold, shrink_px=options.shrink_px,
                             grow_px=options.grow_px, feather_px=options.feather_px,
                             despill=options.despill)
        output = job.dir / f"result{options.extension}"
        frames_dir = job.dir / "result-frames" if FORMATS[options.output_format].codec is None \
            else None
        with self.engines.acquire(options.engine) as engine:
            report = matte_video(job.input_path, frames_dir or output, config, engine=engine,
                                 on_progress=on_progress, cancel=job.cancel_event)
        if frames_dir is not None:
            _zip_folder(frames_dir, output)
        job.frames_done = report.frames_out
        job.fps = report.fps
        prefix = f"{job.input_path.name}:"
        job.notes = [job.filename + n[len(prefix) - 1:] if n.startswith(prefix) else n
                     for n in report.notes]
        job.result_path = output
        if job.cancel_event.is_set():  # cancelled after the last frame: still cancelled
            raise CancelledRun("cancelled")


def _zip_folder(folder: Path, archive: Path) -> None:
    """``folder``'s files into ``archive`` (stored: PNGs are compressed already), written to a
    temporary name and renamed; the folder is removed."""
    partial = archive.with_name(archive.name + ".part")
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as bundle:
            for path in sorted(folder.iterdir()):
                if path.name != MANIFEST:  # it marks a folder on disk; the zip needs none
                    bundle.write(path, path.name)
        partial.replace(archive)
    finally:
        partial.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
