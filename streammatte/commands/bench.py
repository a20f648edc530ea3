"""``streammatte bench CLIP``: whole processes against the rembg loop a user would write
(wall time, interleaved rounds, medians), the share of frames that ran the engine, and IoU and
dtSSD when CLIP is a folder of frames with ground-truth masks (a DAVIS sequence).
``--pipeline``: engine-only vs end-to-end speed, per-stage time and peak memory instead."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..bench import format_table, format_whole, run_benchmark, run_whole_process
from ..config import DEFAULT_ENGINE
from ..errors import ConfigError
from ..temporal import DEFAULT_FILE_MODE, temporal_modes
from .common import SubParsers, add_models_dir_option, models_dir_from


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("bench", help="measure speed (and memory) on a clip",
                                   description=__doc__)
    parser.add_argument("clip", type=Path,
                        help="video file, or a folder of frames (with masks/: scored too)")
    parser.add_argument("--engine", "-e", default=DEFAULT_ENGINE,
                        help=f"engine to measure (default: {DEFAULT_ENGINE})")
    parser.add_argument("--temporal", default=None,
                        help=f"temporal modes to time, comma-separated (default: "
                             f"{DEFAULT_FILE_MODE},none; with --pipeline one mode, default "
                             f"{DEFAULT_FILE_MODE})")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames taken from the clip (default 90; --pipeline 40)")
    parser.add_argument("--size", default=None, metavar="WxH",
                        help="scale the frames to this size first (whole-process runs)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved repetitions; speeds are their medians "
                             "(default 3; --pipeline 2)")
    parser.add_argument("--pipeline", action="store_true",
                        help="engine-only vs end-to-end in one process, per-stage time and "
                             "peak memory, instead of whole processes")
    parser.add_argument("--lengths", default="1,3",
                        help="--pipeline: play the frames this many times for the memory check "
                             "(default 1,3)")
    parser.add_argument("--no-rembg", action="store_true",
                        help="--pipeline: skip the comparison with rembg's per-frame API")
    add_models_dir_option(parser)
    parser.set_defaults(func=run)


def _modes(text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if text is None:
        return default
    modes = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    for m in modes:
        if m not in temporal_modes():
            raise ConfigError(f"--temporal: unknown mode {m!r} (choose from: "
                              f"{', '.join(temporal_modes())})")
    return modes


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size: expected WxH like 960x540, got {text!r}") from None
    if w < 16 or h < 16:
        raise ConfigError(f"--size: expected at least 16x16, got {text!r}")
    return w, h


def run(args: argparse.Namespace) -> int:
    def log(msg: str) -> None:
        print(f"… {msg}", file=sys.stderr)

    if args.pipeline:
        (mode,) = _modes(args.temporal, (DEFAULT_FILE_MODE,))[:1]
        lengths = tuple(int(x) for x in args.lengths.split(",") if x)
        result = run_benchmark(
            args.clip, engine_name=args.engine, temporal=mode, frames=args.frames or 40,
            lengths=lengths, rounds=args.rounds or 2,
            with_rembg=not args.no_rembg, models_dir=models_dir_from(args), log=log,
        )
        print(format_table(result))
        return 0
    whole = run_whole_process(
        args.clip, engine_name=args.engine,
        modes=_modes(args.temporal, (DEFAULT_FILE_MODE, "none")), frames=args.frames or 90,
        size=_size(args.size), rounds=args.rounds or 3, models_dir=models_dir_from(args),
        log=log)
    print(format_whole(whole))
    return 0
