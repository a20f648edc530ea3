"""Keyframes plus propagation: when the engine runs, how far mattes travel, stream contract."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import BrightnessEngine

from streammatte import metrics as M
from streammatte.chain import Chain
from streammatte.config import MatteConfig
from streammatte.errors import ConfigError
from streammatte.frames import Alpha, FramePacket
from streammatte.keyframes import (
    FILE_PRESET,
    LIVE_PRESET,
    KeyframeConfig,
    KeyframeSmoother,
    MotionStep,
    Propagator,
    run_offline,
)
from streammatte.pipeline import Pipeline

H, W = 120, 160


def _texture(seed: int = 0, h: int = H + 80, w: int = W + 80) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return np.asarray(cv2.GaussianBlur(noise, (7, 7), 0), np.uint8)


def _shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``image`` moved by (dx, dy) px (sub-pixel, bilinear), cropped to H×W from (40, 40)."""
    m = np.array([[1, 0, dx - 40], [0, 1, dy - 40]], np.float32)
    return np.asarray(cv2.warpAffine(image, m, (W, H), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT), np.uint8)


def _disk(cx: float, cy: float, r: float = 25.0) -> Alpha:
    yy, xx = np.mgrid[:H, :W].astype(np.float32)
    # a one-pixel ramp, so the edge position is defined below a pixel
    return np.asarray(np.clip(r + 0.5 - np.hypot(xx - cx, yy - cy), 0, 1), np.float32)


def _centroid(alpha: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[:H, :W]
    total = float(alpha.sum())
    return float((xs * alpha).sum()) / total, float((ys * alpha).sum()) / total


def _run(cfg: KeyframeConfig, frames: list[np.ndarray], alphas: list[np.ndarray]
         ) -> tuple[list[np.ndarray], list[bool]]:
    step, prop = MotionStep(cfg), Propagator(cfg)
    out: list[np.ndarray] = []
    keys = []
    for frame, alpha in zip(frames, alphas, strict=True):
        motion = step(frame)
        keys.append(motion.keyframe)
        out += prop.push(frame, motion, alpha if motion.keyframe else None)
    return out + prop.flush(), keys


CFG = KeyframeConfig(width=W, guide_width=0, lookahead=4)


def test_static_scene_runs_the_engine_rarely() -> None:
    rng = np.random.default_rng(3)
    still = _texture()[:H, :W]
    # sensor noise only: the flow holds everywhere
    frames = [np.clip(still + rng.normal(0, 2, still.shape), 0, 255).astype(np.uint8)
              for _ in range(40)]
    cfg = dataclasses.replace(CFG, max_interval=10)
    _, keys = _run(cfg, frames, [_disk(80, 60)] * 40)
    assert sum(keys) == 4  # frames 0, 10, 20, 30: only the interval fires
    assert keys[0] and keys[10] and keys[20] and keys[30]


def test_a_scene_cut_forces_a_keyframe() -> None:
    a, b = _texture(1)[:H, :W], _texture(2)[:H, :W]
    frames = [a] * 5 + [b // 4] * 3  # another scene, far darker
    step = MotionStep(dataclasses.replace(CFG, max_interval=100))
    motions = [step(f) for f in frames]
    assert [m.keyframe for m in motions] == [True, False, False, False, False, True, False, False]
    assert motions[5].reason == "cut"
    assert motions[5].to_prev is None and motions[5].prev_to_next is None


def test_occlusion_forces_a_keyframe() -> None:
    background = _texture(4)[:H, :W]
    frames = [background.copy() for _ in range(4)]
    # new content covers a third of the frame: the flow cannot explain it
    frames[3][:, :W // 3] = _texture(5)[:H, :W // 3]
    step = MotionStep(dataclasses.replace(CFG, max_interval=100, max_risk=0.1))
    reasons = [step(f).reason for f in frames]
    assert reasons == ["first", "", "", "risk"]


@pytest.mark.parametrize("lookahead", [0, 6])
def test_propagation_follows_a_known_translation_within_a_pixel(lookahead: int) -> None:
    texture = _texture(6)
    vx, vy = 2.3, -1.6  # px per frame, sub-pixel on purpose
    frames = [_shifted(texture, vx * t, vy * t) for t in range(7)]
    truths = [_disk(70 + vx * t, 60 + vy * t) for t in range(7)]
    cfg = dataclasses.replace(CFG, max_interval=100, max_risk=1e9, lookahead=lookahead)
    out, keys = _run(cfg, frames, truths)
    assert keys == [True] + [False] * 6  # the engine ran on the first frame only
    for t in range(1, 7):
        cx, cy = _centroid(out[t])
        tx, ty = _centroid(truths[t])
        assert abs(cx - tx) < 1.0 and abs(cy - ty) < 1.0, (t, cx - tx, cy - ty)
        assert M.iou(out[t], truths[t]) > 0.95


def test_frames_between_keyframes_use_the_next_keyframe() -> None:
    texture = _texture(7)
    frames = [_shifted(texture, 0.0, 0.0)] * 9
    # the engine's answer changes from one keyframe to the next (a new object at frame 8):
    # with look-ahead the frames between fade towards it; forward only, they cannot
    first, second = np.zeros((H, W), np.float32), _disk(80, 60)
    cfg = dataclasses.replace(CFG, max_interval=8, sharpen=0.0)
    ahead, _ = _run(cfg, frames, [first] * 8 + [second])
    blind, _ = _run(dataclasses.replace(cfg, lookahead=0), frames, [first] * 8 + [second])
    inside = second > 0.5
    assert float(ahead[7][inside].mean()) > 0.3
    assert float(blind[7][inside].mean()) == 0.0
    # nearer the second keyframe, more of it
    assert float(ahead[7][inside].mean()) > float(ahead[4][inside].mean())


@pytest.mark.parametrize("n", [1, 3, 4, 5, 17])
def test_n_frames_in_give_n_alphas_out_in_order(n: int) -> None:
    frame = _texture(8)[:H, :W]
    # memory 0: each frame answers with its own engine alpha (a different constant per frame)
    cfg = dataclasses.replace(CFG, max_interval=1, memory=0.0, lookahead=4)
    step, prop = MotionStep(cfg), Propagator(cfg)
    out = []
    for i in range(n):
        got = prop.push(frame, step(frame), np.full((H, W), i / 20, np.float32))
        assert len(got) == (1 if i >= cfg.lookahead else 0)
        out += got
    out += prop.flush()
    assert len(out) == n
    for i, o in enumerate(out):
        np.testing.assert_allclose(o, i / 20, atol=1e-3)
    assert prop.flush() == []


def test_the_backward_pass_is_carried_once_per_frame_not_once_per_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each answered frame reuses the backward sums of the frames ahead of it: one carry per
    frame forward, about one backward, not a walk from the next keyframe per answer."""
    texture = _texture(12)
    frames = [_shifted(texture, 0.5 * i, 0.0) for i in range(40)]
    cfg = dataclasses.replace(CFG, lookahead=8, max_interval=8, max_risk=1e9)
    carries = 0
    carry = Propagator._carry

    def counted(self: Propagator, *args: object) -> object:
        nonlocal carries
        carries += 1
        return carry(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Propagator, "_carry", counted)
    out, keys = _run(cfg, frames, [_disk(80, 60)] * len(frames))
    assert len(out) == len(frames) and sum(keys) == 5  # every 8th frame
    # forward: 39; backward: 39 (each frame once from its next keyframe) + one per answer
    # for the answered frame itself; a walk per answer would be ~4 per frame
    assert carries <= 3 * len(frames)


def test_engine_alpha_may_come_at_any_size() -> None:
    frame = _texture(9)[:H, :W]
    cfg = dataclasses.replace(CFG, max_interval=1, lookahead=0)
    step, prop = MotionStep(cfg), Propagator(cfg)
    low = np.asarray(cv2.resize(_disk(80, 60), (40, 30), interpolation=cv2.INTER_AREA),
                     np.float32)
    (out,) = prop.push(frame, step(frame), low)
    assert out.shape == (H, W)
    assert M.iou(out, _disk(80, 60)) > 0.9


def test_a_keyframe_without_its_alpha_is_an_error() -> None:
    frame = _texture(10)[:H, :W]
    step, prop = MotionStep(CFG), Propagator(CFG)
    with pytest.raises(ValueError, match="frame 0 is a keyframe"):
        prop.push(frame, step(frame), None)


def test_frames_pushed_out_of_order_are_an_error() -> None:
    frame = _texture(11)[:H, :W]
    step, prop = MotionStep(CFG), Propagator(CFG)
    motions = [step(frame) for _ in range(3)]
    prop.push(frame, motions[0], _disk(80, 60))
    with pytest.raises(ValueError, match="out of order: 2 after 0"):
        prop.push(frame, motions[2], None)


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="max_interval should be >= 1"):
        KeyframeConfig(max_interval=0)
    with pytest.raises(ConfigError, match="unknown DIS preset 'slow'"):
        KeyframeConfig(flow_preset="slow")  # type: ignore[arg-type]


def test_run_offline_asks_the_engine_for_keyframes_only() -> None:
    still = _texture(12)[:H, :W]
    asked: list[int] = []

    def engine(i: int) -> np.ndarray:
        asked.append(i)
        return _disk(80, 60)

    out, ran = run_offline([still] * 12, engine, dataclasses.replace(CFG, max_interval=5))
    assert len(out) == 12
    assert asked == [0, 5, 10] and ran == 3



def test_motion_since_the_last_keyframe_forces_one() -> None:
    texture = _texture(13)
    # 4 px a frame at 160 px wide is 16 px of a 640 px copy: 32 > 20 on the second frame
    frames = [_shifted(texture, 4.0 * t, 0.0) for t in range(5)]
    step = MotionStep(dataclasses.replace(CFG, max_interval=100, max_risk=1e9, max_motion=20))
    reasons = [step(f).reason for f in frames]
    assert reasons == ["first", "", "motion", "", "motion"]


def test_forward_only_follows_a_change_the_flow_missed() -> None:
    frame = _texture(14)[:H, :W]
    gone, there = np.zeros((H, W), np.float32), _disk(80, 60)
    cfg = dataclasses.replace(CFG, lookahead=0, max_interval=1, memory=0.9)
    # an object appears in a still scene: with the gate the output takes it at once, without
    # it ten frames of "nothing there" outvote it
    gated, _ = _run(dataclasses.replace(cfg, disagree=(0.35, 0.7)), [frame] * 11,
                    [gone] * 10 + [there])
    plain, _ = _run(cfg, [frame] * 11, [gone] * 10 + [there])
    inside = there > 0.5
    assert float(gated[10][inside].mean()) > 0.9
    assert float(plain[10][inside].mean()) < 0.5


def test_smoother_uses_the_keyframes_alphas_only() -> None:
    still = _texture(15)[:H, :W]
    smoother = KeyframeSmoother(dataclasses.replace(CFG, max_interval=4, lookahead=2))
    out = []
    for i in range(10):
        # the alphas of frames that are not keyframes are poison: they must not show
        alpha = _disk(80, 60) if i % 4 == 0 else np.ones((H, W), np.float32)
        out += smoother.push(alpha, still)
    out += smoother.flush()
    assert len(out) == 10 and (smoother.keyframes, smoother.frames) == (3, 10)
    for o in out:
        assert M.iou(o, _disk(80, 60)) > 0.95


def test_smoother_answers_frame_by_frame_only_without_lookahead() -> None:
    still = _texture(16)[:H, :W]
    live = KeyframeSmoother(dataclasses.replace(CFG, lookahead=0))
    assert live(_disk(80, 60), still).shape == (H, W)
    with pytest.raises(ConfigError, match="looks ahead 4 frame"):
        KeyframeSmoother(CFG)(_disk(80, 60), still)


def test_presets_are_temporal_modes() -> None:
    from streammatte import temporal as T

    assert T.make_streaming("keyframes").delay == FILE_PRESET.lookahead > 0
    assert isinstance(T.make_temporal("keyframes-live"), KeyframeSmoother)
    assert LIVE_PRESET.lookahead == 0


def test_real_u2netp_keyframes_steadier_on_davis(u2netp_path: Path, shared_data: Path) -> None:
    """The real model on 24 real frames through the file preset: fewer engine runs, dtSSD
    falls, IoU holds."""
    from streammatte.evaluate import read_frame, read_mask
    from streammatte.inference import open_engine
    from streammatte.postprocess import Postprocessor
    from streammatte.preprocess import Preprocessor

    seq = shared_data / "davis" / "car-shadow"
    files = sorted((seq / "frames").glob("*.jpg"))[:24]
    engine = open_engine("u2netp", model_file=u2netp_path, device="cpu")
    pre, post = Preprocessor(engine.input_spec), Postprocessor(engine.output_spec)
    step, prop = MotionStep(FILE_PRESET), Propagator(FILE_PRESET)
    per_frame, smoothed, truth = [], [], []
    for f in files:
        rgb = read_frame(f)
        size = (rgb.shape[1], rgb.shape[0])
        low = post(engine.infer(pre(rgb)[None])[0], None)  # the model's own resolution
        per_frame.append(np.asarray(cv2.resize(low, size, interpolation=cv2.INTER_LINEAR),
                                    np.float32))
        motion = step(rgb)
        smoothed += prop.push(rgb, motion, low if motion.keyframe else None)
        truth.append(read_mask(seq / "masks" / f"{f.stem}.png"))
    smoothed += prop.flush()
    engine.close()

    iou0, dt0 = M.iou_and_dtssd(per_frame, truth)
    iou1, dt1 = M.iou_and_dtssd(smoothed, truth)
    assert prop.engine_frames < len(files)
    assert dt1 < 0.9 * dt0
    assert iou1 > iou0 - 0.01


def test_a_new_frame_size_forces_a_keyframe() -> None:
    small = _texture(17)[:H, :W]
    # twice the size, same aspect: the working copies match, the frames do not
    large = np.asarray(cv2.resize(small, (2 * W, 2 * H)), np.uint8)
    step = MotionStep(dataclasses.replace(CFG, max_interval=100))
    reasons = [step(f).reason for f in (small, small, large, large)]
    assert reasons == ["first", "", "cut", ""]


# -- in the chain: the engine is skipped between keyframes ------------------------------------

def _packets(frames: list[np.ndarray]) -> list[FramePacket]:
    return [FramePacket(index=i, image=f, pts=i, time_base=None) for i, f in enumerate(frames)]


def test_the_chain_runs_the_engine_on_keyframes_only() -> None:
    still = _texture(20)[:H, :W]
    engine = BrightnessEngine()
    chain = Chain(MatteConfig(temporal="keyframes"), engine=engine, output="matte")
    pipeline = Pipeline(_packets([still] * 12), chain.stages())
    out = list(pipeline.results())
    # a still scene: the first frame and the interval's (every 8th) only
    assert engine.calls == 2 == chain.engine_frames(pipeline.stats)
    assert [p.index for p in out] == list(range(12))
    truth = (still.mean(axis=2) > 127).astype(np.float32)
    for p in out:
        assert p.alpha is not None and M.iou(p.alpha, truth) > 0.95


class LearningEngine(BrightnessEngine):
    """Stands for MOG2: an engine that learns from every frame it sees."""

    stateful = True


@pytest.mark.parametrize("live", [False, True])
def test_a_stateful_engine_sees_every_frame_and_the_keyframes_alphas_are_used(
        live: bool) -> None:
    still = _texture(26)[:H, :W]
    runs: dict[bool, tuple[int, list[Alpha | None]]] = {}
    for engine in (BrightnessEngine(), LearningEngine()):
        if live:
            chain = Chain(MatteConfig(temporal="keyframes-live"), engine=engine)
            alphas: list[Alpha | None] = [chain.alpha(still) for _ in range(12)]
            runs[engine.stateful] = (engine.calls, alphas)
            continue
        chain = Chain(MatteConfig(temporal="keyframes"), engine=engine, output="matte")
        pipeline = Pipeline(_packets([still] * 12), chain.stages())
        out = [p.alpha for p in pipeline.results()]
        assert chain.engine_frames(pipeline.stats) == engine.calls
        runs[engine.stateful] = (engine.calls, out)
    assert runs[False][0] == 2 and runs[True][0] == 12
    # what the propagator was given is the same: the keyframes' alphas, as compare scores it
    for a, b in zip(runs[False][1], runs[True][1], strict=True):
        assert a is not None and b is not None and np.array_equal(a, b)


def test_a_cut_makes_the_chain_run_the_engine() -> None:
    a, b = _texture(21)[:H, :W], _texture(22)[:H, :W]
    engine = BrightnessEngine()
    chain = Chain(MatteConfig(temporal="keyframes"), engine=engine)
    out = list(Pipeline(_packets([a] * 5 + [b // 4] * 3), chain.stages()).results())
    assert len(out) == 8 and engine.calls == 2  # frame 0 and the cut at frame 5


def test_the_chain_answers_n_frames_with_n_alphas_in_order_with_the_flush() -> None:
    rng = np.random.default_rng(23)
    base = _texture(23)
    # moving texture: keyframes come from the flow's checks as well as the interval
    frames = [_shifted(base, float(rng.uniform(-3, 3)), float(rng.uniform(-3, 3)))
              for _ in range(11)]  # fewer frames than the look-ahead holds at the end
    chain = Chain(MatteConfig(temporal="keyframes"), engine=BrightnessEngine(), output="matte")
    out = list(Pipeline(_packets(frames), chain.stages()).results())
    assert [p.index for p in out] == list(range(11))
    assert all(p.output is not None and p.output.shape == (H, W) for p in out)


def test_live_chain_alpha_runs_the_engine_on_keyframes_only() -> None:
    still = _texture(24)[:H, :W]
    engine = BrightnessEngine()
    chain = Chain(MatteConfig(temporal="keyframes-live"), engine=engine)
    alphas = [chain.alpha(still) for _ in range(10)]
    assert engine.calls == 2  # frames 0 and 8
    truth = (still.mean(axis=2) > 127).astype(np.float32)
    assert all(M.iou(a, truth) > 0.95 for a in alphas)


def _still_video(path: Path, frames: int) -> np.ndarray:
    import av

    still = _texture(25)[:H, :W]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(still, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return still


def test_the_run_report_counts_the_frames_that_ran_the_engine(tmp_path: Path) -> None:
    from streammatte.api import matte_video
    from streammatte.report import RunEntry, entry_from

    _still_video(tmp_path / "in.mp4", 20)
    engine = BrightnessEngine()
    report = matte_video(tmp_path / "in.mp4", tmp_path / "out.mp4", engine=engine,
                         temporal="keyframes")
    assert (report.frames_in, report.frames_out) == (20, 20)
    assert report.engine_frames == engine.calls == 3  # frames 0, 8, 16
    entry = entry_from(RunEntry(tmp_path / "in.mp4"), report).to_json()
    assert (entry["frames_in"], entry["engine_frames"]) == (20, 3)


def test_without_keyframes_every_frame_runs_the_engine(tmp_path: Path) -> None:
    from streammatte.api import matte_video

    _still_video(tmp_path / "in.mp4", 6)
    report = matte_video(tmp_path / "in.mp4", tmp_path / "out.mp4",
                         engine=BrightnessEngine(), temporal="none")
    assert report.engine_frames == report.frames_in == 6


@pytest.mark.slow
def test_real_u2netp_chain_skips_the_engine_on_real_footage(u2netp_path: Path,
                                                            shared_data: Path,
                                                            tmp_path: Path) -> None:
    """The real model, real codec and real footage through matte_video in the file preset:
    fewer engine runs than frames, every frame written."""
    from media import davis_clip

    from streammatte.api import matte_video

    src = davis_clip(shared_data, tmp_path / "parkour.mp4", 24)
    report = matte_video(src, tmp_path / "out.mp4", engine="u2netp", model_file=u2netp_path,
                         temporal="keyframes")
    assert report.frames_out == report.frames_in == 24
    assert 0 < report.engine_frames < 24


def test_live_load_shedding_keeps_skipping_the_engine() -> None:
    from streammatte.temporal import ShedUnderLoad

    still = _texture(26)[:H, :W]
    engine = BrightnessEngine()
    shedder = ShedUnderLoad("keyframes-live", lambda: 0)
    chain = Chain(MatteConfig(temporal="keyframes-live"), engine=engine, temporal=shedder)
    for _ in range(10):
        chain.alpha(still)
    assert engine.calls == 2  # frames 0 and 8, as without the shedder


def test_batched_inference_runs_only_the_keyframes_in_each_batch() -> None:
    a, b = _texture(27)[:H, :W], _texture(28)[:H, :W]
    engine = BrightnessEngine()
    chain = Chain(MatteConfig(temporal="keyframes", batch_size=4), engine=engine)
    bright = np.asarray(a // 4 + 160, np.uint8)  # far brighter than b: a cut between them
    pipeline = Pipeline(_packets([bright] * 6 + [b] * 6), chain.stages())
    out = list(pipeline.results())
    assert [p.index for p in out] == list(range(12))
    # keyframes 0 and 6 (the cut) fall in different batches of four: two calls, one frame each
    assert chain.engine_frames(pipeline.stats) == 2 and engine.calls == 2
    truth = b.mean(axis=2) > 127
    assert 0.2 < truth.mean() < 0.8
    assert out[-1].alpha is not None and M.iou(out[-1].alpha, truth.astype(np.float32)) > 0.95
