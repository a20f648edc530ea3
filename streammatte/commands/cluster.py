"""``--ray``: run ``video`` or ``image`` on a Ray cluster instead of on this machine.

The inputs, the output names, ``--skip-existing`` / ``--overwrite`` and the failure report are
the local batch's (``batch.py``); what changes is where each input is matted: on Ray actors
that open the engine once (``streammatte.cluster``). Ray is imported only here, on demand.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from ..cluster.report import ClusterProgress, WorkerCounts
from ..cluster.segments import DEFAULT_SEGMENT_S
from ..cluster.work import Outcome, Task
from ..config import MatteConfig
from ..errors import ConfigError, SinkError
from ..progress import ProgressLine
from ..report import ReportFile, RunEntry, entry_from
from ..sources.file import FileSource, is_stdio
from .batch import FOLDER_FULL, make_output_folder, report_tally
from .common import hf_auth_tokens


def add_cluster_options(parser: argparse.ArgumentParser, *, video: bool) -> None:
    group = parser.add_argument_group("cluster (needs streammatte[ray])")
    group.add_argument("--ray", action="store_true",
                       help="run on a Ray cluster: the one at --ray-address or $RAY_ADDRESS, "
                       "else a local Ray on this machine; inputs and outputs must be paths "
                       "every worker can read (a shared filesystem)")
    group.add_argument("--ray-address", metavar="ADDRESS",
                       help="the cluster to run on (what `ray start --head` printed); implies "
                       "--ray")
    group.add_argument("--ray-workers", type=int, metavar="N",
                       help="at most N workers (default: as many as the cluster's CPUs, or "
                       "GPUs for a GPU run, hold)")
    if video:
        group.add_argument("--segment-s", type=float, default=DEFAULT_SEGMENT_S, metavar="S",
                           help="with --ray, a video longer than S seconds is cut at keyframes "
                           "into segments of about S seconds, matted in parallel and stitched "
                           f"(default: {DEFAULT_SEGMENT_S})")


def wants_cluster(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "ray", False) or getattr(args, "ray_address", None))


def run_on_cluster(args: argparse.Namespace, config: MatteConfig,
                   pairs: Sequence[tuple[Path, Path]], kind: Literal["video", "image"],
                   describe: Callable[[Outcome], list[str]], *, batch: bool = True,
                   report_to: ReportFile | None = None) -> int:
    """Matte every (input, output) pair on Ray; the exit status as a local batch gives it.
    ``describe`` puts a finished task's result into lines for the user; ``batch``: the
    outputs go into a folder, created if need be (one input's folder must exist);
    ``report_to``: the ``--report`` file, which gets an entry per input and the workers'
    counts."""
    # what the local run does beside the output is not on the cluster's path yet: refused,
    # never silently dropped
    unsupported = [flag for flag, given in (
        ("--output-matte", getattr(args, "output_matte", None)),
        ("--output-foreground", getattr(args, "output_foreground", None)),
        ("- (stdin/stdout)", any(is_stdio(path) for pair in pairs for path in pair)))
        if given]
    if unsupported:
        raise ConfigError(f"--ray does not support {', '.join(unsupported)} yet; run without "
                          "--ray")
    try:
        from ..cluster.executor import RayOptions, run_on_ray
    except ImportError as exc:
        raise ConfigError(f"--ray needs Ray ({exc.name or 'ray'} is missing): "
                          "pip install 'streammatte[ray]'") from exc

    options = RayOptions(address=args.ray_address or os.environ.get("RAY_ADDRESS") or None,
                         workers=args.ray_workers, segment_s=getattr(args, "segment_s", None))
    quiet: bool = args.quiet
    if batch:
        make_output_folder(pairs)
    todo = []
    for src, dst in pairs:
        if args.skip_existing and dst.exists():
            if not quiet:
                print(f"{src}: skipped, {dst} exists", file=sys.stderr)
            if report_to is not None:
                report_to.add(RunEntry(src, status="skipped"))
        else:
            todo.append((src, dst))
    skipped = len(pairs) - len(todo)
    # absolute paths: a worker's working folder is not the driver's
    tasks = [Task(key=str(dst.absolute()), kind=kind, src=src.absolute(), dst=dst.absolute(),
                  frames=_frame_count(src) if kind == "video" else 1) for src, dst in todo]
    if not tasks:
        return report_tally(len(pairs), [], skipped, quiet=quiet)
    given = {task.key: src for task, (src, _) in zip(tasks, todo, strict=True)}
    bar = ProgressLine(sum(t.frames for t in tasks), enabled=None if not quiet else False,
                       label="frames" if kind == "video" else "images")
    failed: list[tuple[Path, str]] = []
    finished = 0
    disk_full: Outcome | None = None

    def on_outcome(outcome: Outcome) -> bool:
        nonlocal finished, disk_full
        finished += 1
        src = given[outcome.task.key]
        if report_to is not None:
            report_to.add(_entry(src, outcome))
        if outcome.ok:
            if not quiet:
                bar.note("\n  ".join([f"[{finished}/{len(tasks)}] {src} ({outcome.worker})",
                                      *describe(outcome)]))
            return True
        failed.append((src, outcome.error or "failed"))
        bar.note(f"streammatte: error: {outcome.error}")
        if outcome.errno in FOLDER_FULL:  # the rest would fail alike
            disk_full = outcome
            return False
        return True

    def on_progress(progress: ClusterProgress) -> None:
        bar.total = progress.total
        bar.update(progress.done, progress.elapsed_s,
                   f"{progress.alive}/{progress.workers} workers")

    report = run_on_ray(tasks, config, options, on_progress=on_progress, on_outcome=on_outcome,
                        auth_tokens=hf_auth_tokens(), quiet=quiet)
    bar.finish()
    if report_to is not None:
        report_to.workers = [_worker_json(counts) for counts in report.workers]
    if not quiet:
        print(f"ray ({report.address}, {len(report.workers)} worker(s)): {report.frames} "
              f"{bar.label} in {report.elapsed_s:.1f} s ({report.fps:.1f}/s)", file=sys.stderr)
        for counts in report.workers:
            print(f"  {counts}", file=sys.stderr)
    if disk_full is not None:
        done = finished - len(failed)
        raise SinkError(f"{disk_full.error}; the batch stopped at {disk_full.task.src}: "
                        f"{done} done, {len(tasks) - finished} not started")
    return report_tally(len(pairs), failed, skipped, quiet=quiet)


def _entry(src: Path, outcome: Outcome) -> RunEntry:
    """An input's entry in the ``--report`` file, from its task's outcome."""
    if not outcome.ok:
        return RunEntry(src, status="failed", error=outcome.error)
    if outcome.report is not None:
        entry = entry_from(RunEntry(src), outcome.report)
    else:  # an image: the worker's time is its run
        entry = RunEntry(src, frames_in=outcome.frames, frames_out=outcome.frames,
                         elapsed_s=outcome.busy_s)
    entry.notes.append(f"on Ray {outcome.worker}")
    return entry


def _worker_json(counts: WorkerCounts) -> dict[str, Any]:
    return {"slot": counts.slot, "host": counts.host, "pids": counts.pids,
            "restarts": counts.restarts, "tasks": counts.tasks, "failed": counts.failed,
            "frames": counts.frames, "busy_s": round(counts.busy_s, 6)}


def _frame_count(src: Path) -> int:
    """The input's frame count as its container states it, for the progress line (0 when
    it cannot be read here: the worker will say why)."""
    try:
        with FileSource(src) as probe:
            return probe.frame_count or 0
    except OSError:
        return 0
