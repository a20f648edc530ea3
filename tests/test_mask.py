"""Mask controls (#16 item 5): threshold, shrink/grow, feather and despill, after temporal
smoothing and before compositing, in the one chain every path runs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from media import BrightnessEngine, imread

from streammatte import Chain, matte_frames
from streammatte.cli import main
from streammatte.config import MatteConfig
from streammatte.errors import ConfigError
from streammatte.mask import MaskStep


def _disc(radius: float, size: int = 101) -> npt.NDArray[np.float32]:
    yy, xx = np.mgrid[0:size, 0:size] - size // 2
    disc: npt.NDArray[np.float32] = (np.hypot(yy, xx) <= radius).astype(np.float32)
    return disc


def _step(**options: object) -> MaskStep:
    return MaskStep(MatteConfig(**options))  # type: ignore[arg-type]


def test_no_control_leaves_the_alpha_alone() -> None:
    alpha = np.random.default_rng(0).random((20, 30), dtype=np.float32)
    step = _step()
    assert not step.active and step.alpha(alpha) is alpha
    assert step.foreground(np.zeros((20, 30, 3), np.uint8), alpha) is None


def test_threshold_makes_a_hard_mask() -> None:
    alpha = np.tile(np.linspace(0, 1, 11, dtype=np.float32), (3, 1))
    out = _step(threshold=0.55).alpha(alpha)
    np.testing.assert_array_equal(out[0], [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1])


@pytest.mark.parametrize(("option", "pixels"), [("shrink_px", -4), ("grow_px", 4)])
def test_shrink_and_grow_move_the_edge_by_their_pixels(option: str, pixels: int) -> None:
    out = _step(**{option: abs(pixels)}).alpha(_disc(30))
    expected = _disc(30 + pixels)
    assert set(np.unique(out)) == {0.0, 1.0}
    np.testing.assert_array_equal(out[50], expected[50])  # along each axis: exactly
    np.testing.assert_array_equal(out[:, 50], expected[:, 50])
    assert out.sum() == pytest.approx(expected.sum(), rel=0.03)


def test_feather_ramps_the_edge_over_its_pixels() -> None:
    edge = np.zeros((9, 200), np.float32)
    edge[:, 100:] = 1.0
    row = _step(feather_px=12).alpha(edge)[4]
    ramp = np.count_nonzero((row > 0.1) & (row < 0.9))
    assert 10 <= ramp <= 14, ramp
    assert row[0] == pytest.approx(0, abs=1e-6) and row[-1] == pytest.approx(1, abs=1e-6)


def test_threshold_then_shrink_then_feather() -> None:
    soft = np.asarray(cv2.GaussianBlur(_disc(30), (0, 0), 3), np.float32)
    hard = _step(threshold=0.5).alpha(soft)
    radius = np.count_nonzero(hard[50, 50:]) - 1  # the hard disc the threshold leaves
    out = _step(threshold=0.5, shrink_px=5, feather_px=4).alpha(soft)
    # threshold first, then shrunk by 5, then softened about that edge
    row = out[50, 50:]
    assert row[0] == pytest.approx(1.0)
    assert row[radius - 5] > 0.5 > row[radius - 4]
    assert row[radius + 1] < 0.05


def test_despill_recovers_the_true_foreground_on_real_footage(shared_data: Path) -> None:
    davis = shared_data / "davis"
    fg = cv2.cvtColor(imread(davis / "parkour/frames/00030.jpg", cv2.IMREAD_COLOR),
                      cv2.COLOR_BGR2RGB).astype(np.float32)
    bg = np.empty_like(fg)
    bg[:] = (40, 200, 60)  # a green backdrop spilling into the edges
    truth = imread(davis / "parkour/masks/00030.png", cv2.IMREAD_GRAYSCALE) / 255.0
    alpha = np.asarray(cv2.GaussianBlur(truth.astype(np.float32), (0, 0), 2.5), np.float32)
    frame = np.round(alpha[..., None] * fg + (1 - alpha[..., None]) * bg).astype(np.uint8)
    soft = (alpha > 0.1) & (alpha < 0.9)
    despilled = _step(despill=True).foreground(frame, alpha)
    assert despilled is not None
    before = np.abs(frame.astype(np.float32) - fg)[soft].mean()
    after = np.abs(despilled.astype(np.float32) - fg)[soft].mean()
    assert after < 0.6 * before, (before, after)
    solid = alpha >= 0.95
    np.testing.assert_array_equal(despilled[solid], frame[solid])


@pytest.mark.parametrize(("options", "message"), [
    ({"threshold": 1.5}, "threshold should be between 0 and 1"),
    ({"shrink_px": 2, "grow_px": 2}, "choose shrink or grow, not both"),
    ({"feather_px": -1}, "pixel counts >= 0"),
])
def test_bad_mask_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MatteConfig(**options)  # type: ignore[arg-type]


def test_the_gpu_chain_gives_way_to_mask_controls() -> None:
    with Chain(MatteConfig(threshold=0.5, despill=True), engine=BrightnessEngine(),
               output="rgb") as chain:
        assert chain.gpu_blocker() == ("mask controls (threshold 0.5, despill) run on the "
                                       "CPU")


def test_frames_api_applies_the_controls() -> None:
    yy, xx = np.mgrid[0:48, 0:64]
    frame = np.where((np.hypot(yy - 24, xx - 32) < 12)[..., None], 230, 20).astype(np.uint8)
    frame = np.repeat(frame, 3, axis=2)
    plain = next(matte_frames([frame], engine=BrightnessEngine(), temporal="none"))
    shrunk = next(matte_frames([frame], engine=BrightnessEngine(), temporal="none",
                               shrink_px=3, feather_px=2))
    assert (shrunk.alpha > 127).sum() < (plain.alpha > 127).sum()
    assert np.count_nonzero((shrunk.alpha > 0) & (shrunk.alpha < 255)) > 0


def _image_alpha(tmp_path: Path, shared_data: Path, u2netp: Path, name: str,
                 *options: str) -> np.ndarray:
    out = tmp_path / f"{name}.png"
    assert main(["image", str(shared_data / "davis/parkour/frames/00030.jpg"), "-o", str(out),
                 "--model-file", str(u2netp), "-q", *options]) == 0
    return imread(out)[..., 3]


def test_image_command_on_a_real_frame(tmp_path: Path, shared_data: Path,
                                       u2netp_path: Path) -> None:
    plain = _image_alpha(tmp_path, shared_data, u2netp_path, "plain")
    hard = _image_alpha(tmp_path, shared_data, u2netp_path, "hard", "--threshold", "0.5")
    assert set(np.unique(hard)) == {0, 255}
    np.testing.assert_array_equal(hard == 255, plain >= 128)  # 0.5 of the same matte
    shrunk = _image_alpha(tmp_path, shared_data, u2netp_path, "shrunk", "--threshold", "0.5",
                          "--shrink", "3")
    assert 0.5 * (hard > 0).sum() < (shrunk > 0).sum() < 0.95 * (hard > 0).sum()
    feathered = _image_alpha(tmp_path, shared_data, u2netp_path, "feathered", "--threshold",
                             "0.5", "--feather", "6")
    assert np.count_nonzero((feathered > 0) & (feathered < 255)) > 0.5 * (hard > 0).sum() ** 0.5


def test_video_command_applies_the_controls_to_every_frame(tmp_path: Path) -> None:
    from media import make_video

    src, mattes = tmp_path / "in.mp4", tmp_path / "mattes"
    make_video(src, frames=6, size=(96, 64))
    assert main(["video", str(src), "-o", str(tmp_path / "out.mp4"), "-b", "white",
                 "--output-matte", str(mattes), "-e", "mog2", "--threshold", "0.5",
                 "--grow", "2", "-q"]) == 0
    frames = sorted(mattes.glob("frame_*.png"))
    assert len(frames) == 6
    for path in frames:
        assert set(np.unique(imread(path))) <= {0, 255}
