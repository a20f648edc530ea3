"""``streammatte compare INPUT``: several engines × temporal modes on the same clips, one report.

Each engine runs in its own worker process (its peak memory is its own) once per clip; every
temporal mode is applied to that same output. Per engine and mode: IoU, F-score, edge accuracy,
MAD, dtSSD, the other matting errors, flicker, ms/frame and peak memory.
"""

from __future__ import annotations

import argparse

from ..evaluate import EvalSpec
from .common import SubParsers, models_dir_from
from .eval import add_common, run_specs


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("compare", help="compare engines × temporal modes on the "
                                   "same clips", description=__doc__)
    add_common(parser)
    parser.add_argument("--engines", "-e", default="u2netp,mog2,grabcut",
                        help="comma-separated engines (default: u2netp,mog2,grabcut)")
    parser.add_argument("--in-process", action="store_true",
                        help="run every engine in this process (peak memory is then shared)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    specs = [EvalSpec(engine=e, modes=args.temporal, upsample=args.upsample,
                      max_frames=args.max_frames, models_dir=models_dir_from(args),
                      device=args.device, slow_metrics=not args.fast_metrics,
                      grabcut_box=args.grabcut_box if e == "grabcut" else None)
             for e in engines]
    return run_specs(args, specs, title=f"streammatte compare on {args.input.name}",
                     isolate=not args.in_process)
