"""``streammatte eval INPUT``: score one engine's mattes against ground truth.

INPUT is a sequence folder (``frames/`` + ``masks/``), a dataset of such folders, or a frame
folder / video with ``--gt MASKS``; without ground truth only flicker and speed are measured.
Writes a Markdown table to stdout and report.md/.csv/.json plus PNG plots to ``--out``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..config import DEFAULT_ENGINE
from ..evaluate import EvalSpec, compare, find_clips, markdown_table, summarize, write_report
from ..refine import UPSAMPLERS
from ..temporal import temporal_modes
from .common import SubParsers, add_models_dir_option, models_dir_from


def _modes(text: str) -> tuple[str, ...]:
    return tuple(m.strip().lower() for m in text.split(",") if m.strip())


def _box(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y,WIDTH,HEIGHT in pixels, got {text!r}"
                                         ) from None
    if x < 0 or y < 0 or w < 2 or h < 2:
        raise argparse.ArgumentTypeError(f"expected X,Y >= 0 and WIDTH,HEIGHT >= 2, got {text!r}")
    return x, y, w, h


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path,
                        help="sequence folder (frames/ + masks/), dataset folder, frame folder "
                        "or video")
    parser.add_argument("--gt", type=Path, metavar="DIR",
                        help="ground-truth masks for a frame folder or video (paired by name, "
                        "or by order for a video)")
    parser.add_argument("--temporal", "-t", type=_modes, default=("none",), metavar="MODES",
                        help=f"comma-separated temporal modes ({', '.join(temporal_modes())}); "
                        "default: none")
    parser.add_argument("--upsample", choices=UPSAMPLERS, default="bilinear",
                        help="model-resolution alpha → frame size (default: bilinear)")
    parser.add_argument("--max-frames", type=int, metavar="N",
                        help="evaluate at most N frames of each clip")
    parser.add_argument("--grabcut-box", type=_box, metavar="X,Y,W,H",
                        help="start GrabCut from this box (frame pixels) instead of a centred "
                        "one; applies to every clip")
    parser.add_argument("--fast-metrics", action="store_true",
                        help="skip the gradient and connectivity errors (the slow ones)")
    parser.add_argument("--out", "-o", type=Path, default=Path("eval-report"),
                        help="folder for report.md/.csv/.json and plots (default: eval-report)")
    parser.add_argument("--no-plots", action="store_true",
                        help="no PNG plots (they need matplotlib: pip install "
                        "'streammatte[eval]')")
    add_models_dir_option(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("eval", help="score an engine against ground-truth masks",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(parser)
    parser.add_argument("--engine", "-e", default=DEFAULT_ENGINE,
                        help=f"catalog model or builtin engine (default: {DEFAULT_ENGINE})")
    parser.add_argument("--model-file", type=Path, metavar="PATH",
                        help="use this local model file (verified against the catalog)")
    parser.set_defaults(func=run)


def command_line(argv: list[str] | None = None) -> str:
    args = sys.argv[1:] if argv is None else argv
    return "streammatte " + " ".join(shlex.quote(a) for a in args)


def run_specs(args: argparse.Namespace, specs: list[EvalSpec], *, title: str,
              isolate: bool) -> int:
    clips = find_clips(args.input, args.gt)
    progress = None if args.quiet else (
        lambda s: print(f"running {s.engine} on {len(clips)} clip(s)…", file=sys.stderr))
    results = compare(specs, clips, isolate=isolate, on_engine=progress,
                      progress=not args.quiet)
    written = write_report(results, args.out, command=command_line(args.command_line), title=title,
                           plots=not args.no_plots)
    summary, _ = summarize(results)
    print(markdown_table(summary))
    if not args.quiet:
        print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    spec = EvalSpec(engine=args.engine, modes=args.temporal, upsample=args.upsample,
                    max_frames=args.max_frames, models_dir=models_dir_from(args),
                    model_file=args.model_file, device=args.device,
                    slow_metrics=not args.fast_metrics, grabcut_box=args.grabcut_box)
    return run_specs(args, [spec], title=f"streammatte eval: {args.engine} on {args.input.name}",
                     isolate=False)
