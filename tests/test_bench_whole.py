"""``streammatte bench``: the rembg-loop yardstick it times, its table, its options."""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import pytest
from media import make_tiny_onnx

from streammatte.bench import LOOP_SCRIPT, WholeResult, WholeRun, format_whole, prepare_clip
from streammatte.bench_loop import run_loop
from streammatte.cli import main

FG = (250, 200, 60)  # bright: the tiny model's foreground
BG = (10, 10, 40)


def _halves(path: Path, frames: int) -> None:
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :32] = FG
    image[:, 32:] = BG
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv444p"
        stream.options = {"crf": "0"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_the_rembg_loop_composites_each_frame_over_white(tmp_path: Path) -> None:
    make_tiny_onnx(tmp_path / "tiny.onnx", size=(32, 32))
    _halves(tmp_path / "in.mp4", 5)
    assert run_loop(tmp_path / "in.mp4", tmp_path / "out.mp4", tmp_path / "tiny.onnx") == 5
    out = _frames(tmp_path / "out.mp4")
    assert len(out) == 5
    for frame in out:
        # away from the edge (LANCZOS rings, 4:2:0 chroma): foreground kept, background white
        np.testing.assert_allclose(frame[8:40, 4:24].mean(axis=(0, 1)), FG, atol=8)
        np.testing.assert_allclose(frame[8:40, 44:60].mean(axis=(0, 1)), (255, 255, 255), atol=8)


def test_the_loop_script_runs_without_streammatte(tmp_path: Path) -> None:
    # run by path: its process must not pay for (or lean on) this package's imports
    import subprocess

    make_tiny_onnx(tmp_path / "tiny.onnx", size=(32, 32))
    _halves(tmp_path / "in.mp4", 2)
    probe = ("import runpy, sys\n"
             "sys.argv = sys.argv[1:]\n"
             "try:\n"
             "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
             "except SystemExit as exc:\n"
             "    assert exc.code == 0, exc.code\n"
             "assert not any(m.startswith('streammatte') for m in sys.modules), 'imported'\n")
    done = subprocess.run([sys.executable, "-c", probe, str(LOOP_SCRIPT),
                           str(tmp_path / "in.mp4"), str(tmp_path / "out.mp4"),
                           "--model", str(tmp_path / "tiny.onnx")],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 frames" in done.stderr
    assert len(_frames(tmp_path / "out.mp4")) == 2


def test_prepare_clip_takes_the_first_frames_at_the_asked_size(tmp_path: Path) -> None:
    _halves(tmp_path / "in.mp4", 6)
    count, size = prepare_clip(tmp_path / "in.mp4", tmp_path / "out.mp4", 4, (33, 25))
    assert (count, size) == (4, (32, 24))  # even sizes for 4:2:0
    out = _frames(tmp_path / "out.mp4")
    assert len(out) == 4 and out[0].shape == (24, 32, 3)


def test_the_table_gives_each_mode_its_ratio_to_the_loop_and_engine_share() -> None:
    loop = WholeRun("rembg loop", seconds=[10.0, 12.0, 11.0], frames=40, engine_frames=40)
    fast = WholeRun("keyframes", seconds=[5.0, 6.0, 5.5], frames=40, engine_frames=10,
                    iou=0.90, dtssd=4.0)
    plain = WholeRun("none", seconds=[11.0], frames=40, engine_frames=40, iou=0.91, dtssd=5.0)
    text = format_whole(WholeResult(clip="c", size=(960, 540), frames=40, engine="u2netp",
                                    rounds=3, loop=loop, runs=[fast, plain],
                                    baseline=WholeRun("none", iou=0.91, dtssd=5.0)))
    assert "| streammatte --temporal keyframes | 5.5 | 2.00× | 25% | 0.9000 | -0.0100 | " \
           "4.000 | -20.0 % |" in text
    assert "| streammatte --temporal none | 11.0 | 1.00× | 100% |" in text
    assert "40 frames at 960×540" in text


def test_bench_refuses_a_bad_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "clip.mp4", "--size", "960by540"]) == 2
    assert "--size: expected WxH like 960x540, got '960by540'" in capsys.readouterr().err


def test_bench_refuses_an_unknown_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "clip.mp4", "--temporal", "keyframes,sideways"]) == 2
    assert "--temporal: unknown mode 'sideways'" in capsys.readouterr().err


@pytest.mark.slow
def test_real_bench_times_the_loop_and_keyframes_on_davis(shared_data: Path,
                                                          u2netp_path: Path) -> None:
    """Real model, real codecs, real footage, real subprocesses: one short round."""
    from streammatte.bench import run_whole_process

    # dog: a panning camera the flow follows, so keyframes come every few frames
    result = run_whole_process(shared_data / "davis" / "dog", engine_name="u2netp",
                               modes=("keyframes", "none"), frames=16, rounds=1,
                               models_dir=u2netp_path.parent)
    keyframes, none = result.runs
    assert result.frames == 16 and result.size == (854, 480)
    assert result.loop.median_s > 0 and keyframes.median_s > 0
    assert none.engine_frames == 16 and 0 < keyframes.engine_frames < 16
    assert keyframes.iou is not None and none.iou is not None
    assert abs(keyframes.iou - none.iou) < 0.05
