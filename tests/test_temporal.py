"""Temporal filters: no lag on motion, less flicker where nothing moved, resets at cuts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from media import square_frame

from streammatte import metrics as M
from streammatte import temporal as T
from streammatte.errors import ConfigError

ZERO_LAG = ["none", "ema", "adaptive", "flow"]


def _textured(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (5, 5), 0)
    return np.asarray(base, np.uint8)


def _run(name: str, alphas: list[np.ndarray], frames: list[np.ndarray]) -> list[np.ndarray]:
    f = T.make_streaming(name)
    out: list[np.ndarray] = []
    for a, fr in zip(alphas, frames, strict=True):
        out += f.push(a, fr)
    return out + f.flush()


def test_unknown_mode_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown temporal mode 'wobble'.*adaptive"):
        T.make_temporal("wobble")


def test_lookahead_mode_is_refused_frame_by_frame() -> None:
    with pytest.raises(ConfigError, match="make_streaming"):
        T.make_temporal("bidirectional")


@pytest.mark.parametrize("name", [*ZERO_LAG, "bidirectional"])
def test_constant_input_stays_constant(name: str) -> None:
    frame = _textured()
    alpha = np.full(frame.shape[:2], 0.7, np.float32)
    out = _run(name, [alpha] * 6, [frame] * 6)
    assert len(out) == 6
    for o in out:
        np.testing.assert_allclose(o, alpha, atol=1e-5)


@pytest.mark.parametrize("name", ["adaptive", "flow", "bidirectional"])
def test_still_scene_flicker_is_cut_by_more_than_half(name: str) -> None:
    frame = _textured()
    rng = np.random.default_rng(1)
    truth = np.zeros(frame.shape[:2], np.float32)
    truth[12:36, 20:44] = 1.0
    noisy = [np.clip(truth + rng.normal(0, 0.08, truth.shape), 0, 1).astype(np.float32)
             for _ in range(20)]
    before = M.flicker_index(noisy, [frame] * 20)
    after = M.flicker_index(_run(name, noisy, [frame] * 20), [frame] * 20)
    assert after < 0.5 * before


@pytest.mark.parametrize("name", ["adaptive", "flow", "bidirectional"])
def test_moving_object_is_not_dragged_behind(name: str) -> None:
    pairs = [square_frame(i * 2, 96, 64) for i in range(12)]
    frames, truth = [p[0] for p in pairs], [p[1] for p in pairs]
    out = _run(name, truth, frames)
    ema = _run("ema", truth, frames)
    ious = [M.iou(o, t) for o, t in zip(out, truth, strict=True)]
    assert min(ious) > 0.9
    assert np.mean(ious) > np.mean([M.iou(o, t) for o, t in zip(ema, truth, strict=True)])


@pytest.mark.parametrize("name", [*ZERO_LAG, "bidirectional"])
def test_scene_cut_resets_to_the_new_alpha(name: str) -> None:
    # two shots: a dark scene lit from the left, then a bright one lit from the top
    xs = np.linspace(0, 1, 64, dtype=np.float32)[None, :, None]
    ys = np.linspace(0, 1, 48, dtype=np.float32)[:, None, None]
    a = (_textured(seed=2) * 0.3 + 150 * xs).astype(np.uint8)
    b = (_textured(seed=3) * 0.3 + 60 + 120 * ys + 0 * xs).astype(np.uint8)
    old = np.ones(a.shape[:2], np.float32)
    new = np.zeros(a.shape[:2], np.float32)
    new[:, :10] = 1.0
    out = _run(name, [old] * 4 + [new] * 3, [a] * 4 + [b] * 3)
    # nothing of the next shot leaks back into the last frame of this one (look-ahead)
    np.testing.assert_allclose(out[3], old, atol=1e-3)
    if name == "bidirectional":  # its guided refinement may move the edge, not the old matte
        np.testing.assert_allclose(out[4][:, 14:], 0.0, atol=1e-3)
        assert M.iou(out[4], new) > 0.9
    else:
        np.testing.assert_allclose(out[4], new, atol=1e-6)


def test_the_help_texts_say_how_far_the_file_default_looks_ahead() -> None:
    assert T.make_streaming(T.DEFAULT_FILE_MODE).delay == T.DEFAULT_FILE_DELAY


def test_bidirectional_answers_late_but_answers_every_frame() -> None:
    f = T.make_streaming("bidirectional")
    assert f.delay == 10
    frame = _textured()
    alpha = np.zeros(frame.shape[:2], np.float32)
    got = [len(f.push(alpha, frame)) for _ in range(14)]
    assert got == [0] * 10 + [1] * 4
    assert len(f.flush()) == 10
    assert f.flush() == []


@pytest.mark.parametrize("n", [1, 2, 9, 11, 14])
def test_bidirectional_n_pushes_and_a_flush_give_n_outputs_in_order(n: int) -> None:
    frame = _textured(48, 800)  # wider than the working copy: the 640 px path and the upsampling
    f = T.make_streaming("bidirectional")
    out: list[np.ndarray] = []
    for i in range(n):
        out += f.push(np.full(frame.shape[:2], i / 10, np.float32), frame)
    out += f.flush()
    assert len(out) == n
    assert all(o.shape == frame.shape[:2] for o in out)
    # a constant matte per frame, each its own level: the order is the push order
    levels = [float(np.median(o)) for o in out]
    assert levels == sorted(levels)


def _moving_disc(n: int, step: int, h: int = 96, w: int = 400, seed: int = 5
                 ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """A textured disc sliding right over a textured background: frames, the true matte, and
    a per-frame "model" matte whose edge is soft and jitters by up to ±2 px from frame to
    frame, with blotches of noise — the failure mode the look-ahead fusion is for."""
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(rng.integers(0, 255, (h, w + n * step, 3), dtype=np.uint8), (7, 7), 0)
    fg = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (3, 3), 0) // 2 + 128
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    frames, truth, noisy = [], [], []
    for i in range(n):
        cx, cy, r = 120 + i * step, h / 2, 30.0
        dist = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
        t = (dist <= r).astype(np.float32)
        img = bg[:, i:i + w].copy()  # the camera pans a little too
        img[t > 0] = fg[t > 0]
        frames.append(np.asarray(img, np.uint8))
        truth.append(t)
        jitter = rng.uniform(-2.0, 2.0)
        soft = np.clip((r + jitter - dist) / 3.0 + 0.5, 0.0, 1.0)
        blot = cv2.GaussianBlur(rng.normal(0, 0.5, (h, w)).astype(np.float32), (0, 0), 4)
        noisy.append(np.clip(soft + blot * (soft > 0.02) * (soft < 0.98) + 0.0, 0, 1)
                     .astype(np.float32))
    return frames, truth, noisy


def test_bidirectional_steadier_than_per_frame_on_a_moving_shape() -> None:
    frames, truth, noisy = _moving_disc(14, 3)
    out = _run("bidirectional", noisy, frames)

    assert M.iou_and_dtssd(out, truth)[1] < 0.8 * M.iou_and_dtssd(noisy, truth)[1]
    assert np.mean([M.iou(o, t) for o, t in zip(out, truth, strict=True)]) > \
        np.mean([M.iou(a, t) for a, t in zip(noisy, truth, strict=True)]) - 0.005


def test_bidirectional_does_not_lag_a_moving_edge() -> None:
    # clean per-frame mattes of a disc moving 6 px a frame: the output's edge stays with the
    # frame it belongs to (a lagging filter would put its centre of mass behind)
    frames, truth, _ = _moving_disc(12, 6)
    out = _run("bidirectional", truth, frames)
    for o, t in zip(out, truth, strict=True):
        cx_out = float((o * np.arange(o.shape[1])).sum() / o.sum())
        cx_true = float((t * np.arange(t.shape[1])).sum() / t.sum())
        assert abs(cx_out - cx_true) < 1.0
        assert M.iou(o, t) > 0.95


def test_bidirectional_repairs_a_one_frame_dropout() -> None:
    frame = _textured()
    truth = np.zeros(frame.shape[:2], np.float32)
    truth[10:40, 10:50] = 1.0
    alphas = [truth.copy() for _ in range(9)]
    alphas[4] = np.zeros_like(truth)  # the model lost the object for one frame
    out = _run("bidirectional", alphas, [frame] * 9)
    assert M.iou(out[4], truth) > 0.9
    assert M.iou(_run("none", alphas, [frame] * 9)[4], truth) == 0.0


def _model_like(truth: np.ndarray, rng: np.random.Generator, factor: int = 4) -> np.ndarray:
    """A matte as a model gives it: computed at low resolution, noise included, upsampled."""
    h, w = truth.shape
    low = cv2.resize(truth, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    low = np.clip(low + rng.normal(0, 0.08, low.shape), 0, 1).astype(np.float32)
    return np.asarray(cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)


@pytest.mark.parametrize("name", ["adaptive", "flow"])
def test_zero_lag_filters_smooth_wide_frames_at_working_size(name: str) -> None:
    # wider than the 480 px working copy: the blend runs there, full size gets the correction
    frame = _textured(96, 640)
    truth = np.zeros(frame.shape[:2], np.float32)
    truth[20:76, 200:440] = 1.0
    rng = np.random.default_rng(4)
    noisy = [_model_like(truth, rng) for _ in range(20)]
    out = _run(name, noisy, [frame] * 20)
    assert all(o.shape == truth.shape and o.dtype == np.float32 for o in out)
    before = M.flicker_index(noisy, [frame] * 20)
    assert M.flicker_index(out, [frame] * 20) < 0.5 * before


@pytest.mark.parametrize("name", ["adaptive", "flow"])
def test_zero_lag_filters_keep_full_size_detail(name: str) -> None:
    # one-pixel lines (what guided upsampling can leave) on a still scene: a steady matte
    # comes out as it went in, not softened by the working copy
    frame = _textured(96, 640)
    alpha = np.zeros(frame.shape[:2], np.float32)
    alpha[:, 301::7] = 1.0
    for o in _run(name, [alpha] * 5, [frame] * 5):
        np.testing.assert_allclose(o, alpha, atol=1e-5)


def test_size_change_restarts_the_filter() -> None:
    f = T.make_temporal("flow")
    f(np.ones((48, 64), np.float32), _textured())
    small = _textured(24, 32)
    out = f(np.zeros((24, 32), np.float32), small)
    assert out.shape == (24, 32) and float(out.max()) == 0.0


def test_bad_weights_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="ema weight"):
        T.FixedEma(0.0)
    with pytest.raises(ConfigError, match="look-ahead"):
        T.Bidirectional(0)
    with pytest.raises(ConfigError, match="memory"):
        T.Bidirectional(memory=1.0)


def test_real_u2netp_bidirectional_steadier_on_davis(u2netp_path: Path,
                                                     shared_data: Path) -> None:
    """The real model on 16 real frames: dtSSD falls and IoU does not."""
    from streammatte.compose import read_image_rgb
    from streammatte.evaluate import read_mask
    from streammatte.inference import open_engine
    from streammatte.postprocess import Postprocessor
    from streammatte.preprocess import Preprocessor

    seq = shared_data / "davis" / "parkour"
    files = sorted((seq / "frames").glob("*.jpg"))[:16]
    engine = open_engine("u2netp", model_file=u2netp_path, device="cpu")
    pre, post = Preprocessor(engine.input_spec), Postprocessor(engine.output_spec)
    frames, alphas, truth = [], [], []
    for f in files:
        rgb = read_image_rgb(f)
        frames.append(rgb)
        alphas.append(post(engine.infer(pre(rgb)[None])[0], (rgb.shape[1], rgb.shape[0])))
        truth.append(read_mask(seq / "masks" / f"{f.stem}.png"))
    engine.close()

    iou0, dt0 = M.iou_and_dtssd(alphas, truth)
    iou1, dt1 = M.iou_and_dtssd(_run("bidirectional", alphas, frames), truth)
    assert dt1 < 0.95 * dt0
    assert iou1 > iou0 - 0.005


@pytest.mark.parametrize("shape", [(20, 30), (41, 3), (2, 2)])
@pytest.mark.parametrize("mode", T.temporal_modes())
def test_frames_too_small_for_optical_flow_stand_on_their_own(mode: str,
                                                              shape: tuple[int, int]) -> None:
    """DIS refuses images under about 12 px (OpenCV raised out of the chain's stage): below
    ``FLOW_MIN_SIDE`` the flow modes treat every frame as after a cut, each its own alpha."""
    smoother = T.make_streaming(mode)
    rng = np.random.default_rng(3)
    # one still picture: no scene cut, so before the fix the flow modes called DIS on it
    still = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
    frames = [still] * 6
    alphas = [np.full(shape, 0.1 + 0.15 * i, np.float32) for i in range(6)]
    out = []
    for alpha, frame in zip(alphas, frames, strict=True):
        out += smoother.push(alpha, frame)
    out += smoother.flush()
    assert len(out) == len(frames)
    for got, own in zip(out, alphas, strict=True):
        assert got.shape == shape and np.isfinite(got).all()
        if mode in ("flow", "bidirectional", "keyframes", "keyframes-live"):
            np.testing.assert_allclose(got, own, atol=2e-3)
