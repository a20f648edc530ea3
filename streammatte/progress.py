"""Progress on stderr: frames, fps, ETA for a run, megabytes for a download.

On a terminal the line is rewritten in place. Anywhere else (a log file, CI, a job runner) a
plain line is written every ``interval_s`` seconds, so a long run still shows it is alive
without filling the log.

Speed and ETA come from a moving window over the last ``window_s`` seconds, starting at the
first finished frame: model loading and filling the pipeline (warm-up) never count, and a run
that speeds up or slows down shows it within one window.
"""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Callable
from typing import TextIO

#: seconds between progress lines where the stream is not a terminal
LOG_INTERVAL_S = 5.0
#: seconds of recent progress the speed and ETA are measured over
RATE_WINDOW_S = 20.0


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _Writer:
    """Where lines go: rewritten in place on a terminal, one every ``interval_s`` elsewhere."""

    def __init__(self, stream: TextIO | None, enabled: bool | None, interval_s: float,
                 clock: Callable[[], float]) -> None:
        self.stream = stream or sys.stderr
        self.enabled = True if enabled is None else enabled
        self.tty = self.stream.isatty()
        self.interval_s = interval_s
        self.clock = clock
        self._last_line_at = clock()
        self._width = 0

    def show(self, line: str, *, final: bool = False) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width) + ("\n" if final else ""))
            self._width = 0 if final else len(line)
        else:
            now = self.clock()
            if not final and now - self._last_line_at < self.interval_s:
                return
            self._last_line_at = now
            self.stream.write(line + "\n")
        self.stream.flush()

    def print(self, text: str) -> None:
        """``text`` on lines of its own, whatever ``enabled`` says; on a terminal the in-place
        line is cleared first (the next ``show`` draws it again below)."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def end_line(self) -> None:
        """Leave the terminal's in-place line, so what is printed next starts on its own."""
        if self.enabled and self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


class ProgressLine:
    """``312/795 frames  39%  5.1 fps  ETA 1:34`` on stderr while a run goes.

    ``update(done, elapsed_s)`` as frames finish (``elapsed_s``: seconds since the run began,
    by the caller's clock; the monotonic clock when omitted); ``finish()`` once at the end.
    ``enabled=False`` (``--quiet``) shows nothing.
    """

    def __init__(self, total: int | None, *, label: str = "frames", stream: TextIO | None = None,
                 enabled: bool | None = None, interval_s: float = LOG_INTERVAL_S,
                 window_s: float = RATE_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.label = label
        self.window_s = window_s
        self._clock = clock
        self._started = clock()
        self._writer = _Writer(stream, enabled, interval_s, clock)
        # (elapsed, done) since the first finished frame, trimmed to the window
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    @property
    def enabled(self) -> bool:
        return self._writer.enabled

    def rate(self) -> float | None:
        """Frames per second over the window, or None before two samples exist."""
        if len(self._samples) < 2:
            return None
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None

    def _record(self, done: int, elapsed: float) -> None:
        if done <= 0:  # still loading the model or filling the pipeline
            return
        if self._samples and done < self._samples[-1][1]:
            self._samples.clear()  # a new count (the caller restarted): start over
        self._samples.append((elapsed, done))
        # keep the newest sample at least window_s older than the latest one
        while len(self._samples) > 2 and elapsed - self._samples[1][0] >= self.window_s:
            self._samples.popleft()

    def render(self, done: int, detail: str = "") -> str:
        """The line for ``done`` frames; ``detail`` (e.g. the workers alive) at its end."""
        parts = [f"{done}/{self.total} {self.label}" if self.total else f"{done} {self.label}"]
        if self.total:
            parts.append(f"{min(100, 100 * done // self.total)}%")
        rate = self.rate()
        parts.append(f"{rate:.1f} fps" if rate is not None else "… fps")
        if self.total and done < self.total:
            parts.append(f"ETA {format_duration((self.total - done) / rate)}" if rate
                         else "ETA …")
        if detail:
            parts.append(detail)
        return "  ".join(parts)

    def update(self, done: int, elapsed_s: float | None = None, detail: str = "") -> None:
        elapsed = self._clock() - self._started if elapsed_s is None else elapsed_s
        self._record(done, elapsed)
        if self.enabled:
            self._writer.show(self.render(done, detail))

    def note(self, text: str) -> None:
        """Print ``text`` on lines of its own above the progress line, even when the line is
        off (``enabled=False``): the caller decides what a quiet run still says."""
        self._writer.print(text)

    def finish(self) -> None:
        self._writer.end_line()


class DownloadProgress:
    """Progress for model downloads, as a ProgressFn: ``downloading u2net.onnx: 12.3/176.0 MB``."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None,
                 interval_s: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._writer = _Writer(stream, enabled, interval_s, clock)
        self._clock = clock
        self._last = -1.0

    def __call__(self, what: str, done: int, total: int | None) -> None:
        if not self._writer.enabled:
            return
        finished = total is not None and done >= total
        now = self._clock()
        if now - self._last < 0.1 and not finished:  # a terminal needs no more than 10 a second
            return
        self._last = now
        size = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
        self._writer.show(f"  downloading {what}: {size}", final=finished)
