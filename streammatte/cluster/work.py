"""One worker, one task at a time: what a cluster actor runs, without Ray.

A :class:`Worker` opens the engine once (the stateful-actor pattern) and runs tasks on it, each
as the one-machine path would (``matte_video`` / ``matte_image``, engine reset between inputs
as in a local batch), so a result is the local batch's, byte for byte. A task that fails for a
reason of its own input (a :class:`~streammatte.errors.StreamMatteError`: bad input, an output
that exists, a full disk) comes back as an :class:`Outcome` with the error, not as an
exception: it would fail the same way again, so it is reported once and never retried.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..api import RunReport, matte_image, matte_video
from ..chain import open_configured_engine
from ..config import MatteConfig
from ..errors import StreamMatteError
from ..pipeline import PipelineStats
from .segments import SegmentPlan, matte_segment, stitch

TaskKind = Literal["video", "image", "segment", "stitch"]


@dataclass(frozen=True, slots=True)
class Task:
    """One unit of work: matte ``src`` into ``dst`` (``video``, ``image``), or one segment of
    a long video (``segment``: ``plan`` and ``index``), or join a plan's segments
    (``stitch``). ``frames``: how many frames it should give (for the progress line; 0 when
    unknown). ``key`` names it uniquely in a run."""

    key: str
    kind: TaskKind
    src: Path
    dst: Path
    frames: int = 0
    plan: SegmentPlan | None = None
    index: int = -1


@dataclass(frozen=True, slots=True)
class WorkerId:
    """Which process ran a task: a restarted actor keeps its ``slot`` and gets a new pid."""

    slot: int
    host: str
    pid: int

    def __str__(self) -> str:
        return f"worker {self.slot} ({self.host} pid {self.pid})"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a task: its ``report`` (video), or the ``error`` line (and the OS
    ``errno`` behind it, where there is one: a full disk stops a batch)."""

    task: Task
    worker: WorkerId
    frames: int
    busy_s: float
    report: RunReport | None = None
    error: str | None = None
    errno: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Worker:
    """Opens the engine ``config`` names once and runs :class:`Task` s on it, one at a time.

    ``current()`` says what it is doing (task key, frames written so far), from any thread:
    the Ray actor reports it for the aggregated progress line.
    """

    def __init__(self, config: MatteConfig, *, slot: int = 0,
                 auth_tokens: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.identity = WorkerId(slot, socket.gethostname(), os.getpid())
        self.engine = open_configured_engine(config, None, auth_tokens)
        self._lock = threading.Lock()
        self._current: tuple[str, int] | None = None

    def current(self) -> tuple[str, int] | None:
        with self._lock:
            return self._current

    def _progress(self, key: str, frames: int) -> None:
        with self._lock:
            self._current = (key, frames)

    def run(self, task: Task) -> Outcome:
        """Run ``task``; its own failure comes back in the Outcome (see the module doc)."""
        self.engine.reset()  # a background model must not carry one input into the next
        self._progress(task.key, 0)
        started = time.perf_counter()
        try:
            report = self._run(task)
        except StreamMatteError as exc:
            return Outcome(task, self.identity, 0, time.perf_counter() - started,
                           error=str(exc), errno=getattr(exc, "errno", None))
        finally:
            with self._lock:
                self._current = None
        frames = report.frames_out if report is not None else int(task.kind == "image")
        return Outcome(task, self.identity, frames, time.perf_counter() - started, report)

    def _run(self, task: Task) -> RunReport | None:
        if task.kind == "image":
            matte_image(task.src, task.dst, self.config, engine=self.engine)
            return None
        if task.kind == "stitch":
            assert task.plan is not None
            return stitch(task.plan, self.config)

        # a segment's history frames go through the chain first and are not its own
        history = 0 if task.plan is None else task.plan.history_before(task.index)

        def on_progress(stats: PipelineStats) -> None:
            self._progress(task.key, max(0, stats.frames_out - history))

        if task.kind == "segment":
            assert task.plan is not None
            return matte_segment(task.plan, task.index, self.config, self.engine, on_progress)
        return matte_video(task.src, task.dst, self.config, engine=self.engine,
                           on_progress=on_progress)

    def close(self) -> None:
        self.engine.close()
