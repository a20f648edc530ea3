"""Every metric on cases small enough to compute by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streammatte import metrics as M


def _mask(rows: list[str]) -> np.ndarray:
    return np.array([[1.0 if c == "#" else 0.0 for c in r] for r in rows], np.float32)


PRED = _mask(["##..",
              "##..",
              "....",
              "...."])
TRUE = _mask(["#...",
              "#...",
              "#...",
              "...."])


def test_iou_counts_intersection_over_union() -> None:
    # intersection 2 (left column, top two rows), union 4 + 3 − 2 = 5
    assert M.iou(PRED, TRUE) == pytest.approx(2 / 5)


def test_iou_thresholds_soft_alpha_at_half() -> None:
    assert M.iou(PRED * 0.6, TRUE * 0.9) == pytest.approx(2 / 5)
    assert M.iou(PRED * 0.4, TRUE) == 0.0


def test_iou_and_f_score_of_empty_masks_are_defined() -> None:
    empty = np.zeros((4, 4), np.float32)
    assert M.iou(empty, empty) == 1.0
    assert M.f_score(empty, empty) == 1.0
    assert M.iou(empty, TRUE) == 0.0
    assert M.f_score(empty, TRUE) == 0.0
    assert M.f_score(TRUE, empty) == 0.0


def test_f_score_weights_precision_with_beta2_0_3() -> None:
    # precision 2/4, recall 2/3: F = 1.3·P·R / (0.3·P + R)
    p, r = 0.5, 2 / 3
    assert M.f_score(PRED, TRUE) == pytest.approx(1.3 * p * r / (0.3 * p + r))
    assert M.f_score(PRED, TRUE, beta2=1.0) == pytest.approx(2 * p * r / (p + r))


def test_uint8_masks_are_read_as_0_to_255() -> None:
    assert M.iou((PRED * 255).astype(np.uint8), TRUE) == pytest.approx(2 / 5)


def test_mad_mse_sad_at_rvm_scales() -> None:
    pred = np.full((4, 4), 0.5, np.float32)
    # |0.5 − t| = 0.5 everywhere
    assert M.mad(pred, TRUE) == pytest.approx(500.0)
    assert M.mse(pred, TRUE) == pytest.approx(250.0)
    assert M.sad(pred, TRUE) == pytest.approx(16 * 0.5 / 1e3)
    assert M.mad(TRUE, TRUE) == 0.0


def test_dtssd_measures_change_unlike_the_truths_change() -> None:
    true = np.zeros((4, 4), np.float32)
    prev = np.zeros((4, 4), np.float32)
    cur = np.full((4, 4), 0.1, np.float32)
    # prediction rose by 0.1 while the truth stood still: √(Σ 0.01 / 16) × 100 = 10
    assert M.dtssd(cur, prev, true, true) == pytest.approx(10.0)
    # the same change in both: no temporal error
    assert M.dtssd(cur, prev, cur, prev) == 0.0


def test_gradient_error_zero_for_identical_and_scale_free() -> None:
    ramp = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (16, 1))
    assert M.gradient_error(ramp, ramp) == 0.0
    # min–max normalisation makes a scaled copy score as identical
    assert M.gradient_error(ramp * 0.5, ramp) == pytest.approx(0.0, abs=1e-9)


def test_gradient_error_of_constant_prediction_is_truths_gradient_energy() -> None:
    step = np.zeros((16, 16), np.float32)
    step[:, 8:] = 1.0
    flat = np.full((16, 16), 0.3, np.float32)
    expected = float((M._gauss_gradient(step, 1.4) ** 2).sum()) / 1e3
    assert expected > 0
    assert M.gradient_error(flat, step) == pytest.approx(expected, rel=1e-5)


def test_connectivity_error_by_hand() -> None:
    true = np.ones((1, 5), np.float32)
    pred = np.array([[1, 1, 0, 1, 1]], np.float32)
    # the largest connected piece is pixels 0–1; pixels 2–4 lose connectivity at level 0:
    # φ_true = [1, 1, 0, 0, 0], φ_pred = [1, 1, 1, 0, 0] → Σ|Δφ| = 1, reported ÷ 1e3
    assert M.connectivity_error(pred, true) == pytest.approx(1e-3)
    assert M.connectivity_error(true, true) == 0.0


def test_sobel_edges_mark_the_two_pixel_band_at_the_contour() -> None:
    step = np.zeros((6, 6), np.float32)
    step[:, 3:] = 1.0
    edges = M.sobel_edges(step)
    assert edges[:, 2].all() and edges[:, 3].all()
    assert not edges[:, [0, 1, 4, 5]].any()


def test_edge_accuracy_tolerates_small_shifts_only() -> None:
    true = np.zeros((40, 40), np.float32)
    true[10:30, 10:30] = 1
    near = np.roll(true, 1, axis=1)
    far = np.roll(true, 8, axis=1)
    assert M.edge_accuracy(true, true) == 1.0
    assert M.edge_accuracy(near, true, tolerance_px=2) == 1.0
    assert M.edge_accuracy(near, true, tolerance_px=0) < 1.0
    assert M.edge_accuracy(far, true) < 0.6


def test_edge_accuracy_without_edges_is_defined() -> None:
    empty = np.zeros((8, 8), np.float32)
    full = np.ones((8, 8), np.float32)
    assert M.edge_accuracy(empty, empty) == 1.0
    assert M.edge_accuracy(empty, full) == 1.0  # neither has an edge
    assert M.edge_accuracy(np.pad(TRUE, 2), empty) == 0.0


def test_boundary_mad_looks_only_near_the_contour() -> None:
    true = np.zeros((40, 40), np.float32)
    true[:, 20:] = 1
    pred = true.copy()
    pred[:, 0] = 1.0  # far from the contour: ignored
    assert M.boundary_mad(pred, true, width_px=3) == 0.0
    pred[:, 19] = 1.0  # a column inside the band (band is columns 16–23: 8 wide)
    assert M.boundary_mad(pred, true, width_px=3) == pytest.approx(1 / 8 * 1e3)
    assert M.boundary_mad(np.zeros_like(true), np.zeros_like(true)) == 0.0


def test_flicker_index_counts_only_still_pixels() -> None:
    frame = np.full((32, 32, 3), 100, np.uint8)
    a0 = np.zeros((32, 32), np.float32)
    a1 = np.full((32, 32), 0.1, np.float32)
    # frame unchanged everywhere: mean |Δα| = 0.1 → 100 (× 1e3)
    assert M.flicker_index([a0, a1], [frame, frame]) == pytest.approx(100.0)
    moved = frame.copy()
    moved[:, :16] = 200
    s, n = M.flicker_pair(a1, a0, M.still_pixels(moved, frame))
    assert 0 < n < 32 * 32 // 2  # the changed half and a 2-pixel margin are excluded
    assert s / n == pytest.approx(0.1)


def test_flicker_index_with_nothing_still_is_zero_not_nan() -> None:
    black = np.zeros((16, 16, 3), np.uint8)
    white = np.full((16, 16, 3), 255, np.uint8)
    a0, a1 = np.zeros((16, 16), np.float32), np.ones((16, 16), np.float32)
    assert M.flicker_index([a0, a1], [black, white]) == 0.0


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(4, 4\) != \(5, 4\)"):
        M.iou(PRED, np.zeros((5, 4), np.float32))


def test_score_frame_and_means() -> None:
    first = M.score_frame(PRED, TRUE)
    second = M.score_frame(PRED, TRUE, prev=(PRED, TRUE))
    assert first.dtssd is None and second.dtssd == 0.0
    means = M.mean_scores([first, second])
    assert means["iou"] == pytest.approx(0.4)
    assert means["dtssd"] == 0.0
    assert math.isnan(M.mean_scores([])["iou"])


def test_iou_and_dtssd_average_a_clip() -> None:
    truth = [np.zeros((4, 4), np.float32) for _ in range(3)]
    for i, t in enumerate(truth):
        t[:, : i + 1] = 1.0
    pred = [t.copy() for t in truth]
    pred[2][:, :] = 1.0  # the last frame: all foreground
    iou, dt = M.iou_and_dtssd(pred, truth)
    assert iou == pytest.approx((1 + 1 + M.iou(pred[2], truth[2])) / 3)
    assert dt == pytest.approx(M.dtssd(pred[2], pred[1], truth[2], truth[1]) / 2)
    assert M.iou_and_dtssd(truth, truth) == (1.0, 0.0)
    with pytest.raises(ValueError, match="as many predictions as truths"):
        M.iou_and_dtssd(pred[:2], truth)
