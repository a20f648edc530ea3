"""Faults on real filesystems and signals: one line, exit 2 (143 for SIGTERM), nothing left
behind (issue 12, items 5, 6 and 7)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import BrightnessEngine, make_video
from mounts import read_only, small_tmpfs

from streammatte import matte_video
from streammatte.errors import SinkError, SourceError
from streammatte.inference import open_engine

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
       "PYTHONUNBUFFERED": "1"}


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streammatte", *args], capture_output=True,
                          text=True, timeout=timeout, env=ENV)


def _one_error_line(result: subprocess.CompletedProcess[str], message: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines()
             if line.startswith("streammatte: error: ")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    return lines[0]


def _partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "in.mp4"
    make_video(path, frames=20, size=(320, 240))
    return path


# -- 5. OS errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("output", ["out.mov", "frames"])
def test_a_full_disk_is_one_line_and_leaves_nothing(clip: Path, tmp_path: Path,
                                                    output: str) -> None:
    with small_tmpfs(tmp_path / "disk", "200k") as disk:
        result = _cli("video", str(clip), "-o", str(disk / output), "-e", "mog2", "-q")
        _one_error_line(result, f"{disk / output}: cannot write: No space left on device")
        assert list(disk.iterdir()) == []


def test_an_image_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "noise.png"
    cv2.imwrite(str(src), np.random.default_rng(1).integers(0, 255, (400, 400, 3), np.uint8))
    with small_tmpfs(tmp_path / "disk", "64k") as disk:
        result = _cli("image", str(src), "-o", str(disk / "cut.png"), "-e", "mog2", "-q")
        _one_error_line(result, "cut.png: cannot write: No space left on device")
        assert list(disk.iterdir()) == []


def test_a_read_only_folder_fails_before_the_first_frame(clip: Path, tmp_path: Path) -> None:
    engine = BrightnessEngine()
    with read_only(tmp_path / "ro") as folder:
        with pytest.raises(SinkError, match=r"out\.mp4: cannot write into .*ro: Read-only"):
            matte_video(clip, folder / "out.mp4", engine=engine)
        assert engine.calls == 0
        result = _cli("video", str(clip), "-o", str(folder / "out.mp4"), "-e", "mog2")
        _one_error_line(result, "Read-only file system")
        assert "fps" not in result.stderr  # refused before the clip was described


def test_an_unwritable_models_dir_is_one_line(clip: Path, tmp_path: Path) -> None:
    with read_only(tmp_path / "models") as models:
        result = _cli("video", str(clip), "-o", str(tmp_path / "out.mp4"), "-e", "u2netp",
                      "--models-dir", str(models))
        _one_error_line(result, f"{models}: cannot write to the model cache (Read-only")
    assert not (tmp_path / "out.mp4").exists() and _partials(tmp_path) == []


def test_a_model_cached_in_a_read_only_dir_still_opens(tmp_path: Path,
                                                        u2netp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    shutil.copy2(u2netp_path, tmp_path / "models" / "u2netp.onnx")
    with read_only(tmp_path / "models") as models, \
            open_engine("u2netp", models_dir=models, device="cpu") as engine:
        assert engine.name == "u2netp"


def test_a_full_disk_stops_the_batch(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a", "b", "c"):
        make_video(clips / f"{name}.mp4", frames=10, size=(320, 240))
    with small_tmpfs(tmp_path / "disk", "100k") as disk:
        result = _cli("video", str(clips), "-o", str(disk / "out"), "--format", "prores4444",
                      "-e", "mog2")
        line = _one_error_line(result, "No space left on device; the batch stopped at")
        assert "(1 of 3): 0 done before it, 2 not started" in line
        assert "b.mp4" not in result.stderr and "c.mp4" not in result.stderr
        assert list((disk / "out").iterdir()) == []


# -- 6. what SIGKILL leaves (SIGTERM: test_bad_input.py) -----------------------------------

def _start_and_wait_for_partial(src: Path, out: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streammatte", "video", str(src), "-o", str(out), "-e", "mog2",
         "-b", "blur"], stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 60
    while not _partials(out.parent) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    return proc


def test_the_next_run_removes_what_a_killed_run_left(tmp_path: Path) -> None:
    src = tmp_path / "long.mp4"
    make_video(src, frames=400, size=(320, 240))
    proc = _start_and_wait_for_partial(src, tmp_path / "killed.mp4")
    proc.kill()
    proc.communicate(timeout=60)
    left = _partials(tmp_path)
    assert left and all(f"partial-{proc.pid}-" in name for name in left)
    short = tmp_path / "short.mp4"
    make_video(short, frames=3)
    result = _cli("video", str(short), "-o", str(tmp_path / "next.mp4"), "-e", "mog2", "-q")
    assert result.returncode == 0, result.stderr
    assert _partials(tmp_path) == []


def test_only_dead_runs_own_partials_are_swept(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = os.getpid()  # alive: this test
    stale_file = tmp_path / f".a.mp4.partial-{dead.pid}-0123abcd.mp4"
    stale_file.write_bytes(b"x")
    stale_seq = tmp_path / f".seq.partial-{dead.pid}-89abcdef"
    stale_seq.mkdir()
    (stale_seq / "frame_000000.png").write_bytes(b"x")
    kept = [tmp_path / f".b.mp4.partial-{mine}-0123abcd.mp4",  # a live run's
            tmp_path / f".c.mp4.partial-{dead.pid}",  # not our pattern (no random part)
            tmp_path / f"d.mp4.partial-{dead.pid}-0123abcd.mp4",  # not hidden
            tmp_path / ".notes.txt"]
    for path in kept:
        path.write_bytes(b"keep")
    src = tmp_path / "in.mp4"
    make_video(src, frames=3)
    result = _cli("video", str(src), "-o", str(tmp_path / "out.mp4"), "-e", "mog2", "-q")
    assert result.returncode == 0, result.stderr
    assert not stale_file.exists() and not stale_seq.exists()
    assert all(path.read_bytes() == b"keep" for path in kept)


# -- 7. no frame at all -----------------------------------------------------------------------

def test_no_frame_error_names_the_input_and_says_why(tmp_path: Path) -> None:
    src = tmp_path / "clip.webm"
    make_video(src, frames=40, codec="libvpx-vp9")
    cut = tmp_path / "cut.webm"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 5])
    with pytest.raises(SourceError, match=r"cut\.webm: no frame could be decoded: the input "
                       r"ends early: 0 of 40 frames"):
        matte_video(cut, tmp_path / "out.webm", engine=BrightnessEngine())
    assert _partials(tmp_path) == [] and not (tmp_path / "out.webm").exists()
