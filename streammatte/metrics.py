"""Matte quality and temporal stability metrics.

Every function takes alphas as H×W float arrays in [0, 1] (1 is foreground; uint8 masks are
accepted and divided by 255) and returns a plain float. Scales follow RobustVideoMatting's
evaluation scripts (``evaluation/evaluate_hr.py``), so numbers can be set beside published ones:

========================  =======================================================  ==========
metric                    definition                                               reported
========================  =======================================================  ==========
``mad``                   mean |p − t|                                             × 1e3
``mse``                   mean (p − t)²                                            × 1e3
``sad``                   Σ |p − t|                                                ÷ 1e3
``gradient_error``        Σ (‖∇G_σ p‖ − ‖∇G_σ t‖)², σ = 1.4, after min–max norm    ÷ 1e3
``connectivity_error``    Σ |φ(p) − φ(t)|, step 0.1, θ = 0.15 (Rhemann et al.)     ÷ 1e3
``dtssd``                 √(Σ ((p_t − p_{t−1}) − (t_t − t_{t−1}))² / N)             × 1e2
``iou``                   |P ∩ T| / |P ∪ T| on masks thresholded at 0.5            ratio
``f_score``               (1 + β²)·P·R / (β²·P + R), β² = 0.3, threshold 0.5        ratio
``edge_accuracy``         F-measure of Sobel edge pixels, matched within a         ratio
                          tolerance (a boundary F-measure)
``flicker_index``         mean |α_t − α_{t−1}| where the frame did not change      × 1e3
========================  =======================================================  ==========

Empty masks never divide by zero; their values are defined, not NaN:

- ``iou``, ``f_score``, ``edge_accuracy``: both empty (no foreground, or no edges) → 1.0 (the
  prediction agrees perfectly); exactly one empty → 0.0.
- ``flicker_index``: no unchanged pixel anywhere in the clip → 0.0 (nothing to measure);
  ``flicker_pair`` reports the pixel count so a caller can tell.
- ``gradient_error``: a constant map normalises to zeros (OpenCV's NORM_MINMAX convention).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from .frames import Alpha

FloatArray = npt.NDArray[np.float32]

#: β² of the F-measure, as in salient object detection (Achanta et al. 2009)
F_BETA2 = 0.3
#: alpha above this is foreground for the mask metrics
MASK_THRESHOLD = 0.5


def as_alpha(a: npt.ArrayLike) -> Alpha:
    """A float32 alpha in [0, 1] from float alpha or a uint8 0–255 mask."""
    arr = np.asarray(a)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise ValueError(f"an alpha should be H×W, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) / 255.0).astype(np.float32)
    if arr.dtype == np.uint16:
        return (arr.astype(np.float32) / 65535.0).astype(np.float32)
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    return arr.astype(np.float32, copy=False)


def _pair(pred: npt.ArrayLike, true: npt.ArrayLike) -> tuple[Alpha, Alpha]:
    p, t = as_alpha(pred), as_alpha(true)
    if p.shape != t.shape:
        raise ValueError(f"prediction and ground truth differ in shape: {p.shape} != {t.shape}")
    return p, t


def _ratio(num: float, den: float, *, both_empty: float) -> float:
    return both_empty if den == 0 else num / den


# -- matting errors (RVM scales) ------------------------------------------------------------

def mad(pred: npt.ArrayLike, true: npt.ArrayLike) -> float:
    """Mean absolute difference × 1e3."""
    p, t = _pair(pred, true)
    return float(np.abs(p - t).mean(dtype=np.float64) * 1e3)


def mse(pred: npt.ArrayLike, true: npt.ArrayLike) -> float:
    """Mean squared error × 1e3."""
    p, t = _pair(pred, true)
    return float(((p - t) ** 2).mean(dtype=np.float64) * 1e3)


def sad(pred: npt.ArrayLike, true: npt.ArrayLike) -> float:
    """Sum of absolute differences ÷ 1e3."""
    p, t = _pair(pred, true)
    return float(np.abs(p - t).sum(dtype=np.float64) / 1e3)


def _gauss_derivative_filters(sigma: float, epsilon: float = 1e-2) -> tuple[FloatArray, FloatArray]:
    half = math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2 * math.pi) * sigma * epsilon)))
    r = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-(r**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    dg = -r * g / sigma**2
    fx = np.outer(g, dg)  # rows smooth, columns differentiate
    fx /= math.sqrt(float((fx**2).sum()))
    return fx.astype(np.float32), fx.T.copy().astype(np.float32)


_GRAD_FILTERS: dict[float, tuple[FloatArray, FloatArray]] = {}


def _gauss_gradient(a: FloatArray, sigma: float) -> FloatArray:
    if sigma not in _GRAD_FILTERS:
        _GRAD_FILTERS[sigma] = _gauss_derivative_filters(sigma)
    fx, fy = _GRAD_FILTERS[sigma]
    gx = cv2.filter2D(a, -1, fx, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.filter2D(a, -1, fy, borderType=cv2.BORDER_REPLICATE)
    out: FloatArray = np.sqrt(gx**2 + gy**2).astype(np.float32)
    return out


def _minmax(a: Alpha) -> FloatArray:
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros_like(a)
    return ((a - lo) / (hi - lo)).astype(np.float32)


def gradient_error(pred: npt.ArrayLike, true: npt.ArrayLike, sigma: float = 1.4) -> float:
    """Squared difference of Gaussian-derivative gradient magnitudes, summed, ÷ 1e3."""
    p, t = _pair(pred, true)
    dp = _gauss_gradient(_minmax(p), sigma)
    dt = _gauss_gradient(_minmax(t), sigma)
    return float(((dt - dp) ** 2).sum(dtype=np.float64) / 1e3)


def connectivity_error(pred: npt.ArrayLike, true: npt.ArrayLike, step: float = 0.1) -> float:
    """Connectivity error (Rhemann et al. 2009) ÷ 1e3.

    For each threshold the largest 4-connected component where both mattes reach it is
    "connected"; a pixel's level ℓ is the highest threshold at which it still was. Pixels whose
    alpha exceeds ℓ by ≥ 0.15 lose connectivity: φ = 1 − (α − ℓ)·[α − ℓ ≥ 0.15].
    """
    p, t = _pair(pred, true)
    steps = np.arange(0.0, 1.0 + step, step)
    level = np.full(t.shape, -1.0, dtype=np.float32)
    for i in range(1, len(steps)):
        both = ((t >= steps[i]) & (p >= steps[i])).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(both, connectivity=4)
        omega = np.zeros(t.shape, dtype=bool)
        if count > 1:
            largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            omega = labels == largest
        newly_lost = (level == -1) & ~omega
        level[newly_lost] = steps[i - 1]
    level[level == -1] = 1.0
    dt, dp = t - level, p - level
    phi_t = 1.0 - dt * (dt >= 0.15)
    phi_p = 1.0 - dp * (dp >= 0.15)
    return float(np.abs(phi_t - phi_p).sum(dtype=np.float64) / 1e3)


def dtssd(pred_t: npt.ArrayLike, pred_prev: npt.ArrayLike, true_t: npt.ArrayLike,
          true_prev: npt.ArrayLike) -> float:
    """Temporal coherence error between consecutive frames (× 1e2): how much the prediction's
    change differs from the ground truth's change."""
    p, t = _pair(pred_t, true_t)
    pp, tp = _pair(pred_prev, true_prev)
    if p.shape != pp.shape:
        raise ValueError(f"consecutive frames differ in shape: {pp.shape} != {p.shape}")
    d = (p - pp) - (t - tp)
    return float(math.sqrt(float((d.astype(np.float64) ** 2).sum()) / t.size) * 1e2)


def iou_and_dtssd(preds: Sequence[npt.ArrayLike], truths: Sequence[npt.ArrayLike]
                  ) -> tuple[float, float]:
    """A clip's (mean IoU over its frames, mean dtSSD over its consecutive pairs), the two
    figures the temporal modes are judged by."""
    if len(preds) != len(truths) or len(preds) < 2:
        raise ValueError(f"need as many predictions as truths, two or more: {len(preds)} "
                         f"and {len(truths)}")
    ious = [iou(p, t) for p, t in zip(preds, truths, strict=True)]
    dts = [dtssd(preds[i], preds[i - 1], truths[i], truths[i - 1])
           for i in range(1, len(preds))]
    return float(np.mean(ious)), float(np.mean(dts))


# -- mask metrics ---------------------------------------------------------------------------

def _mask(a: Alpha, threshold: float) -> npt.NDArray[np.bool_]:
    return np.asarray(a >= threshold)


def iou(pred: npt.ArrayLike, true: npt.ArrayLike, threshold: float = MASK_THRESHOLD) -> float:
    """Intersection over union of the thresholded masks; both empty → 1.0."""
    p, t = _pair(pred, true)
    pm, tm = _mask(p, threshold), _mask(t, threshold)
    inter = int(np.count_nonzero(pm & tm))
    union = int(np.count_nonzero(pm | tm))
    return _ratio(inter, union, both_empty=1.0)


def _f_measure(tp: float, n_pred: float, n_true: float, beta2: float) -> float:
    if n_pred == 0 and n_true == 0:
        return 1.0
    if n_pred == 0 or n_true == 0 or tp == 0:
        return 0.0
    precision, recall = tp / n_pred, tp / n_true
    return (1 + beta2) * precision * recall / (beta2 * precision + recall)


def f_score(pred: npt.ArrayLike, true: npt.ArrayLike, beta2: float = F_BETA2,
            threshold: float = MASK_THRESHOLD) -> float:
    """F-measure of the thresholded masks, β² = 0.3 (precision weighted above recall).

    Both empty → 1.0; one empty, or no overlap → 0.0.
    """
    p, t = _pair(pred, true)
    pm, tm = _mask(p, threshold), _mask(t, threshold)
    tp = int(np.count_nonzero(pm & tm))
    return _f_measure(tp, int(np.count_nonzero(pm)), int(np.count_nonzero(tm)), beta2)


def sobel_edges(a: npt.ArrayLike, threshold: float = MASK_THRESHOLD) -> npt.NDArray[np.bool_]:
    """Edge pixels of an alpha: where the Sobel gradient of its thresholded mask is non-zero.

    Thresholding first makes the edge a 2-pixel band at the 0.5 contour whatever the softness
    of the matte, so a soft prediction is not rewarded or punished for a wider ramp.
    """
    m = _mask(as_alpha(a), threshold).astype(np.float32)
    gx = cv2.Sobel(m, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(m, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    return np.asarray((np.abs(gx) + np.abs(gy)) > 0)


def edge_accuracy(pred: npt.ArrayLike, true: npt.ArrayLike, tolerance_px: int = 2) -> float:
    """Boundary F-measure (β² = 1) of Sobel edges: a predicted edge pixel counts as correct when
    a true edge lies within ``tolerance_px`` (chessboard distance), and vice versa for recall.

    No edges in either → 1.0; edges in only one → 0.0.
    """
    p, t = _pair(pred, true)
    ep, et = sobel_edges(p), sobel_edges(t)
    n_pred, n_true = int(np.count_nonzero(ep)), int(np.count_nonzero(et))
    if n_pred == 0 or n_true == 0:
        return 1.0 if n_pred == n_true else 0.0
    k = np.ones((2 * tolerance_px + 1, 2 * tolerance_px + 1), np.uint8)
    near_t = cv2.dilate(et.astype(np.uint8), k).astype(bool)
    near_p = cv2.dilate(ep.astype(np.uint8), k).astype(bool)
    precision = np.count_nonzero(ep & near_t) / n_pred
    recall = np.count_nonzero(et & near_p) / n_true
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def boundary_band(true: npt.ArrayLike, width_px: int = 10) -> npt.NDArray[np.bool_]:
    """Pixels within ``width_px`` of the ground truth's 0.5 contour (a trimap's unknown band)."""
    edges = sobel_edges(true).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width_px + 1, 2 * width_px + 1))
    return np.asarray(cv2.dilate(edges, k) > 0)


def boundary_mad(pred: npt.ArrayLike, true: npt.ArrayLike, width_px: int = 10) -> float:
    """MAD (× 1e3) inside the band around the true boundary, where upsampling and refinement
    make their difference; no boundary → 0.0."""
    p, t = _pair(pred, true)
    band = boundary_band(t, width_px)
    n = int(np.count_nonzero(band))
    return 0.0 if n == 0 else float(np.abs(p - t)[band].mean(dtype=np.float64) * 1e3)


# -- stability without ground truth ---------------------------------------------------------

#: grey-level change (0–255) below which a pixel counts as unchanged; above codec noise
STILL_THRESHOLD = 6.0


def still_pixels(frame: npt.ArrayLike, prev_frame: npt.ArrayLike,
                 threshold: float = STILL_THRESHOLD) -> npt.NDArray[np.bool_]:
    """Pixels whose luma changed less than ``threshold`` (after a 5×5 blur against codec noise),
    eroded by 2 pixels so the borders of moving objects are left out."""
    a, b = np.asarray(frame), np.asarray(prev_frame)
    if a.shape != b.shape:
        raise ValueError(f"consecutive frames differ in shape: {b.shape} != {a.shape}")
    ga = cv2.GaussianBlur(_luma(a), (5, 5), 0)
    gb = cv2.GaussianBlur(_luma(b), (5, 5), 0)
    still = (np.abs(ga - gb) < threshold).astype(np.uint8)
    return np.asarray(cv2.erode(still, np.ones((5, 5), np.uint8)) > 0)


def _luma(frame: np.ndarray) -> FloatArray:
    if frame.ndim == 2:
        return frame.astype(np.float32)
    f = frame.astype(np.float32)
    out: FloatArray = (0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2])
    return out.astype(np.float32)


def flicker_pair(alpha: npt.ArrayLike, prev_alpha: npt.ArrayLike, still: npt.ArrayLike
                 ) -> tuple[float, int]:
    """(Σ |α_t − α_{t−1}| over still pixels, number of still pixels) for one frame pair."""
    a, b = _pair(alpha, prev_alpha)
    m = np.asarray(still, dtype=bool)
    if m.shape != a.shape:
        raise ValueError(f"still-pixel mask shape {m.shape} != alpha shape {a.shape}")
    n = int(np.count_nonzero(m))
    return (float(np.abs(a - b)[m].sum(dtype=np.float64)) if n else 0.0), n


def flicker_index(alphas: Iterable[npt.ArrayLike], frames: Iterable[npt.ArrayLike],
                  threshold: float = STILL_THRESHOLD) -> float:
    """Mean |Δα| (× 1e3) over every pixel of every frame pair where the frame did not change:
    there the true matte did not change either, so any change of the prediction is flicker.
    Pooled over the clip; no still pixel at all → 0.0."""
    acc = FlickerAccumulator(threshold)
    for a, f in zip(alphas, frames, strict=True):
        acc.add(a, f)
    return acc.value


class FlickerAccumulator:
    """``flicker_index`` one frame at a time (for streams that do not fit in memory)."""

    def __init__(self, threshold: float = STILL_THRESHOLD) -> None:
        self.threshold = threshold
        self.total = 0.0
        self.pixels = 0
        self.per_frame: list[float] = []
        self._prev: tuple[Alpha, np.ndarray] | None = None

    def add(self, alpha: npt.ArrayLike, frame: npt.ArrayLike) -> None:
        a, f = as_alpha(alpha), np.asarray(frame)
        if self._prev is not None:
            s, n = flicker_pair(a, self._prev[0], still_pixels(f, self._prev[1], self.threshold))
            self.total += s
            self.pixels += n
            self.per_frame.append(s / n * 1e3 if n else 0.0)
        self._prev = (a, f)

    @property
    def value(self) -> float:
        return self.total / self.pixels * 1e3 if self.pixels else 0.0


# -- a clip against its ground truth --------------------------------------------------------

#: metric names in report order, with the scale they are reported at
METRIC_UNITS: dict[str, str] = {
    "iou": "",
    "f_score": "β²=0.3",
    "edge_acc": "F, ±2 px",
    "mad": "×1e3",
    "mse": "×1e3",
    "sad": "÷1e3",
    "grad": "÷1e3",
    "conn": "÷1e3",
    "boundary_mad": "×1e3, 10 px band",
    "dtssd": "×1e2",
}


@dataclass(slots=True)
class FrameScores:
    """All per-frame metrics of one prediction against its ground truth."""

    iou: float
    f_score: float
    edge_acc: float
    mad: float
    mse: float
    sad: float
    grad: float
    conn: float
    boundary_mad: float
    dtssd: float | None  # None for the first frame of a clip


def score_frame(pred: npt.ArrayLike, true: npt.ArrayLike,
                prev: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
                *, slow_metrics: bool = True) -> FrameScores:
    """Every metric for one frame; ``prev`` = (previous prediction, previous truth) for dtSSD.
    ``slow_metrics=False`` skips gradient and connectivity (reported as NaN)."""
    p, t = _pair(pred, true)
    return FrameScores(
        iou=iou(p, t), f_score=f_score(p, t), edge_acc=edge_accuracy(p, t), mad=mad(p, t),
        mse=mse(p, t), sad=sad(p, t),
        grad=gradient_error(p, t) if slow_metrics else math.nan,
        conn=connectivity_error(p, t) if slow_metrics else math.nan,
        boundary_mad=boundary_mad(p, t),
        dtssd=None if prev is None else dtssd(p, prev[0], t, prev[1]),
    )


def mean_scores(scores: Sequence[FrameScores]) -> dict[str, float]:
    """Per-metric means over a clip (dtSSD over the frame pairs); an empty clip → NaN."""
    out: dict[str, float] = {}
    for name in METRIC_UNITS:
        values = [getattr(s, name) for s in scores if getattr(s, name) is not None]
        out[name] = float(np.mean(values)) if values else math.nan
    return out
