"""Progress as a user sees it: in place on a terminal, a line every few seconds in a log, and
speed and ETA from recent frames only (model loading and warm-up excluded)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

from streammatte.progress import DownloadProgress, ProgressLine

REPO = Path(__file__).resolve().parents[1]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_terminal_line_is_rewritten_in_place() -> None:
    stream = Terminal()
    bar = ProgressLine(200, stream=stream)
    bar.update(40, elapsed_s=10.0)
    bar.update(50, elapsed_s=12.0)
    bar.finish()
    assert stream.getvalue() == ("\r40/200 frames  20%  … fps  ETA …"
                                 "\r50/200 frames  25%  5.0 fps  ETA 0:30\n")


def test_eta_ignores_model_loading_and_warm_up() -> None:
    """45 s of loading, then 5 frames/s: the ETA is what 5 frames/s gives, where an average
    from the start (11 frames in 48 s) would say over an hour."""
    bar = ProgressLine(1000, stream=Terminal())
    for t in range(45):
        bar.update(0, elapsed_s=float(t))
    for i in range(1, 12):  # the first frame out at 46 s, then one every 0.2 s
        bar.update(i, elapsed_s=46.0 + 0.2 * i)
    assert bar.rate() is not None and abs(bar.rate() - 5.0) < 1e-6  # type: ignore[operator]
    assert bar.render(11).endswith("5.0 fps  ETA 3:18")


def test_rate_follows_a_moving_window() -> None:
    """10 frames/s for a minute, then 2 frames/s: after one window the rate says 2."""
    bar = ProgressLine(None, stream=Terminal(), window_s=20.0)
    done, t = 0, 0.0
    for _ in range(600):
        done, t = done + 1, t + 0.1
        bar.update(done, elapsed_s=t)
    for _ in range(60):
        done, t = done + 1, t + 0.5
        bar.update(done, elapsed_s=t)
    assert bar.rate() is not None and abs(bar.rate() - 2.0) < 0.05  # type: ignore[operator]
    assert bar.render(done) == f"{done} frames  2.0 fps"


def test_a_log_gets_a_plain_line_every_interval() -> None:
    clock = Clock()
    stream = io.StringIO()  # not a terminal: a log file, CI, a job runner
    bar = ProgressLine(100, stream=stream, interval_s=5.0, clock=clock)
    for i in range(1, 49):  # 12 s at 4 frames/s
        clock.now = 0.25 * i
        bar.update(i)
    bar.finish()
    lines = stream.getvalue().splitlines(keepends=True)
    assert lines == ["20/100 frames  20%  4.0 fps  ETA 0:20\n",
                     "40/100 frames  40%  4.0 fps  ETA 0:15\n"]
    assert "\r" not in stream.getvalue()


def test_quiet_shows_nothing_anywhere() -> None:
    for stream in (Terminal(), io.StringIO()):
        clock = Clock()
        bar = ProgressLine(10, stream=stream, enabled=False, clock=clock)
        for i in range(1, 11):
            clock.now = 10.0 * i
            bar.update(i)
        bar.finish()
        assert stream.getvalue() == ""


def test_download_progress_in_a_log() -> None:
    clock = Clock()
    stream = io.StringIO()
    show = DownloadProgress(stream=stream, interval_s=5.0, clock=clock)
    for i in range(1, 13):  # 1 MB a second, reported every second, 12 MB in all
        clock.now = float(i)
        show("u2net.onnx", i * 1_000_000, 12_000_000)
    assert stream.getvalue().splitlines() == ["  downloading u2net.onnx: 5.0/12.0 MB",
                                              "  downloading u2net.onnx: 10.0/12.0 MB",
                                              "  downloading u2net.onnx: 12.0/12.0 MB"]


def test_video_run_in_a_log_prints_progress_lines(tmp_path: Path, u2netp_path: Path) -> None:
    """The real command on the real sample clip, stderr captured as a log or CI would."""
    out = tmp_path / "out.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "streammatte", "video", str(REPO / "samples" / "vtest-excerpt.mp4"),
         "-o", str(out), "--models-dir", str(u2netp_path.parent), "--temporal", "none"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines()
                if re.fullmatch(r"\d+/60 frames  \d+%  [\d.]+ fps  ETA \d+:\d\d", line)]
    # at ~3-5 frames/s on two cores the 60 frames take over 10 s: a line every 5 s
    assert progress, result.stderr
    assert "\r" not in result.stderr
    assert any(line.startswith(f"wrote {out}") for line in result.stderr.splitlines())
