"""Throughput of a batch on Ray with 1 and 2 workers against the plain one-machine run.

    python benchmarks/ray_scale.py                      # 4 clips of 20 frames, 3 rounds
    python benchmarks/ray_scale.py --clips 6 --frames 60 --rounds 5 --engine u2net

The batch: ``--clips`` copies of the first ``--frames`` frames of the sample clip
(samples/vtest-excerpt.mp4, 768×576), each its own file, so every clip is a task. Each
round runs, as a user would, whole processes in turn (the order rotates from round to round):

- ``plain``: ``streammatte video CLIPS -o OUT`` (the local batch: one process, threaded);
- ``ray-1``: the same with ``--ray --ray-workers 1`` (a local Ray started by the run);
- ``ray-2``: the same with ``--ray --ray-workers 2``.

Printed: the median wall time of each over the rounds, frames per second, and the ratios
against ``plain`` measured in the same rounds (a machine shared with other work slows every
run alike, so the ratios are what to read), as a markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "vtest-excerpt.mp4"


def make_clips(folder: Path, clips: int, frames: int) -> list[Path]:
    """``clips`` copies of the sample's first ``frames`` frames (H.264, re-encoded once)."""
    first = folder / "clip-00.mp4"
    with av.open(str(SAMPLE)) as src, av.open(str(first), "w") as dst:
        stream = dst.add_stream("libx264", rate=src.streams.video[0].average_rate)
        stream.width, stream.height = src.streams.video[0].width, src.streams.video[0].height
        stream.pix_fmt = "yuv420p"
        for i, decoded in enumerate(src.decode(video=0)):
            if i == frames:
                break
            frame = av.VideoFrame.from_ndarray(decoded.to_ndarray(format="rgb24"),
                                               format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    paths = [first]
    for k in range(1, clips):
        paths.append(folder / f"clip-{k:02d}.mp4")
        shutil.copyfile(first, paths[-1])
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engine", default="u2netp")
    args = parser.parse_args()
    exe = str(Path(sys.executable).with_name("streammatte"))
    work = Path(tempfile.mkdtemp(prefix="sm-ray-scale-"))
    try:
        clips = make_clips(work, args.clips, args.frames)
        base = [exe, "video", *map(str, clips), "-e", args.engine, "-q", "--overwrite"]
        runs = {"plain": [], "ray-1": ["--ray", "--ray-workers", "1"],
                "ray-2": ["--ray", "--ray-workers", "2"]}
        env = {**os.environ, "RAY_ADDRESS": ""}  # each Ray run starts its own local Ray
        times: dict[str, list[float]] = {name: [] for name in runs}
        names = list(runs)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                out = work / f"out-{name}"
                started = time.perf_counter()
                subprocess.run([*base, "-o", str(out), *runs[name]], check=True, env=env)
                times[name].append(time.perf_counter() - started)
                print(f"round {r + 1} {name}: {times[name][-1]:.1f} s", file=sys.stderr)
        total = args.clips * args.frames
        plain = statistics.median(times["plain"])
        print(f"{args.clips} clips × {args.frames} frames (768×576), {args.engine}, "
              f"{args.rounds} rounds, {os.cpu_count()} CPUs\n")
        print("| run | median wall | frames/s | wall ÷ plain | each round |")
        print("|---|---|---|---|---|")
        for name in runs:
            median = statistics.median(times[name])
            rounds = ", ".join(f"{t:.1f}" for t in times[name])
            ratios = statistics.median(t / p for t, p in zip(times[name], times["plain"],
                                                             strict=True))
            print(f"| {name} | {median:.1f} s | {total / median:.2f} | {ratios:.2f} "
                  f"| {rounds} |")
        print(f"\nplain median {plain:.1f} s; ratio column: the median of each round's ratio")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
