"""The machine-readable run report (``--report FILE.json``): one JSON document per command,
one entry per input, written atomically at the end of the run.

The schema is ``streammatte.run-report/1`` (docs/run-report.md); fields are only ever added
to it, and a change that removes or renames one raises the version. The file is staged beside
its path when the run starts (so an unwritable folder, or an existing report without
``overwrite``, fails before any work) and published whole when the run ends, however it ends:
done, failed, or interrupted.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import CancelledRun, SinkError
from .pipeline import PipelineStats
from .sinks.publish import StagedOutput, write_error

if TYPE_CHECKING:
    from .api import RunReport

SCHEMA = "streammatte.run-report/1"


def _stages(stats: PipelineStats | None) -> list[dict[str, Any]]:
    if stats is None:
        return []
    return [{"name": s.name, "frames": s.frames, "busy_s": round(s.busy_s, 6),
             "ms_per_frame": round(s.ms_per_frame, 3)} for s in stats.stages]


@dataclass(slots=True)
class RunEntry:
    """One input's part of the report. ``status``: ``done``, ``failed`` (``error`` says why)
    or ``skipped`` (its output existed and ``--skip-existing`` left it)."""

    input: Path
    status: str = "done"
    error: str | None = None
    engine: str | None = None
    device: str | None = None
    frames_in: int = 0
    frames_out: int = 0
    #: frames the engine ran on (a keyframe mode propagates the matte to the others)
    engine_frames: int = 0
    elapsed_s: float = 0.0
    #: (name, seconds) for runs timed outside a pipeline (still images)
    timings: list[tuple[str, float]] = field(default_factory=list)
    stats: PipelineStats | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    audio_tracks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        stages = _stages(self.stats) or [
            {"name": name, "frames": 1, "busy_s": round(seconds, 6),
             "ms_per_frame": round(1000 * seconds, 3)} for name, seconds in self.timings]
        return {
            "input": str(self.input), "status": self.status, "error": self.error,
            "engine": self.engine, "device": self.device, "frames_in": self.frames_in,
            "frames_out": self.frames_out, "engine_frames": self.engine_frames,
            "elapsed_s": round(self.elapsed_s, 6),
            "fps": round(self.frames_out / self.elapsed_s, 3) if self.elapsed_s > 0 else 0.0,
            "stages": stages, "outputs": self.outputs, "audio_tracks": self.audio_tracks,
            "notes": self.notes,
        }


def entry_from(entry: RunEntry, report: RunReport) -> RunEntry:
    """Fill ``entry`` from a finished video run's RunReport (status ``done``)."""
    entry.status, entry.error = "done", None
    entry.engine, entry.device = report.engine, report.device
    entry.frames_in, entry.frames_out = report.frames_in, report.frames_out
    entry.engine_frames = report.engine_frames
    entry.elapsed_s, entry.stats = report.elapsed_s, report.stats
    entry.outputs = [{"kind": o.kind, "path": str(o.path), "format": o.format,
                      "encoder": o.encoder, "audio_tracks": list(o.audio_tracks)}
                     for o in report.outputs]
    entry.audio_tracks, entry.notes = list(report.audio_tracks), list(report.notes)
    return entry


class ReportFile:
    """The report of one command: stage it with ``ReportFile(path, command)`` before any
    work, ``add`` an entry per input, and leave the ``with`` block: the report is written
    then, with ``status`` ``done``, ``failed`` (an input failed, or the command stopped on an
    error) or ``interrupted`` (Ctrl-C, a signal), and published in one step."""

    def __init__(self, path: str | os.PathLike[str], command: str, *, overwrite: bool = False,
                 inputs: list[Path] | None = None, argv: list[str] | None = None) -> None:
        self.path = Path(path)
        self.command = command
        self.argv = argv
        self.entries: list[RunEntry] = []
        self._staged = StagedOutput(self.path, folder=False, overwrite=overwrite,
                                    suffix=self.path.suffix, inputs=inputs or [])
        self._started = datetime.datetime.now(datetime.timezone.utc)
        self._clock = time.perf_counter()
        self.error: str | None = None
        #: a cluster run's per-worker counts (``--ray``), as dicts; absent from a local run
        self.workers: list[dict[str, Any]] | None = None

    def add(self, entry: RunEntry) -> RunEntry:
        self.entries.append(entry)
        return entry

    def document(self, status: str) -> dict[str, Any]:
        from . import __version__

        return {
            "schema": SCHEMA, "streammatte": __version__, "command": self.command,
            "argv": self.argv,
            "started": self._started.isoformat(timespec="seconds"),
            "elapsed_s": round(time.perf_counter() - self._clock, 6), "status": status,
            "error": self.error, "runs": [e.to_json() for e in self.entries],
            **({} if self.workers is None else {"workers": self.workers}),
        }

    def write(self, status: str) -> Path:
        """Write the report with ``status`` and publish it; returns its path."""
        temp = self._staged.temp
        if temp is None:
            raise SinkError(f"{self.path}: the report was already written")
        text = json.dumps(self.document(status), indent=2, ensure_ascii=False) + "\n"
        try:
            temp.write_text(text, encoding="utf-8")
        except OSError as exc:
            self._staged.discard()
            raise write_error(self.path, exc) from exc
        return self._staged.publish()

    def __enter__(self) -> ReportFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._staged.temp is None:
            return
        if exc_type is None:
            failed = any(e.status == "failed" for e in self.entries)
            self.write("failed" if failed else "done")
        elif issubclass(exc_type, (KeyboardInterrupt, SystemExit, CancelledRun)):
            self.write("interrupted")
        else:
            self.error = str(exc)
            self.write("failed")
