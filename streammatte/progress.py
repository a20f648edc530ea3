"""A one-line progress display for terminals: frames, fps, ETA. Silent when not a TTY."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressLine:
    """Rewrites one line in place: ``  312/795 frames  39%  5.1 fps  ETA 1:34``."""

    def __init__(self, total: int | None, *, label: str = "frames", stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._started = time.monotonic()
        self._width = 0

    def render(self, done: int, elapsed_s: float | None = None, detail: str = "") -> str:
        """The line for ``done`` frames after ``elapsed_s``, ``detail`` (e.g. the workers
        alive) at its end."""
        elapsed = time.monotonic() - self._started if elapsed_s is None else elapsed_s
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{done}/{self.total} {self.label}" if self.total else f"{done} {self.label}"]
        if self.total:
            parts.append(f"{min(100, 100 * done // self.total)}%")
        parts.append(f"{rate:.1f} fps")
        if self.total and rate > 0 and done < self.total:
            parts.append(f"ETA {format_duration((self.total - done) / rate)}")
        if detail:
            parts.append(detail)
        return "  ".join(parts)

    def update(self, done: int, elapsed_s: float | None = None, detail: str = "") -> None:
        if not self.enabled:
            return
        line = self.render(done, elapsed_s, detail)
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def note(self, text: str) -> None:
        """Print ``text`` on lines of its own above the progress line (redrawn at the next
        update); to the stream as it is when the line is off."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\n")
            self.stream.flush()


class DownloadProgress:
    """Progress for model downloads, as a ProgressFn."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = 0.0

    def __call__(self, what: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and (total is None or done < total):
            return
        self._last = now
        size = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
        end = "\n" if total is not None and done >= total else ""
        self.stream.write(f"\r  downloading {what}: {size}{end}")
        self.stream.flush()
