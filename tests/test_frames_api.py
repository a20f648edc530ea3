"""The embedding API: matte_frames over any iterable of frames, matte_image over arrays and PIL
images, and the cancel contract of matte_video."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest
from media import BrightnessEngine, davis_clip, imread, make_video, square_frame

import streammatte
from streammatte.cli import main
from streammatte.errors import CancelledRun, ConfigError

Frame = npt.NDArray[np.uint8]


def decoded(path: Path) -> Iterator[Frame]:
    """What an embedder holds: frames decoded with plain PyAV."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield np.asarray(frame.to_ndarray(format="rgb24"), np.uint8)


def test_matte_frames_gives_the_alphas_the_video_command_writes(
        tmp_path: Path, shared_data: Path, u2netp_path: Path) -> None:
    clip = davis_clip(shared_data, tmp_path / "parkour.mp4", frames=12)
    # the default temporal mode looks 10 frames ahead: 12 frames cover the delay and the flush
    assert main(["video", str(clip), "-o", str(tmp_path / "frames"), "--engine", "u2netp",
                 "--model-file", str(u2netp_path), "--quiet"]) == 0
    written = [imread(p)[..., 3] for p in sorted((tmp_path / "frames").glob("*.png"))]
    results = list(streammatte.matte_frames(decoded(clip), engine="u2netp",
                                            model_file=u2netp_path))
    assert [r.index for r in results] == list(range(12)) and len(written) == 12
    for result, alpha in zip(results, written, strict=True):
        assert result.image is None
        assert result.alpha.shape == alpha.shape == (240, 428)
        assert result.alpha.dtype == np.uint8
        assert np.abs(result.alpha.astype(int) - alpha.astype(int)).max() <= 2
    assert 0.01 < np.mean([r.alpha.mean() / 255 for r in results]) < 0.5  # a real matte


def test_matte_frames_composites_over_a_background() -> None:
    frames = [square_frame(i, 48, 32)[0] for i in range(5)]
    results = list(streammatte.matte_frames(frames, engine=BrightnessEngine(), temporal="none",
                                            background="#00ff00"))
    for frame, result in zip(frames, results, strict=True):
        assert result.image is not None and result.image.shape == (32, 48, 3)
        fg = result.alpha == 255
        np.testing.assert_array_equal(result.image[fg], frame[fg])
        assert (result.image[~fg] == (0, 255, 0)).all()


def test_matte_frames_can_be_closed_early_and_reads_only_what_it_needs() -> None:
    pulled = 0

    def endless() -> Iterator[Frame]:
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield square_frame(i % 30, 32, 24)[0]

    before = set(threading.enumerate())
    results = streammatte.matte_frames(endless(), engine=BrightnessEngine(),
                                       temporal="bidirectional")
    first = [next(results) for _ in range(3)]
    results.close()
    assert [r.index for r in first] == [0, 1, 2]
    assert set(threading.enumerate()) <= before
    # the look-ahead holds 10 frames; the queues a few more: nowhere near endless
    assert pulled < 3 + 10 + 30


def test_matte_frames_checks_options_when_called() -> None:
    with pytest.raises(ConfigError, match="unknown temporal mode 'wobble'"):
        streammatte.matte_frames([], temporal="wobble")


def test_matte_frames_names_a_frame_that_is_not_rgb() -> None:
    frames = [square_frame(0, 32, 24)[0], np.zeros((24, 32), np.uint8)]
    with pytest.raises(ConfigError, match=r"frame 1: expected an H×W×3 uint8 RGB array, got "
                                          r"shape \(24, 32\) uint8"):
        list(streammatte.matte_frames(frames, engine=BrightnessEngine(), temporal="none"))


def test_matte_image_takes_a_path_an_array_or_a_pil_image(
        tmp_path: Path, shared_data: Path, u2netp_path: Path) -> None:
    from PIL import Image

    path = shared_data / "rembg-golden" / "anime-girl-1.jpg"
    with streammatte.open_engine("u2netp", model_file=u2netp_path) as engine:
        from_path = streammatte.matte_image(path, engine=engine)
        rgb = cv2.cvtColor(imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        from_array = streammatte.matte_image(rgb, engine=engine)
        from_pil = streammatte.matte_image(Image.open(path), engine=engine)
    assert from_path.shape == (*rgb.shape[:2], 4)
    np.testing.assert_array_equal(from_array, from_path)
    np.testing.assert_array_equal(from_pil, from_path)
    np.testing.assert_array_equal(from_path[..., :3], rgb)


def test_matte_image_refuses_what_is_not_a_picture() -> None:
    with pytest.raises(ConfigError, match="image: expected a path, a PIL image or an H×W×3 uint8 "
                                          "RGB array, got list"):
        streammatte.matte_image([[1, 2, 3]], engine=BrightnessEngine())


def test_cancelling_matte_video_leaves_no_output(tmp_path: Path) -> None:
    src = tmp_path / "clip.mp4"
    make_video(src, frames=40, size=(64, 48))
    cancel = threading.Event()

    def on_progress(stats: streammatte.PipelineStats) -> None:
        if stats.frames_out >= 2:
            cancel.set()

    slow = BrightnessEngine(delay_s=0.02)
    with pytest.raises(CancelledRun, match="cancelled"):
        streammatte.matte_video(src, tmp_path / "out.mp4", engine=slow, background="white",
                                temporal="none", cancel=cancel, on_progress=on_progress)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    assert slow.calls < 40
