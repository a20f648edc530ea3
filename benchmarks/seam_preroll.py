"""How many frames of history a segment needs so that its seam matches a one-machine run.

    python benchmarks/seam_preroll.py                        # DAVIS parkour, soapbox, dog; u2netp
    python benchmarks/seam_preroll.py --sequences dog --pre-rolls 0,10,40 --engine u2net

A segment of a long video (``streammatte.cluster.segments``) decodes ``pre_roll`` frames
before its first frame and ``post_roll`` after its last, for the temporal filter. The
look-ahead side is exact once ``post_roll`` is the filter's delay (the backward pass reaches
no further); the history side is not: the forward recursion has no end, it only forgets. This
measures, on real footage, how far the alpha of the frames after a seam is from the one-machine
run's, for several pre-rolls.

Each sequence's per-frame alphas come from the engine once (the chain's ``Matter``, as the
pipeline computes them); then the temporal filter is run over the whole sequence (the
reference) and over the window a segment starting at each seam would see. Printed per
pre-roll: the worst seam frame's mean |Δα| (×255) and the mean over the whole clip when it is
cut every ``--every`` frames, as a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streammatte.chain import Matter
from streammatte.evaluate import read_frame
from streammatte.frames import Alpha, RGBImage
from streammatte.inference import open_engine
from streammatte.temporal import DEFAULT_FILE_MODE, make_streaming

DAVIS = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis"


def smooth(mode: str, alphas: list[Alpha], frames: list[RGBImage]) -> list[Alpha]:
    stream = make_streaming(mode)
    out: list[Alpha] = []
    for alpha, frame in zip(alphas, frames, strict=True):
        out += stream.push(alpha, frame)
    return out + stream.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequences", default="parkour,soapbox,dog")
    parser.add_argument("--engine", default="u2netp")
    parser.add_argument("--mode", default=DEFAULT_FILE_MODE)
    parser.add_argument("--pre-rolls", default="0,5,10,20,30,40,60")
    parser.add_argument("--every", type=int, default=20, help="frames between seams")
    args = parser.parse_args()
    pre_rolls = [int(v) for v in args.pre_rolls.split(",")]
    post_roll = make_streaming(args.mode).delay
    engine = open_engine(args.engine)
    matter = Matter(engine)
    print(f"{args.engine}, {args.mode} (look-ahead {post_roll} frames = the post-roll), a seam "
          f"every {args.every} frames; mean |Δα| ×255 against one run over the whole clip\n")
    print("| sequence | pre-roll | worst seam frame | after the first seam, mean | "
          "whole clip, mean |")
    print("|---|---|---|---|---|")
    for name in args.sequences.split(","):
        files = sorted((DAVIS / name / "frames").iterdir())
        frames = [read_frame(p) for p in files]
        raw = [matter.alpha(f) for f in frames]
        reference = smooth(args.mode, raw, frames)
        seams = list(range(args.every, len(frames), args.every))
        for pre_roll in pre_rolls:
            per_frame = np.zeros(len(frames))
            for seam in seams:
                end = min(len(frames), seam + args.every)
                lo, hi = max(0, seam - pre_roll), min(len(frames), end + post_roll)
                got = smooth(args.mode, raw[lo:hi], frames[lo:hi])[seam - lo:end - lo]
                for k, alpha in enumerate(got):
                    diff = np.abs(alpha - reference[seam + k])
                    per_frame[seam + k] = 255 * float(diff.mean())
            seam_frames = [per_frame[s] for s in seams]
            in_segments = per_frame[args.every:]
            print(f"| {name} | {pre_roll} | {max(seam_frames):.3f} | "
                  f"{float(np.mean(in_segments)):.3f} | {float(per_frame.mean()):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
