"""Nothing is lost, whatever the output path: what --overwrite may replace, and runs that race
to one new output (issue 12, items 1 and 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from media import BrightnessEngine, make_video

from streammatte import matte_image, matte_video
from streammatte.errors import ConfigError, SinkError
from streammatte.pipeline import PipelineStats
from streammatte.sinks.publish import MANIFEST, OutputExistsError, StagedOutput


def _cli(*args: str, cwd: Path | None = None, timeout: float = 300
         ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "streammatte", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=env)


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for a folder)."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes())
            for p in sorted(folder.rglob("*"))}


def _one_error_line(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streammatte: error: "), result.stderr
    assert message in lines[0], lines[0]


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "in.mp4"
    make_video(path, frames=6, size=(64, 48))
    return path


# -- 1. what --overwrite may replace (the real CLI) -----------------------------------------

def test_overwrite_never_takes_the_current_directory(clip: Path) -> None:
    folder = clip.parent
    (folder / "notes.txt").write_text("mine")
    before = _tree(folder)
    result = _cli("video", "in.mp4", "-o", ".", "--overwrite", "-e", "mog2", cwd=folder)
    _one_error_line(result, ".: ")
    assert _tree(folder) == before


def test_overwrite_refuses_the_current_directory_even_without_an_input_in_it(
        clip: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    result = _cli("video", str(clip), "-o", ".", "--overwrite", "-e", "mog2", cwd=work)
    _one_error_line(result, ".: is the current directory")
    assert (work / "notes.txt").read_text() == "mine"


def test_overwrite_refuses_a_folder_with_other_content(clip: Path, tmp_path: Path) -> None:
    folder = tmp_path / "MyFolder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "keep.txt").write_text("keep")
    (folder / "frame_000000.png").write_bytes(b"not ours")
    before = _tree(folder)
    result = _cli("video", str(clip), "-o", str(folder), "--overwrite", "-e", "mog2")
    _one_error_line(result, "--overwrite replaces only a PNG-sequence folder streammatte wrote")
    assert _tree(folder) == before


def test_overwrite_refuses_a_folder_where_a_file_is_asked_for(clip: Path,
                                                              tmp_path: Path) -> None:
    folder = tmp_path / "clip.mp4"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep")
    result = _cli("video", str(clip), "-o", str(folder), "--overwrite", "-e", "mog2")
    _one_error_line(result, "clip.mp4: is a folder, and this output is a file")
    assert (folder / "keep.txt").read_text() == "keep"


def test_overwrite_refuses_a_file_where_a_folder_is_asked_for(clip: Path,
                                                              tmp_path: Path) -> None:
    target = tmp_path / "frames"
    target.write_bytes(b"precious")
    result = _cli("video", str(clip), "-o", str(target), "--overwrite", "-e", "mog2")
    _one_error_line(result, "frames: is a file, and a PNG sequence is written to a folder")
    assert target.read_bytes() == b"precious"


def test_overwrite_refuses_a_folder_that_holds_the_input(tmp_path: Path) -> None:
    src = tmp_path / "project" / "clips" / "in.mp4"
    src.parent.mkdir(parents=True)
    make_video(src, frames=4)
    result = _cli("video", str(src), "-o", str(tmp_path / "project"), "--overwrite",
                  "-e", "mog2")
    _one_error_line(result, "holds the input")
    assert src.is_file()


def test_overwrite_replaces_a_png_sequence_streammatte_wrote(tmp_path: Path) -> None:
    long_clip, short_clip = tmp_path / "long.mp4", tmp_path / "short.mp4"
    make_video(long_clip, frames=9, audio="aac")
    make_video(short_clip, frames=4)
    out = tmp_path / "frames"
    assert _cli("video", str(long_clip), "-o", str(out), "-e", "mog2", "-q").returncode == 0
    assert (out / MANIFEST).is_file() and (out / "audio.mka").is_file()
    result = _cli("video", str(short_clip), "-o", str(out), "--overwrite", "-e", "mog2", "-q")
    assert result.returncode == 0, result.stderr
    # the old sequence went whole: no frame or sidecar of the longer run is left over
    assert sorted(p.name for p in out.iterdir()) == [
        MANIFEST, *(f"frame_{i:06d}.png" for i in range(4))]
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []


def test_overwrite_replaces_a_regular_file(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"old result")
    result = _cli("video", str(clip), "-o", str(out), "--overwrite", "-e", "mog2", "-q")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[4:8] == b"ftyp"


def test_a_refused_path_is_refused_before_the_engine_runs(
        clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # never the checkout: code without this rule deletes the folder
    engine = BrightnessEngine()
    with pytest.raises(ConfigError, match="is the current directory"):
        matte_video(clip, Path.cwd(), engine=engine, overwrite=True)
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "x.txt").write_text("x")
    with pytest.raises(SinkError, match=r"other: --overwrite replaces only"):
        matte_video(clip, folder, engine=engine, overwrite=True)
    assert engine.calls == 0


def test_image_overwrite_refuses_a_folder(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    import cv2

    cv2.imwrite(str(src), np.full((16, 16, 3), 200, np.uint8))
    folder = tmp_path / "out.png"
    folder.mkdir()
    (folder / "keep").write_text("keep")
    engine = BrightnessEngine()
    with pytest.raises(SinkError, match=r"out\.png: is a folder, and this output is a file"):
        matte_image(src, folder, engine=engine, overwrite=True)
    assert (folder / "keep").read_text() == "keep" and engine.calls == 0


def test_an_input_used_as_background_is_never_the_output(clip: Path, tmp_path: Path) -> None:
    bg = tmp_path / "bg.mp4"
    make_video(bg, frames=3)
    before = bg.read_bytes()
    with pytest.raises(ConfigError, match="would overwrite the input"):
        matte_video(clip, bg, engine=BrightnessEngine(), background=str(bg), overwrite=True)
    assert bg.read_bytes() == before


# -- 2. no-clobber publishing ---------------------------------------------------------------

def _appears_midway(path: Path, content: bytes | None) -> Callable[[PipelineStats], None]:
    """An on_progress that plays "another run": it publishes ``path`` while this one runs."""
    def on_progress(stats: PipelineStats) -> None:
        if stats.frames_out >= 1 and not path.exists():
            if content is None:
                path.mkdir()
                (path / "theirs.png").write_bytes(b"their frame")
            else:
                path.write_bytes(content)
    return on_progress


def test_an_output_that_appears_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    make_video(src, frames=30)
    out = tmp_path / "out.mp4"
    with pytest.raises(OutputExistsError, match=r"out\.mp4: appeared while this run was "
                       r"writing it .* kept as .*out-1\.mp4") as info:
        matte_video(src, out, engine=BrightnessEngine(delay_s=0.02),
                    on_progress=_appears_midway(out, b"the other run's result"))
    assert out.read_bytes() == b"the other run's result"
    assert info.value.kept == tmp_path / "out-1.mp4"
    assert (tmp_path / "out-1.mp4").read_bytes()[4:8] == b"ftyp"
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []


def test_a_png_sequence_that_appears_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    make_video(src, frames=30)
    out = tmp_path / "frames"
    with pytest.raises(OutputExistsError, match=r"kept as .*frames-1"):
        matte_video(src, out, engine=BrightnessEngine(delay_s=0.02),
                    on_progress=_appears_midway(out, None))
    assert sorted(p.name for p in out.iterdir()) == ["theirs.png"]
    assert len(list((tmp_path / "frames-1").glob("frame_*.png"))) == 30


def test_an_image_that_appears_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    import cv2

    src = tmp_path / "in.png"
    cv2.imwrite(str(src), np.full((16, 16, 3), 200, np.uint8))
    out = tmp_path / "out.png"

    class OtherRunFinishesFirst(BrightnessEngine):
        def infer(self, batch: np.ndarray) -> np.ndarray:
            out.write_bytes(b"theirs")
            return super().infer(batch)

    with pytest.raises(OutputExistsError, match=r"kept as .*out-1\.png"):
        matte_image(src, out, engine=OtherRunFinishesFirst())
    assert out.read_bytes() == b"theirs"
    assert (tmp_path / "out-1.png").read_bytes()[:4] == b"\x89PNG"


def test_the_loser_says_when_its_result_could_not_be_kept(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    with StagedOutput(out, folder=False, overwrite=False) as staged:
        assert staged.temp is not None
        staged.temp.write_bytes(b"mine")
        out.write_bytes(b"theirs")
        for n in range(1, 100):  # every fallback name is taken too
            (tmp_path / f"out-{n}.bin").write_bytes(b"taken")
        with pytest.raises(OutputExistsError, match="this run's result was removed") as info:
            staged.publish()
    assert info.value.kept is None and out.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []


@pytest.mark.slow
def test_two_cli_runs_racing_to_one_output_both_keep_their_result(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    make_video(src, frames=60, size=(160, 120))
    out = tmp_path / "out.mp4"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    runs = [subprocess.Popen([sys.executable, "-m", "streammatte", "video", str(src), "-o",
                              str(out), "-e", "mog2", "-q", "-b", colour],
                             stderr=subprocess.PIPE, text=True, env=env)
            for colour in ("red", "blue")]
    results = [(run.wait(timeout=300), run.stderr.read() if run.stderr else "")
               for run in runs]
    assert sorted(code for code, _ in results) == [0, 2], results
    (_, loser_err), = [r for r in results if r[0] == 2]
    assert "already exists" in loser_err or "kept as" in loser_err, loser_err
    assert out.is_file()
    if "kept as" in loser_err:
        assert (tmp_path / "out-1.mp4").is_file()


@pytest.fixture
def without_link_or_renameat2(monkeypatch: pytest.MonkeyPatch) -> None:
    """A filesystem (or C library) with neither hard links nor renameat2: the fallbacks."""
    import errno

    from streammatte.sinks import publish

    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "hard links not supported here")

    monkeypatch.setattr(publish, "_renameat2", lambda src, dst, flags: False)
    monkeypatch.setattr(os, "link", no_link)


@pytest.mark.parametrize("folder", [False, True], ids=["file", "folder"])
@pytest.mark.usefixtures("without_link_or_renameat2")
def test_the_fallback_publishes_without_clobbering(tmp_path: Path, folder: bool) -> None:
    out = tmp_path / "out"
    with StagedOutput(out, folder=folder, overwrite=False) as staged:
        assert staged.temp is not None
        if folder:
            (staged.temp / "frame_000000.png").write_bytes(b"mine")
        else:
            staged.temp.write_bytes(b"mine")
        assert staged.publish() == out
    assert (out / "frame_000000.png" if folder else out).read_bytes() == b"mine"
    with StagedOutput(tmp_path / "again", folder=folder, overwrite=False) as staged:
        assert staged.temp is not None
        if folder:
            (tmp_path / "again").mkdir()
        else:
            (tmp_path / "again").write_bytes(b"theirs")
        with pytest.raises(OutputExistsError, match=r"kept as .*again-1"):
            staged.publish()
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []


@pytest.mark.usefixtures("without_link_or_renameat2")
def test_the_fallback_replaces_a_sequence_and_keeps_what_is_not_ours(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    for frames in (3, 2):
        with StagedOutput(out, folder=True, overwrite=True) as staged:
            assert staged.temp is not None
            for i in range(frames):
                (staged.temp / f"frame_{i:06d}.png").write_bytes(b"%d" % frames)
            (staged.temp / MANIFEST).write_text('{"written_by": "streammatte"}')
            staged.publish()
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "frame_000000.png",
                                                     "frame_000001.png"]
    assert (out / "frame_000000.png").read_bytes() == b"2"
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]
