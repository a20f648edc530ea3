"""The command line as a user meets it: exit codes, one-line errors, outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
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
    assert line.split() == ["u2netp", "general", "objects,", "fast", "on", "a", "CPU", "4.6",
                            "MB", "Apache-2.0", "yes"]
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


# -- batches: several inputs or folders, one output folder ------------------------------------

def test_video_batch_writes_one_result_per_input_and_reuses_the_engine(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import streammatte.commands.video as video_command

    clips = tmp_path / "clips"
    clips.mkdir()
    make_video(clips / "a.mp4", frames=6, size=(64, 48))
    make_video(clips / "b.mov", frames=9, size=(64, 48))
    (clips / "notes.txt").write_text("not a clip")  # folders are filtered by suffix
    single = tmp_path / "c.avi"
    make_video(single, frames=4, size=(64, 48), codec="mpeg4")
    from streammatte.api import open_configured_engine as real_open

    opened = []

    def counting_open(*args: object, **kwargs: object) -> object:
        engine = real_open(*args, **kwargs)  # type: ignore[arg-type]
        opened.append(engine)
        return engine

    monkeypatch.setattr(video_command, "open_configured_engine", counting_open)
    out = tmp_path / "out"
    assert main(["video", str(clips), str(single), "-o", str(out), "-e", "mog2",
                 "-b", "blue"]) == 0
    assert len(opened) == 1  # one engine for the whole batch
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mp4", "c.mp4"]
    for name, frames in (("a.mp4", 6), ("b.mp4", 9), ("c.mp4", 4)):
        with av.open(str(out / name)) as container:
            assert container.streams.video[0].frames == frames
    err = capsys.readouterr().err
    assert "[1/3]" in err and "[3/3]" in err and "3 of 3 done" in err


def test_a_failing_file_is_reported_and_the_batch_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.mp4"
    make_video(good, frames=4, size=(64, 48))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video")
    out = tmp_path / "out"
    # without a background the batch writes VP9 WebM with alpha
    assert main(["video", str(bad), str(good), "-o", str(out), "-e", "mog2"]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["good.webm"]
    err = capsys.readouterr().err
    assert "1 of 2 done; failed:" in err
    assert f"{bad}: " in err.splitlines()[-1]


@pytest.mark.parametrize(("inputs", "message"), [
    (["x/clip.mp4", "y/clip.mov"], "would both write"),
    (["empty"], "no video files in this folder"),
    (["clip.mp4", "missing.mp4"], "missing.mp4: no such file or folder"),
])
def test_batch_refuses_before_running(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      inputs: list[str], message: str) -> None:
    for name in ("x/clip.mp4", "y/clip.mov", "clip.mp4"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        make_video(tmp_path / name, frames=3, size=(32, 32))
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    assert main(["video", *(str(tmp_path / i) for i in inputs), "-o", str(out),
                 "-e", "mog2"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # nothing ran


def test_a_stopped_batch_resumes_with_skip_existing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a", "b"):
        make_video(tmp_path / f"{name}.mp4", frames=4, size=(64, 48))
    out = tmp_path / "out"
    inputs = [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]
    assert main(["video", *inputs, "-o", str(out), "-e", "mog2", "-b", "blue"]) == 0
    (out / "b.mp4").unlink()  # as if the batch had been stopped during b
    finished = (out / "a.mp4").read_bytes()
    capsys.readouterr()
    # run again as it was: a's existing result is an error, b is redone
    assert main(["video", *inputs, "-o", str(out), "-e", "mog2", "-b", "blue"]) == 2
    assert "already exists" in capsys.readouterr().err
    (out / "b.mp4").unlink()
    assert main(["video", *inputs, "-o", str(out), "-e", "mog2", "-b", "blue",
                 "--skip-existing"]) == 0
    err = capsys.readouterr().err
    assert f"skipped, {out / 'a.mp4'} exists" in err
    assert "1 of 2 done, 1 skipped (output exists)" in err
    assert (out / "a.mp4").read_bytes() == finished
    with av.open(str(out / "b.mp4")) as container:
        assert container.streams.video[0].frames == 4
    # one input: the same flag leaves its output alone
    assert main(["video", inputs[0], "-o", str(out / "a.mp4"), "-e", "mog2",
                 "--skip-existing"]) == 0
    assert f"skipped: {out / 'a.mp4'} exists" in capsys.readouterr().err
    assert (out / "a.mp4").read_bytes() == finished


def test_skip_existing_and_overwrite_exclude_each_other(tmp_path: Path) -> None:
    make_video(tmp_path / "clip.mp4", frames=2, size=(32, 32))
    with pytest.raises(SystemExit) as stop:
        main(["video", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "o.mp4"),
              "--overwrite", "--skip-existing"])
    assert stop.value.code == 2


def test_a_batch_never_writes_over_its_inputs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    picture = np.zeros((24, 32, 3), np.uint8)
    picture[6:18, 8:24] = 200
    for name in ("one.png", "two.png"):
        assert cv2.imwrite(str(pictures / name), picture)
    before = {p.name: p.read_bytes() for p in pictures.iterdir()}
    assert main(["image", str(pictures), "-o", str(pictures), "-e", "grabcut"]) == 2
    assert "the output would overwrite an input" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in pictures.iterdir()} == before


def test_image_batch_over_a_folder(tmp_path: Path, shared_data: Path, u2netp_path: Path) -> None:
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    golden = shared_data / "rembg-golden" / "anime-girl-1.jpg"
    (pictures / "one.jpg").write_bytes(golden.read_bytes())
    (pictures / "two.jpg").write_bytes(golden.read_bytes())
    out = tmp_path / "out"
    result = _run("image", str(pictures), "-o", str(out), "--models-dir",
                  str(u2netp_path.parent))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["one.png", "two.png"]
    for name in ("one.png", "two.png"):
        rgba = imread(out / name)
        assert rgba.shape == (601, 850, 4) and (rgba[..., 3] == 0).mean() > 0.5
