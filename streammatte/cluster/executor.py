"""The cluster executor on Ray: stateful actors that open the engine once, fed one task each.

Connecting: ``address`` names a running cluster (``ray start --head`` printed it; the CLI
takes ``--ray-address`` or ``RAY_ADDRESS``); None starts a local Ray for the run and stops it
after. A process already connected (``ray.init`` called by the caller) keeps its connection.

Workers: one actor per worker, each reserving ``cpus_per_worker`` CPUs, or one GPU when the
run is asked to use one (``device`` ``cuda``, or ``auto`` on a cluster that has GPUs); as many
as the cluster's resources hold, capped by ``workers`` and by the number of tasks. An actor
opens the engine in its constructor and keeps it for every task it runs
(:class:`~streammatte.cluster.work.Worker`).

Faults, through Ray's own retry options: a worker process that dies (SIGKILL, OOM killer, a
crash in native code) is restarted by Ray (``max_restarts=-1``) and the task it held is run
again on it (``max_task_retries``); an input that kills its worker every time is given up
after that many retries and reported. A task's own failure (a StreamMatteError) comes back as
an Outcome and is never retried. Results are published whole (``sinks.publish``), so a lost
worker leaves only a temporary output, which the retry (or the end of the run) sweeps.

Progress: each actor reports what it is doing twice a second to a small board actor; the
driver reads the board for the aggregated line (frames done/total across workers, workers
alive: those heard from in the last few seconds).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import ray.exceptions

from ..api import RunReport, WrittenOutput
from ..config import MatteConfig
from ..errors import ConfigError, StreamMatteError
from ..pipeline import PipelineStats
from ..sinks.publish import sweep_stale_partials
from .report import ClusterProgress, ClusterReport, WorkerCounts
from .segments import DEFAULT_SEGMENT_S, SegmentPlan, plan_segments
from .segments import splits as splits_ok
from .work import Outcome, Task, Worker, WorkerId

#: how often an actor reports to the board, and how long a silent one still counts as alive
_BEAT_S = 0.5
_ALIVE_S = 3.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RayOptions:
    """Where and how wide to run.

    ``address``: a running cluster (``ray://…`` or ``HOST:PORT``); None starts a local Ray
    with ``local_cpus`` CPUs (None: all of them). ``workers``: at most this many actors.
    ``cpus_per_worker``: CPUs each actor reserves (on a CPU run). ``task_retries``: how many
    times a task is run again after its worker died (then it is reported as failed).
    ``segment_s``: a video longer than this runs as segments of about this length (None:
    every video runs whole).
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    task_retries: int = 2
    local_cpus: int | None = None
    segment_s: float | None = DEFAULT_SEGMENT_S

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--ray-workers should be >= 1, got {self.workers}")
        if self.cpus_per_worker <= 0:
            raise ConfigError(f"cpus_per_worker should be > 0, got {self.cpus_per_worker}")
        if self.task_retries < 0:
            raise ConfigError(f"task_retries should be >= 0, got {self.task_retries}")
        if self.segment_s is not None and not self.segment_s > 0:
            raise ConfigError(f"--segment-s should be > 0 seconds, got {self.segment_s}")


# -- the actors -----------------------------------------------------------------------------

class _Board:
    """Where workers say what they are doing: slot → (host, pid, task key, frames, when)."""

    def __init__(self) -> None:
        self._beats: dict[int, tuple[str, int, str | None, int, float]] = {}

    def beat(self, slot: int, host: str, pid: int, key: str | None, frames: int) -> None:
        self._beats[slot] = (host, pid, key, frames, time.monotonic())

    def snapshot(self) -> dict[int, tuple[str, int, str | None, int, float]]:
        """slot → (host, pid, task key, frames, seconds since it was heard from)."""
        now = time.monotonic()
        return {slot: (*beat[:4], now - beat[4]) for slot, beat in self._beats.items()}


class _Actor:
    """A :class:`Worker` in a Ray actor, with a thread that reports to the board.

    The constructor does not raise: an engine that cannot open is kept as ``error`` and
    given back by ``ready()``, so the driver reports it as one line rather than a Ray
    traceback, and Ray does not restart an actor that would fail the same way.
    """

    def __init__(self, config: MatteConfig, slot: int, board: str,
                 auth_tokens: Mapping[str, str] | None) -> None:
        # the board by name, not by handle: Ray restarts an actor from its constructor's
        # arguments, and a handle among them would have to outlive every restart
        self._board = ray.get_actor(board)
        self._slot = slot
        self._worker: Worker | None = None
        self._error: str | None = None
        threading.Thread(target=self._beat, name="sm-beat", daemon=True).start()
        try:
            self._worker = Worker(config, slot=slot, auth_tokens=auth_tokens)
        except StreamMatteError as exc:
            self._error = str(exc)

    def _beat(self) -> None:
        import socket

        host, pid = socket.gethostname(), os.getpid()
        while True:
            current = self._worker.current() if self._worker is not None else None
            key, frames = current if current is not None else (None, 0)
            self._board.beat.remote(self._slot, host, pid, key, frames)
            time.sleep(_BEAT_S)

    def ready(self) -> WorkerId | str:
        """This worker's identity, or why its engine could not open."""
        if self._worker is None:
            return self._error or "the engine could not open"
        return self._worker.identity

    def run(self, task: Task) -> Outcome:
        if self._worker is None:
            raise RuntimeError(self._error or "the engine could not open")
        return self._worker.run(task)

    def sweep(self, folders: Sequence[Path]) -> int:
        """Remove the temporary outputs this host's dead processes left in ``folders``."""
        return sum(len(sweep_stale_partials(folder)) for folder in folders)


# -- the driver ------------------------------------------------------------------------------

def _connect(options: RayOptions, quiet: bool) -> bool:
    """Connect to the cluster; True when this call started a local Ray (to stop after)."""
    if ray.is_initialized():
        return False
    level = logging.ERROR if quiet else logging.WARNING
    if options.address:
        try:
            ray.init(address=options.address, logging_level=level, log_to_driver=not quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot connect to the Ray cluster at {options.address}: "
                              f"{exc}") from exc
        return False
    # "local": start one here even where RAY_ADDRESS is set (the CLI has read it already)
    ray.init(address="local", num_cpus=options.local_cpus, include_dashboard=False,
             logging_level=level, log_to_driver=not quiet)
    return True


def _wants_gpu(config: MatteConfig, resources: Mapping[str, float]) -> bool:
    device = config.device.lower()
    if device.startswith("cuda"):
        return True
    return device == "auto" and resources.get("GPU", 0) >= 1


def _worker_count(options: RayOptions, tasks: int, gpu: bool,
                  resources: Mapping[str, float]) -> int:
    if gpu:
        room = int(resources.get("GPU", 0))
        if room < 1:
            raise ConfigError("the run asks for a GPU (--device cuda) and the Ray cluster has "
                              "none")
    else:
        room = max(1, int(resources.get("CPU", 1) // options.cpus_per_worker))
    return max(1, min(room, tasks, options.workers or room))


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None:
        exc = exc.cause
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def run_on_ray(
    tasks: Sequence[Task],
    config: MatteConfig,
    options: RayOptions,
    *,
    on_progress: Callable[[ClusterProgress], None] | None = None,
    on_outcome: Callable[[Outcome], bool] | None = None,
    auth_tokens: Mapping[str, str] | None = None,
    quiet: bool = False,
    progress_interval_s: float = 0.5,
    start_timeout_s: float = 600.0,
) -> ClusterReport:
    """Run ``tasks`` (``video`` and ``image``) on Ray workers, each opening the engine
    ``config`` names once; a video longer than ``options.segment_s`` runs as segments
    (``segments``), stitched once they are all there.

    ``on_outcome`` is called as each task finishes, a segmented video once it is stitched
    (failed ones included, in the driver's thread); returning False starts no further work
    (what runs finishes; the report's ``stopped`` says so). ``on_progress`` is called every
    ``progress_interval_s``. Workers join as their engine opens; StreamMatteError when none
    can open it (the first reason said) or none has started after ``start_timeout_s`` (a
    model download counts).
    """
    started = time.perf_counter()
    units, splits = _plan(tasks, config, options.segment_s)
    own_ray = _connect(options, quiet)
    actors: list[Any] = []  # the board first, then the workers: killed at the end
    run: _Dispatch | None = None
    try:
        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        gpu = _wants_gpu(config, resources)
        count = _worker_count(options, len(units), gpu, resources)
        board_name = f"streammatte-progress-{uuid.uuid4().hex}"
        board = ray.remote(num_cpus=0)(_Board).options(name=board_name).remote()
        actors.append(board)
        actor_class = ray.remote(_Actor).options(
            num_cpus=0 if gpu else options.cpus_per_worker, num_gpus=1 if gpu else 0,
            max_restarts=-1, max_task_retries=options.task_retries)
        workers: list[Any] = [actor_class.remote(config, slot, board_name, auth_tokens)
                              for slot in range(1, count + 1)]
        actors += workers
        counts = {slot: WorkerCounts(slot) for slot in range(1, count + 1)}
        run = _Dispatch(units, splits, workers, counts, board, on_progress, on_outcome,
                        progress_interval_s, started, start_timeout_s)
        run.start_workers()
        run.loop()
        folders = sorted({t.dst.parent for t in tasks})
        # every task is done: what is left in the output folders is from lost workers
        ray.get([worker.sweep.remote(folders) for worker in workers])
        for folder in folders:
            sweep_stale_partials(folder)
        return ClusterReport(address=options.address or "local", outcomes=run.outcomes,
                             workers=list(counts.values()),
                             elapsed_s=time.perf_counter() - started, stopped=run.stopped)
    finally:
        for actor in actors:
            ray.kill(actor)
        if own_ray:
            ray.shutdown()
        for split in splits.values():
            if split.failed:  # its segments would not be reused: the input fails alike
                split.plan.remove_work()


@dataclass(slots=True)
class _Split:
    """A video run as segments: which are left, what they reported."""

    task: Task
    plan: SegmentPlan
    left: set[int]
    reports: list[RunReport] = field(default_factory=list)
    busy_s: float = 0.0
    started: float | None = None
    failed: bool = False


def _plan(tasks: Sequence[Task], config: MatteConfig, segment_s: float | None
          ) -> tuple[list[Task], dict[Path, _Split]]:
    """The units to run: each task as it is, or, for a video longer than ``segment_s``, its
    segments still to do (those a stopped run like this one published are reused). A trimmed
    run (``--start``/``--end``/``--frames``) is not cut: each video runs whole."""
    units: list[Task] = []
    splits: dict[Path, _Split] = {}
    cut = (segment_s is not None and config.decode_range() is None
           and any(t.kind == "video" for t in tasks) and splits_ok(config))
    for task in tasks:
        plan = (plan_segments(task.src, task.dst, config, segment_s)
                if cut and segment_s is not None and task.kind == "video" else None)
        if plan is None:
            units.append(task)
            continue
        done = set(plan.done())
        split = _Split(task, plan, {s.index for s in plan.segments} - done)
        splits[plan.work] = split
        units += [Task(key=f"{task.key}#{s.index}", kind="segment", src=task.src,
                       dst=plan.path(s.index), frames=s.frames, plan=plan, index=s.index)
                  for s in plan.segments if s.index in split.left]
        if not split.left:  # every segment survived a stopped run: only the stitch is left
            units.append(_stitch_task(split))
    return units, splits


def _stitch_task(split: _Split) -> Task:
    return Task(key=f"{split.task.key}#stitch", kind="stitch", src=split.task.src,
                dst=split.task.dst, plan=split.plan)


class _Dispatch:
    """The driver's loop: one unit in flight per worker, outcomes as they come."""

    def __init__(self, units: Sequence[Task], splits: dict[Path, _Split], actors: list[Any],
                 counts: dict[int, WorkerCounts], board: Any,
                 on_progress: Callable[[ClusterProgress], None] | None,
                 on_outcome: Callable[[Outcome], bool] | None, interval_s: float,
                 started: float, start_timeout_s: float) -> None:
        self.pending = deque(units)
        self.splits = splits
        self.actors = actors
        self.counts = counts
        self.board = board
        self.on_progress = on_progress
        self.on_outcome = on_outcome
        self.interval_s = interval_s
        self.started = started
        self.outcomes: list[Outcome] = []
        self.stopped: str | None = None
        self.total = sum(t.frames for t in units)
        self.done_frames = 0
        self.idle: list[int] = []
        self.in_flight: dict[Any, tuple[int, Task]] = {}
        self.starting: dict[Any, int] = {}
        self.start_errors: list[str] = []
        self.start_timeout_s = start_timeout_s
        self.working = 0

    def start_workers(self) -> None:
        """Ask every actor whether its engine opened; each joins as soon as it says so."""
        self.starting = {actor.ready.remote(): slot
                         for slot, actor in enumerate(self.actors, 1)}

    def _started(self, ref: Any) -> None:
        slot = self.starting.pop(ref)
        try:
            answer: WorkerId | str = ray.get(ref)
        except ray.exceptions.RayError as exc:
            answer = _one_line(exc)
        if isinstance(answer, str):
            self.start_errors.append(answer)  # this slot is out of the run
            return
        self._seen(slot, answer.host, answer.pid)
        self.idle.append(slot)
        self.working += 1

    def _check_started(self, now: float) -> None:
        if self.working:
            return
        if not self.starting:
            raise StreamMatteError(
                f"no Ray worker could open the engine: {self.start_errors[0]}")
        if now - self.started > self.start_timeout_s:
            raise StreamMatteError(
                f"no Ray worker started within {self.start_timeout_s:.0f} s (is streammatte "
                "installed on the cluster's nodes? `ray status` shows them; their logs are "
                "under /tmp/ray/session_latest/logs)")

    def _seen(self, slot: int, host: str, pid: int) -> None:
        counts = self.counts[slot]
        counts.host = host
        if pid not in counts.pids:
            counts.pids.append(pid)

    def loop(self) -> None:
        last = 0.0
        while self.in_flight or (self.pending and self.stopped is None):
            while self.idle and self.pending and self.stopped is None:
                slot = self.idle.pop(0)
                task = self.pending.popleft()
                split = self.splits.get(task.plan.work) if task.plan else None
                if split is not None and split.started is None:
                    split.started = time.perf_counter()
                self.in_flight[self.actors[slot - 1].run.remote(task)] = (slot, task)
            waiting = [*self.in_flight, *self.starting]
            ready, _ = (ray.wait(waiting, num_returns=1, timeout=self.interval_s) if waiting
                        else ([], []))
            for ref in ready:
                if ref in self.starting:
                    self._started(ref)
                    continue
                slot, task = self.in_flight.pop(ref)
                self._finish(slot, task, ref)
                self.idle.append(slot)
            now = time.perf_counter()
            self._check_started(now)
            if self.on_progress is not None and (now - last >= self.interval_s or ready):
                last = now
                self.on_progress(self._progress(now))
        if self.on_progress is not None:
            self.on_progress(self._progress(time.perf_counter()))

    def _finish(self, slot: int, task: Task, ref: Any) -> None:
        counts = self.counts[slot]
        try:
            outcome: Outcome = ray.get(ref)
        except ray.exceptions.RayActorError:
            outcome = Outcome(task, WorkerId(slot, counts.host, counts.pids[-1]), 0, 0.0,
                              error=f"{task.src}: its worker was lost on every try "
                              "(killed, or crashed on this input)")
        except ray.exceptions.RayError as exc:
            outcome = Outcome(task, WorkerId(slot, counts.host, counts.pids[-1]), 0, 0.0,
                              error=f"{task.src}: {_one_line(exc)}")
        self._seen(slot, outcome.worker.host, outcome.worker.pid)
        counts.tasks += 1
        counts.failed += not outcome.ok
        counts.busy_s += outcome.busy_s
        if task.kind != "stitch":  # a stitch writes the segments' frames again
            counts.frames += outcome.frames
            self.done_frames += outcome.frames
            self.total += outcome.frames - task.frames  # the estimate, made good
        if task.plan is None:
            self._report(outcome)
            return
        split = self.splits[task.plan.work]
        split.busy_s += outcome.busy_s
        if split.failed:
            return  # reported already
        if not outcome.ok:
            split.failed = True
            self.pending = deque(t for t in self.pending if t.plan is not split.plan)
            self._report(Outcome(split.task, outcome.worker, 0, split.busy_s,
                                 error=outcome.error, errno=outcome.errno))
        elif task.kind == "segment":
            assert outcome.report is not None
            split.reports.append(outcome.report)
            split.left.discard(task.index)
            if not split.left:
                self.pending.appendleft(_stitch_task(split))  # before any new work
        else:
            self._report(self._joined(split, outcome))

    def _joined(self, split: _Split, stitched: Outcome) -> Outcome:
        """A segmented video's outcome, as one run of it would report it."""
        assert stitched.report is not None
        reports = split.reports
        stats = PipelineStats(frames_in=sum(r.frames_in for r in reports),
                              frames_out=stitched.report.frames_out)
        notes = list(dict.fromkeys(n for r in reports for n in r.notes))
        notes.append(f"{len(split.plan.segments)} segments of ~"
                     f"{split.plan.segments[0].frames} frames, {split.plan.pre_roll} frames of "
                     f"history and {split.plan.post_roll} of look-ahead each; stitched without "
                     "re-encoding")
        engine = next((r.engine for r in reports if r.engine), "")
        # the segments' encoder wrote every packet of the stitched file
        encoder = next((o.encoder for r in reports for o in r.outputs), None)
        elapsed = time.perf_counter() - (split.started or self.started)
        report = RunReport(output=split.task.dst, engine=engine, format=stitched.report.format,
                           frames_in=stats.frames_in, frames_out=stats.frames_out,
                           elapsed_s=elapsed, stats=stats,
                           audio_tracks=stitched.report.audio_tracks, notes=notes,
                           engine_frames=sum(r.engine_frames for r in reports),
                           outputs=[WrittenOutput("composite", split.task.dst,
                                                  stitched.report.format, encoder,
                                                  tuple(stitched.report.audio_tracks))])
        return Outcome(split.task, stitched.worker, report.frames_out, split.busy_s, report)

    def _report(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if self.on_outcome is not None and not self.on_outcome(outcome):
            self.stopped = f"stopped after {outcome.task.src}"
    def _progress(self, now: float) -> ClusterProgress:
        try:
            beats = ray.get(self.board.snapshot.remote(), timeout=5)
        except ray.exceptions.RayError:
            beats = {}
        running = {task.key for _, task in self.in_flight.values()}
        alive = 0
        in_progress = 0
        for slot, (host, pid, key, frames, age_s) in beats.items():
            if age_s <= _ALIVE_S:
                alive += 1
                self._seen(slot, host, pid)
            if key in running:
                in_progress += frames
        return ClusterProgress(done=self.done_frames + in_progress,
                               total=max(self.total, self.done_frames + in_progress),
                               elapsed_s=now - self.started, alive=alive,
                               workers=self.working)


__all__ = ["ClusterProgress", "ClusterReport", "RayOptions", "WorkerCounts", "run_on_ray"]
