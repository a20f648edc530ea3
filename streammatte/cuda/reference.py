"""Numpy twins of the CUDA kernels in :mod:`streammatte.cuda.kernels`: same inputs, same
semantics, same rounding. CI tests these (a GPU is not needed); the GPU check compares the
compiled kernels with them.

The resize is written as two weight matrices (rows: output pixels, columns: input pixels), a
formulation independent of the kernels' per-pixel loops, so agreement between the two is a
real check of both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

CompositeMode = Literal["rgb", "rgba", "cutout", "matte"]


def axis_weights(n_in: int, n_out: int, *, allow_area: bool) -> npt.NDArray[np.float64]:
    """(n_out, n_in) weights of one resize axis; each row sums to 1.

    Shrinking with ``allow_area``: each output pixel averages the input span it covers
    (OpenCV INTER_AREA). Otherwise linear interpolation between pixel centres, source
    coordinate ``(o + 0.5)·n_in/n_out − 0.5`` clamped to the edges (OpenCV INTER_LINEAR).
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"axis sizes should be positive, got {n_in} → {n_out}")
    scale = n_in / n_out
    o = np.arange(n_out, dtype=np.float64)[:, None]
    i = np.arange(n_in, dtype=np.float64)[None, :]
    if allow_area and scale > 1.0:
        start, end = o * scale, (o + 1) * scale
        overlap = np.clip(np.minimum(end, i + 1) - np.maximum(start, i), 0.0, None)
        weights: npt.NDArray[np.float64] = overlap / scale
        return weights
    pos = np.clip((o + 0.5) * scale - 0.5, 0.0, n_in - 1)
    linear: npt.NDArray[np.float64] = np.clip(1.0 - np.abs(i - pos), 0.0, None)
    return linear


def resize(images: npt.NDArray[np.generic], size: tuple[int, int], *,
           allow_area: bool = True) -> npt.NDArray[np.float64]:
    """N×H×W[×C] → N×h×w[×C] float64 with ``axis_weights`` on both axes; size is (w, h)."""
    w, h = size
    wy = axis_weights(images.shape[1], h, allow_area=allow_area)
    wx = axis_weights(images.shape[2], w, allow_area=allow_area)
    data = images.astype(np.float64)
    if data.ndim == 3:
        data = data[..., None]
    # rows first (wy @ each column), then columns: two matrix products, not a 4-D einsum
    rows = np.matmul(wy, data.transpose(0, 3, 1, 2))  # N×C×h×W
    out: npt.NDArray[np.float64] = np.matmul(rows, wx.T).transpose(0, 2, 3, 1)  # N×h×w×C
    return out[..., 0] if images.ndim == 3 else out


def preprocess(
    frames: npt.NDArray[np.uint8],
    size: tuple[int, int],
    *,
    mean: Sequence[float] = (0.0, 0.0, 0.0),
    std: Sequence[float] = (1.0, 1.0, 1.0),
    layout: Literal["nchw", "nhwc"] = "nchw",
    dtype: Literal["float32", "float16", "uint8"] = "float32",
    quantize: bool = True,
) -> np.ndarray:
    """Twin of ``sm_preprocess_*``: N×H×W×3(or 4) uint8 → model batch (N×3×h×w for nchw)."""
    if frames.ndim != 4 or frames.shape[3] not in (3, 4) or frames.dtype != np.uint8:
        raise ValueError(f"frames should be N×H×W×3 uint8, got {frames.shape} {frames.dtype}")
    resized = resize(frames[..., :3], size).astype(np.float32)
    if quantize:
        resized = np.clip(np.rint(resized), 0, 255)
    if dtype == "uint8":
        sample: np.ndarray = np.clip(np.rint(resized), 0, 255).astype(np.uint8)
    else:
        std32 = np.asarray(std, dtype=np.float32)
        scale = (1.0 / (255.0 * std32)).astype(np.float32)
        offset = (-np.asarray(mean, dtype=np.float32) / std32).astype(np.float32)
        sample = (resized * scale + offset).astype(dtype)
    if layout == "nchw":
        sample = np.ascontiguousarray(sample.transpose(0, 3, 1, 2))
    return sample


def alpha_resize(raw: np.ndarray, size: tuple[int, int], *,
                 sigmoid: bool = False) -> npt.NDArray[np.float32]:
    """Twin of ``sm_alpha_*``: N×h×w raw output (one channel) → N×H×W alpha in [0, 1]."""
    if raw.ndim != 3:
        raise ValueError(f"raw output should be N×h×w (one channel), got shape {raw.shape}")
    pred: npt.NDArray[np.float32] = raw.astype(np.float32)
    if sigmoid:
        pred = (1.0 / (1.0 + np.exp(-pred))).astype(np.float32)
    pred = np.clip(pred, 0.0, 1.0)
    out: npt.NDArray[np.float32] = resize(pred, size, allow_area=False).astype(np.float32)
    return out


def ema(state: npt.NDArray[np.float32] | None, alpha: npt.NDArray[np.float32],
        new_weight: float) -> npt.NDArray[np.float32]:
    """Twin of ``sm_ema``: the new state (which is also the smoothed alpha)."""
    if state is None:
        return alpha.astype(np.float32, copy=True)
    delta = (alpha - state).astype(np.float32)
    step = (np.float32(new_weight) * delta).astype(np.float32)
    out: npt.NDArray[np.float32] = (state + step).astype(np.float32)
    return out


def composite(
    frames: npt.NDArray[np.uint8],
    alphas: npt.NDArray[np.float32],
    *,
    mode: CompositeMode,
    colour: tuple[int, int, int] = (0, 0, 0),
    background: npt.NDArray[np.uint8] | None = None,
) -> npt.NDArray[np.uint8]:
    """Twin of ``sm_composite``: N×H×W×3 frames and N×H×W alphas → N×H×W×3 (rgb),
    N×H×W×4 (rgba, cutout) or N×H×W (matte)."""
    scaled = alphas.astype(np.float32) * np.float32(255) + np.float32(0.5)
    a8: npt.NDArray[np.uint8] = np.clip(scaled, 0, 255).astype(np.uint8)
    if mode == "matte":
        return a8
    if mode == "cutout":
        cut: npt.NDArray[np.uint8] = np.concatenate([frames, a8[..., None]], axis=3)
        return cut
    if background is not None:
        back = np.broadcast_to(background.astype(np.float32), frames.shape)
    else:
        back = np.broadcast_to(np.asarray(colour, dtype=np.float32), frames.shape)
    fg = frames.astype(np.float32)
    mixed = back + (fg - back) * alphas[..., None].astype(np.float32)
    rgb: npt.NDArray[np.uint8] = np.clip(mixed + np.float32(0.5), 0, 255).astype(np.uint8)
    if mode == "rgb":
        return rgb
    opaque = np.full((*rgb.shape[:3], 1), 255, np.uint8)
    rgba: npt.NDArray[np.uint8] = np.concatenate([rgb, opaque], axis=3)
    return rgba
