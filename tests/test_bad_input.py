"""Bad input gets one clear error and loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from media import BrightnessEngine, make_video

from streammatte import matte_video
from streammatte.errors import ConfigError, SinkError, SourceError
from streammatte.pipeline import PipelineStats
from streammatte.sources.file import FileSource


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".partial-" in p.name)


def test_missing_input(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"nope\.mp4: no such file"):
        matte_video(tmp_path / "nope.mp4", tmp_path / "out.mov", engine=BrightnessEngine())


def test_empty_input(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty\.mp4: empty file \(0 bytes\)"):
        matte_video(tmp_path / "empty.mp4", tmp_path / "out.mov", engine=BrightnessEngine())


def test_not_a_video(tmp_path: Path) -> None:
    (tmp_path / "notes.mp4").write_text("this is text, not a video\n" * 50)
    with pytest.raises(SourceError, match=r"notes\.mp4: not a readable video"):
        matte_video(tmp_path / "notes.mp4", tmp_path / "out.mov", engine=BrightnessEngine())
    assert not (tmp_path / "out.mov").exists()
    assert _leftovers(tmp_path) == []


def test_audio_only_input(tmp_path: Path) -> None:
    import av

    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate = 44100
        frame.pts = 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    with pytest.raises(SourceError, match=r"tone\.m4a: no video stream \(found: audio\)"):
        FileSource(path)


def test_truncated_input_without_index(tmp_path: Path) -> None:
    src = tmp_path / "clip.mp4"
    make_video(src, frames=30)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])  # moov is lost
    with pytest.raises(SourceError, match=r"cut\.mp4: not a readable video"):
        matte_video(cut, tmp_path / "out.mov", engine=BrightnessEngine())
    assert _leftovers(tmp_path) == []


def test_truncated_stream_keeps_what_decodes(tmp_path: Path) -> None:
    src = tmp_path / "clip.mkv"
    make_video(src, frames=40, codec="mpeg4")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size * 2 // 3])
    report = matte_video(cut, tmp_path / "out.mov", engine=BrightnessEngine())
    assert 10 < report.frames_out < 40


def test_output_equal_to_input_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "clip.mp4"
    make_video(src, frames=3)
    before = src.read_bytes()
    with pytest.raises(ConfigError, match="would overwrite the input"):
        matte_video(src, src, engine=BrightnessEngine(), overwrite=True, background="white")
    assert src.read_bytes() == before


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "clip.mp4"
    make_video(src, frames=3)
    out = tmp_path / "out.mov"
    out.write_bytes(b"precious")
    with pytest.raises(SinkError, match=r"out\.mov: already exists \(pass --overwrite"):
        matte_video(src, out, engine=BrightnessEngine())
    assert out.read_bytes() == b"precious"
    matte_video(src, out, engine=BrightnessEngine(), overwrite=True)
    assert out.read_bytes() != b"precious"


class _FailingEngine(BrightnessEngine):
    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.calls >= 5:
            raise RuntimeError("engine blew up on frame 5")
        return super().infer(batch)


def test_stage_error_reaches_caller_and_leaves_no_file(tmp_path: Path) -> None:
    src = tmp_path / "clip.mp4"
    make_video(src, frames=20)
    out = tmp_path / "out.mov"
    with pytest.raises(RuntimeError, match="engine blew up on frame 5") as info:
        matte_video(src, out, engine=_FailingEngine())
    assert "(in pipeline stage 'infer')" in getattr(info.value, "__notes__", [])
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_interrupt_leaves_no_file(tmp_path: Path) -> None:
    src = tmp_path / "clip.mp4"
    make_video(src, frames=60)
    out = tmp_path / "out.webm"

    def interrupt(stats: PipelineStats) -> None:
        if stats.frames_out >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        matte_video(src, out, engine=BrightnessEngine(delay_s=0.02), on_progress=interrupt)
    assert not out.exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(("signum", "status", "said"), [
    (signal.SIGINT, 130, "interrupted; no partial output was left"),
    (signal.SIGTERM, 143, "terminated; no partial output was left"),  # as Ctrl-C (issue 12)
], ids=["SIGINT", "SIGTERM"])
def test_a_signal_on_the_cli_leaves_finished_file_or_none(
        tmp_path: Path, signum: signal.Signals, status: int, said: str) -> None:
    src = tmp_path / "clip.mp4"
    make_video(src, frames=400, size=(320, 240))
    out = tmp_path / "out.mov"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streammatte", "video", str(src), "-o", str(out),
         "--engine", "mog2"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    while not _leftovers(tmp_path) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)  # wait until it is writing
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:  # it finished before the signal landed: a complete file
        assert out.exists()
    else:
        assert proc.returncode == status, err
        assert said in err and "Traceback" not in err
        assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_damaged_packets_are_concealed_and_counted(tmp_path: Path) -> None:
    src = tmp_path / "clip.avi"
    make_video(src, frames=40, size=(96, 64), codec="mpeg4")
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(7)
    # scribble over the middle of the file, leaving the AVI header and index intact
    for offset in rng.integers(len(data) // 3, 2 * len(data) // 3, 60):
        data[int(offset)] ^= 0xFF
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(bytes(data))
    report = matte_video(damaged, tmp_path / "out.mov", engine=BrightnessEngine())
    assert report.frames_out >= 30
    with pytest.raises(SourceError, match=r"damaged\.avi: (damaged packet|corrupt frame)"):
        matte_video(damaged, tmp_path / "strict.mov", engine=BrightnessEngine(), strict=True)
    assert not (tmp_path / "strict.mov").exists()


def test_real_damaged_file_decodes_every_frame(shared_data: Path, tmp_path: Path) -> None:
    """Megamind_bugy.avi: FFmpeg's MPEG-4 decoder conceals its damage (packed B-frames in an
    AVI, stamped in decode order), so all 270 frames come out, their timestamps put back in
    display order; nothing is skipped."""
    src = shared_data / "media" / "Megamind_bugy.avi"
    out = tmp_path / "megamind.mp4"
    report = matte_video(src, out, engine="mog2", background="blur")
    assert report.frames_in == report.frames_out == 270
    import av

    with av.open(str(out)) as container:
        times = [float(f.time) for f in container.decode(video=0)]
    assert times == pytest.approx([(i + 1) / 30 for i in range(270)], abs=1e-3)
    assert any("display order" in note for note in report.notes)
