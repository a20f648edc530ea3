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
