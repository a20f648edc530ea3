"""Guided upsampling against bilinear, on boundary metrics; colour decontamination."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streammatte import metrics as M
from streammatte import refine as R
from streammatte.errors import ConfigError


def _disc_scene(size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc on a dark textured background: (RGB frame, true alpha)."""
    yy, xx = np.mgrid[0:size, 0:size]
    truth = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size / 3) ** 2).astype(np.float32)
    rng = np.random.default_rng(0)
    bg = rng.integers(10, 60, (size, size, 3), dtype=np.uint8)
    frame = np.where(truth[..., None] > 0, np.uint8(220), bg).astype(np.uint8)
    return frame, truth


def test_guided_upsampling_snaps_edges_to_the_frame() -> None:
    frame, truth = _disc_scene()
    low = np.asarray(cv2.resize(truth, (40, 40), interpolation=cv2.INTER_AREA), np.float32)
    bilinear = R.upsample(low, frame, "bilinear")
    guided = R.upsample(low, frame, "guided")
    assert guided.shape == truth.shape and guided.dtype == np.float32
    assert M.boundary_mad(guided, truth) < 0.6 * M.boundary_mad(bilinear, truth)
    assert M.edge_accuracy(guided, truth, tolerance_px=1) >= M.edge_accuracy(
        bilinear, truth, tolerance_px=1)


def _reference_guided(alpha: np.ndarray, frame: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al.'s colour guided filter written out plainly (float64, np.linalg.solve per
    pixel), at the alpha's size, then the coefficients upsampled: what the fast closed-form
    version must reproduce."""
    h, w = frame.shape[:2]
    lh, lw = alpha.shape
    guide = cv2.resize(frame, (lw, lh), interpolation=cv2.INTER_AREA).astype(np.float64) / 255

    def box(x: np.ndarray) -> np.ndarray:
        return np.asarray(cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1),
                                        borderType=cv2.BORDER_REFLECT))

    p = alpha.astype(np.float64)
    mi, mp = box(guide), box(p)
    cov = box(guide * p[..., None]) - mi * mp[..., None]
    var = np.empty((lh, lw, 3, 3))
    for i in range(3):
        for j in range(3):
            var[..., i, j] = box(guide[..., i] * guide[..., j]) - mi[..., i] * mi[..., j]
    a = np.linalg.solve(var + eps * np.eye(3), cov[..., None])[..., 0]
    b = mp - (a * mi).sum(-1)
    a_up = cv2.resize(box(a), (w, h), interpolation=cv2.INTER_LINEAR)
    b_up = cv2.resize(box(b), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(np.clip((a_up * frame.astype(np.float64) / 255).sum(-1) + b_up, 0, 1))


def test_fast_guided_filter_matches_the_plain_formulation() -> None:
    frame, truth = _disc_scene(120)
    frame = np.asarray(cv2.GaussianBlur(frame, (5, 5), 0), np.uint8)
    low = np.asarray(cv2.resize(truth, (40, 40), interpolation=cv2.INTER_AREA), np.float32)
    for r, eps in [(1, 1e-4), (2, 1e-2)]:
        ref = _reference_guided(low, frame, r, eps)
        fast = R.guided_upsample(low, frame, radius=r, eps=eps)
        # float32 closed-form inverse vs float64 solve: equal up to rounding in a few
        # near-singular windows
        np.testing.assert_allclose(fast, ref, atol=5e-3)
        assert float(np.abs(fast - ref).mean()) < 1e-4


def test_guided_upsampling_keeps_a_flat_matte_flat() -> None:
    frame, _ = _disc_scene(64)
    out = R.guided_upsample(np.full((16, 16), 0.25, np.float32), frame)
    np.testing.assert_allclose(out, 0.25, atol=1e-3)


def test_guided_output_stays_in_range() -> None:
    frame, truth = _disc_scene(64)
    out = R.guided_upsample(truth[::4, ::4], frame, eps=1e-6)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_bad_parameters_are_config_errors() -> None:
    frame, truth = _disc_scene(32)
    with pytest.raises(ConfigError, match="radius"):
        R.guided_upsample(truth, frame, radius=0)
    with pytest.raises(ConfigError, match="unknown upsampler 'cubic'"):
        R.upsample(truth, frame, "cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="H×W×3"):
        R.guided_upsample(truth, frame[..., 0])


def test_decontamination_removes_the_old_background_from_soft_edges() -> None:
    h, w = 32, 64
    alpha = np.tile(np.clip(np.linspace(-0.5, 1.5, w, dtype=np.float32), 0, 1), (h, 1))
    red, green = np.array([220, 30, 30], np.float32), np.array([0, 200, 0], np.float32)
    frame = (alpha[..., None] * red + (1 - alpha[..., None]) * green).round().astype(np.uint8)
    fg = R.decontaminate(frame, alpha)
    edge = (alpha > 0.2) & (alpha < 0.8)
    spill_before = float(frame[edge][:, 1].mean())
    spill_after = float(fg[edge][:, 1].mean())
    assert spill_before > 70
    assert spill_after < 50
    solid = alpha >= 0.98
    np.testing.assert_array_equal(fg[solid], frame[solid])


def test_decontaminate_checks_sizes() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        R.decontaminate(np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4), np.float32))


def test_real_u2netp_guided_beats_bilinear_on_davis_boundaries(
        u2netp_path: Path, shared_data: Path) -> None:
    from streammatte.compose import read_image_rgb
    from streammatte.evaluate import read_mask
    from streammatte.inference import open_engine
    from streammatte.postprocess import Postprocessor
    from streammatte.preprocess import Preprocessor

    seq = shared_data / "davis" / "parkour"
    files = sorted((seq / "frames").glob("*.jpg"))[20:26]
    engine = open_engine("u2netp", model_file=u2netp_path, device="cpu")
    pre, post = Preprocessor(engine.input_spec), Postprocessor(engine.output_spec)
    bil, gui = [], []
    for f in files:
        rgb = read_image_rgb(f)
        raw = engine.infer(pre(rgb)[None])[0]
        low = post(raw, (raw.shape[-1], raw.shape[-2]))
        truth = read_mask(seq / "masks" / f"{f.stem}.png")
        bil.append(M.boundary_mad(R.upsample(low, rgb, "bilinear"), truth))
        gui.append(M.boundary_mad(R.upsample(low, rgb, "guided"), truth))
    engine.close()
    assert np.mean(gui) < np.mean(bil)
