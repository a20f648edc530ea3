"""``streammatte bench CLIP``: engine-only vs end-to-end speed, per-stage time, peak memory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..bench import format_table, run_benchmark
from ..config import DEFAULT_ENGINE
from ..temporal import DEFAULT_FILE_MODE, temporal_modes
from .common import SubParsers, add_models_dir_option, models_dir_from


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("bench", help="measure speed and memory on a clip",
                                   description=__doc__)
    parser.add_argument("clip", type=Path, help="video file to measure on")
    parser.add_argument("--engine", "-e", default=DEFAULT_ENGINE,
                        help=f"engine to measure (default: {DEFAULT_ENGINE})")
    parser.add_argument("--temporal", default=DEFAULT_FILE_MODE, choices=temporal_modes(),
                        help=f"temporal mode of the end-to-end run (default {DEFAULT_FILE_MODE})")
    parser.add_argument("--frames", type=int, default=40,
                        help="frames taken from the clip (default 40)")
    parser.add_argument("--lengths", default="1,3",
                        help="play the frames this many times for the memory check (default 1,3)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved repetitions; speeds are their medians (default 2)")
    parser.add_argument("--no-rembg", action="store_true",
                        help="skip the comparison with rembg's per-frame API")
    add_models_dir_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lengths = tuple(int(x) for x in args.lengths.split(",") if x)
    result = run_benchmark(
        args.clip, engine_name=args.engine, temporal=args.temporal, frames=args.frames,
        lengths=lengths, rounds=args.rounds,
        with_rembg=not args.no_rembg, models_dir=models_dir_from(args),
        log=lambda msg: print(f"… {msg}", file=sys.stderr),
    )
    print(format_table(result))
    return 0
