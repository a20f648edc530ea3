"""What each temporal mode costs per frame at several frame sizes. Prints a markdown table.

    python benchmarks/temporal_cost.py                               # DAVIS car-shadow, 30 frames
    python benchmarks/temporal_cost.py --modes bidirectional --sizes 1920x1080 --frames 60

The frames and alphas are a DAVIS sequence (its frames and ground-truth masks, from
../shared/data/davis unless ``--sequence`` names another folder with ``frames/`` and ``masks/``)
scaled to each size, so the flow has real motion to follow. Each mode is driven through
push/flush as the pipeline drives it, in this process, one mode at a time; the figure is the
wall time of all pushes and the flush divided by the frames answered. Sizes are measured in
interleaved rounds and the median is shown, since shared machines are noisy.
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
from streammatte.temporal import make_streaming, temporal_modes

DEFAULT_SEQUENCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis" / "car-shadow"


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequence", type=Path, default=DEFAULT_SEQUENCE)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--modes", default=",".join(m for m in temporal_modes() if m != "none"))
    parser.add_argument("--sizes", default="854x480,1920x1080,3840x2160")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    frames, alphas = load(args.sequence, args.frames)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    scaled: dict[tuple[int, int], tuple[list[RGBImage], list[Alpha]]] = {
        size: ([np.asarray(cv2.resize(f, size, interpolation=cv2.INTER_LINEAR), np.uint8)
                for f in frames],
               [np.asarray(cv2.resize(a, size, interpolation=cv2.INTER_LINEAR), np.float32)
                for a in alphas]) for size in sizes}
    times: dict[tuple[str, tuple[int, int]], list[float]] = {}
    for _ in range(args.rounds):
        for mode in modes:
            for size in sizes:
                times.setdefault((mode, size), []).append(ms_per_frame(mode, *scaled[size]))
    print(f"{len(frames)} frames of {args.sequence.name}, median of {args.rounds} rounds, "
          "ms/frame (push + flush)\n")
    print("| mode | " + " | ".join(f"{w}×{h}" for w, h in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for mode in modes:
        cells = [f"{statistics.median(times[(mode, size)]):.1f}" for size in sizes]
        print(f"| {mode} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
