"""What each temporal mode costs per frame at several frame sizes. Prints a markdown table.

    python benchmarks/temporal_cost.py                               # DAVIS car-shadow, 30 frames
    python benchmarks/temporal_cost.py --modes bidirectional --sizes 1920x1080 --frames 60
    python benchmarks/temporal_cost.py --modes keyframes,keyframes-live --yardstick u2netp

The frames and alphas are a DAVIS sequence (its frames and ground-truth masks, from
../shared/data/davis unless ``--sequence`` names another folder with ``frames/`` and ``masks/``)
scaled to each size, so the flow has real motion to follow. Each mode is driven through
push/flush as the pipeline drives it, in this process, one mode at a time; the figure is the
wall time of all pushes and the flush divided by the frames answered. Sizes are measured in
interleaved rounds and the median is shown, since shared machines are noisy.

A keyframe mode (``keyframes``, ``keyframes-live``) is also shown split into its two steps, as a
chain runs them: ``motion`` (every frame: working copy, flow pair, checks, the keyframe
decision) and ``propagate`` (every frame, the keyframes' alphas given at the model's 320×320
resolution, as the engine returns them), with the share of frames that were keyframes.

``--yardstick ENGINE`` times that engine's inference (ONNX Runtime on the CPU, batch 1, as
``open_engine`` configures it) in the same rounds and adds each figure as a share of it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streammatte.commands.common import parse_size
from streammatte.evaluate import read_frame, read_mask
from streammatte.frames import Alpha, RGBImage
from streammatte.keyframes import FILE_PRESET, LIVE_PRESET, MotionStep, Propagator
from streammatte.temporal import make_streaming, temporal_modes

DEFAULT_SEQUENCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis" / "car-shadow"
KEYFRAME_PRESETS = {"keyframes": FILE_PRESET, "keyframes-live": LIVE_PRESET}


def load(sequence: Path, frames: int) -> tuple[list[RGBImage], list[Alpha]]:
    frame_files = sorted((sequence / "frames").iterdir())[:frames]
    mask_files = sorted((sequence / "masks").iterdir())[:frames]
    if not frame_files or len(frame_files) != len(mask_files):
        raise SystemExit(f"{sequence}: expected frames/ and masks/ with one mask per frame")
    return [read_frame(p) for p in frame_files], [read_mask(p) for p in mask_files]


def ms_per_frame(mode: str, frames: list[RGBImage], alphas: list[Alpha]) -> float:
    smoother = make_streaming(mode)
    answered = 0
    start = time.perf_counter()
    for alpha, frame in zip(alphas, frames, strict=True):
        answered += len(smoother.push(alpha, frame))
    answered += len(smoother.flush())
    return 1e3 * (time.perf_counter() - start) / answered


def keyframe_steps(mode: str, frames: list[RGBImage], lows: list[Alpha]
                   ) -> tuple[float, float, float]:
    """(motion ms/frame, propagate ms/frame, share of keyframes) for a keyframe preset."""
    cfg = KEYFRAME_PRESETS[mode]
    step, prop = MotionStep(cfg), Propagator(cfg)
    motion_s = prop_s = 0.0
    answered = 0
    for low, frame in zip(lows, frames, strict=True):
        start = time.perf_counter()
        m = step(frame)
        mid = time.perf_counter()
        answered += len(prop.push(frame, m, low if m.keyframe else None))
        motion_s += mid - start
        prop_s += time.perf_counter() - mid
    start = time.perf_counter()
    answered += len(prop.flush())
    prop_s += time.perf_counter() - start
    return 1e3 * motion_s / answered, 1e3 * prop_s / answered, prop.engine_frames / answered


def engine_ms(engine: object, sample: np.ndarray, runs: int = 3) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        engine.infer(sample)  # type: ignore[attr-defined]
    return 1e3 * (time.perf_counter() - start) / runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequence", type=Path, default=DEFAULT_SEQUENCE)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--modes", default=",".join(m for m in temporal_modes() if m != "none"))
    parser.add_argument("--sizes", default="960x540,1280x720,1920x1080,3840x2160")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--yardstick", help="an engine whose inference time is the unit")
    args = parser.parse_args()
    frames, alphas = load(args.sequence, args.frames)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    scaled: dict[tuple[int, int], tuple[list[RGBImage], list[Alpha]]] = {
        size: ([np.asarray(cv2.resize(f, size, interpolation=cv2.INTER_LINEAR), np.uint8)
                for f in frames],
               [np.asarray(cv2.resize(a, size, interpolation=cv2.INTER_LINEAR), np.float32)
                for a in alphas]) for size in sizes}
    lows = [np.asarray(cv2.resize(a, (320, 320), interpolation=cv2.INTER_AREA), np.float32)
            for a in alphas]
    engine = sample = None
    if args.yardstick:
        from streammatte.inference import open_engine
        from streammatte.preprocess import Preprocessor

        engine = open_engine(args.yardstick, device="cpu")
        sample = Preprocessor(engine.input_spec)(frames[0])[None]
        engine.infer(sample)
    times: dict[tuple[str, tuple[int, int]], list[float]] = {}
    yard: list[float] = []
    shares: dict[str, float] = {}
    for _ in range(args.rounds):
        for mode in modes:
            for size in sizes:
                times.setdefault((mode, size), []).append(ms_per_frame(mode, *scaled[size]))
                if mode in KEYFRAME_PRESETS:
                    m, p, shares[mode] = keyframe_steps(mode, scaled[size][0], lows)
                    times.setdefault((f"{mode}: motion", size), []).append(m)
                    times.setdefault((f"{mode}: propagate", size), []).append(p)
            if engine is not None:
                yard.append(engine_ms(engine, sample))  # type: ignore[arg-type]
    unit = statistics.median(yard) if yard else None
    print(f"{len(frames)} frames of {args.sequence.name}, median of {args.rounds} rounds, "
          "ms/frame (push + flush)" + (f"; {args.yardstick} inference {unit:.1f} ms "
                                       "(share of it in brackets)" if unit else "") + "\n")
    print("| mode | " + " | ".join(f"{w}×{h}" for w, h in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for key in dict.fromkeys(k[0] for k in times):
        cells = []
        for size in sizes:
            ms = statistics.median(times[(key, size)])
            cells.append(f"{ms:.1f}" + (f" ({ms / unit:.0%})" if unit else ""))
        print(f"| {key} | " + " | ".join(cells) + " |")
    for mode, share in shares.items():
        print(f"\n{mode}: {share:.0%} of these frames were keyframes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
