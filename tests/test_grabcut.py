"""GrabCut baseline: finds a clear object from a box, follows it, resets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from media import square_frame

from streammatte import metrics as M
from streammatte.errors import ConfigError
from streammatte.inference import open_engine
from streammatte.inference.grabcut import GrabCutEngine


def _scene(shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    h, w = 96, 128
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
    frame[..., 1] //= 2
    truth = np.zeros((h, w), np.float32)
    truth[30:70, 44 + shift:84 + shift] = 1.0
    frame[truth > 0] = (240, 200, 40)
    return frame, truth


def test_registered_as_builtin() -> None:
    engine = open_engine("grabcut")
    assert isinstance(engine, GrabCutEngine) and engine.stateful


def test_cuts_the_object_inside_the_centred_box() -> None:
    frame, truth = _scene()
    out = GrabCutEngine().infer(frame[None])
    assert out.shape == (1, 96, 128) and out.dtype == np.float32
    assert M.iou(out[0], truth) > 0.9


def test_follows_the_object_from_frame_to_frame() -> None:
    engine = GrabCutEngine()
    ious = []
    for step in range(6):
        frame, truth = _scene(shift=3 * step)
        ious.append(M.iou(engine.infer(frame[None])[0], truth))
    assert min(ious) > 0.85


def test_user_box_selects_the_object() -> None:
    pairs = [square_frame(0, 160, 96)]
    frame, truth = pairs[0]
    ys, xs = np.nonzero(truth)
    box = (int(xs.min()) - 4, int(ys.min()) - 4, int(np.ptp(xs)) + 9, int(np.ptp(ys)) + 9)
    out = GrabCutEngine(box=box).infer(frame[None])[0]
    assert M.iou(out, truth) > 0.8


def test_reset_goes_back_to_the_box() -> None:
    engine = GrabCutEngine()
    frame, _ = _scene()
    first = engine.infer(frame[None])[0]
    engine.infer(np.zeros_like(frame)[None])  # object gone: state is empty
    engine.reset()
    np.testing.assert_array_equal(engine.infer(frame[None])[0], first)


def test_bad_box_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="too small"):
        GrabCutEngine(box=(0, 0, 1, 10))
    with pytest.raises(ConfigError, match="box_fraction"):
        GrabCutEngine(box_fraction=0.0)


def test_real_davis_frame_beats_the_bare_box(shared_data: Path) -> None:
    from streammatte.compose import read_image_rgb
    from streammatte.evaluate import read_mask

    seq = shared_data / "davis" / "car-shadow"
    frame = read_image_rgb(seq / "frames" / "00000.jpg")
    truth = read_mask(seq / "masks" / "00000.png")
    engine = GrabCutEngine()
    cut = engine.infer(frame[None])[0]
    import cv2

    cut = cv2.resize(cut, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_NEAREST)
    box = np.zeros_like(truth)
    h, w = truth.shape
    bw, bh = round(w * 0.7), round(h * 0.7)
    box[(h - bh) // 2:(h - bh) // 2 + bh, (w - bw) // 2:(w - bw) // 2 + bw] = 1
    assert M.iou(cut, truth) > M.iou(box, truth) + 0.1
