"""What a cluster run reports: the aggregated progress, each worker's share, the outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field

from .work import Outcome


@dataclass(frozen=True, slots=True)
class ClusterProgress:
    """The aggregated progress line's figures."""

    done: int
    total: int
    elapsed_s: float
    alive: int
    workers: int


@dataclass(slots=True)
class WorkerCounts:
    """One worker slot's share of the run; a slot whose process was lost and restarted by
    Ray lists every pid it had."""

    slot: int
    host: str = ""
    pids: list[int] = field(default_factory=list)
    tasks: int = 0
    failed: int = 0
    frames: int = 0
    busy_s: float = 0.0

    @property
    def restarts(self) -> int:
        return max(0, len(self.pids) - 1)

    def __str__(self) -> str:
        pids = " → ".join(str(p) for p in self.pids) or "?"
        restarted = f", restarted {self.restarts}×" if self.restarts else ""
        failed = f", {self.failed} failed" if self.failed else ""
        return (f"worker {self.slot} ({self.host or '?'} pid {pids}{restarted}): {self.tasks} "
                f"task(s){failed}, {self.frames} frames, {self.busy_s:.1f} s busy")


@dataclass(slots=True)
class ClusterReport:
    """What a cluster run did: every task's Outcome (in the order they finished), each
    worker's counts, and ``stopped`` (why no further task was started, if one was not)."""

    address: str
    outcomes: list[Outcome]
    workers: list[WorkerCounts]
    elapsed_s: float
    stopped: str | None = None

    @property
    def frames(self) -> int:
        return sum(o.frames for o in self.outcomes)

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0
