"""``streammatte image IN -o OUT``: matte a still image (PNG keeps the alpha); several
inputs or folders (``IN… -o FOLDER``) make a batch, as ``rembg p`` does."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..api import image_run, open_configured_engine
from ..config import MatteConfig
from ..errors import StreamMatteError
from ..inference import Engine
from ..progress import DownloadProgress
from ..report import ReportFile, RunEntry
from .batch import IMAGE_SUFFIXES, expand_inputs, is_batch, plan_outputs, run_batch, skip_single
from .cluster import add_cluster_options, run_on_cluster, wants_cluster
from .common import (
    SubParsers,
    add_engine_options,
    add_mask_options,
    add_output_options,
    add_report_option,
    config_from,
    hf_auth_tokens,
    report_file,
)


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("image", help="remove or replace the background of an image",
                                   description=__doc__)
    parser.add_argument("input", type=Path, nargs="+",
                        help="image file (JPEG, PNG, WebP, …); several files or folders make a "
                        "batch")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="output image (.png, .webp keep transparency; .jpg is over white "
                        "unless --background says otherwise); for a batch, the folder that "
                        "receives one PNG per input")
    add_engine_options(parser)
    add_output_options(parser, video=False)
    add_cluster_options(parser, video=False)
    add_mask_options(parser)
    add_report_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    with report_file(args, "image") as report_to:
        return _run(args, config, report_to)


def _run(args: argparse.Namespace, config: MatteConfig, report_to: ReportFile | None) -> int:
    on_download = DownloadProgress(enabled=None if not args.quiet else False)
    if not is_batch(args.input):
        if skip_single(args.output, skip_existing=args.skip_existing, quiet=args.quiet):
            if report_to is not None:
                report_to.add(RunEntry(args.input[0], status="skipped"))
            return 0
        _matte_one(args.input[0], args.output, config, None, on_download, report_to)
        if not args.quiet:
            print(f"wrote {args.output}", file=sys.stderr)
        return 0
    pairs = plan_outputs(expand_inputs(args.input, IMAGE_SUFFIXES, "image"), args.output, ".png")
    if wants_cluster(args):
        return run_on_cluster(args, config, pairs, "image",
                              lambda outcome: [f"wrote {outcome.task.dst}"], report_to=report_to)
    with open_configured_engine(config, on_download, hf_auth_tokens()) as engine:
        def one(src: Path, dst: Path) -> str:
            _matte_one(src, dst, config, engine, None, report_to)
            return f"wrote {dst}"

        return run_batch(pairs, one, quiet=args.quiet, skip_existing=args.skip_existing,
                         report=report_to)


def _matte_one(src: Path, dst: Path, config: MatteConfig, engine: Engine | None,
               on_download: DownloadProgress | None, report_to: ReportFile | None) -> None:
    entry = None if report_to is None else report_to.add(RunEntry(src, status="failed"))
    started = time.perf_counter()
    try:
        done = image_run(src, dst, config, engine=engine, on_download=on_download,
                         auth_tokens=hf_auth_tokens())
    except StreamMatteError as exc:
        if entry is not None:
            entry.error = str(exc)
        raise
    if entry is not None:
        entry.status, entry.error = "done", None
        entry.engine, entry.device = done.engine, done.device
        entry.frames_in = entry.frames_out = entry.engine_frames = 1
        entry.elapsed_s = time.perf_counter() - started
        entry.timings = done.timings
        entry.outputs = [{"kind": "matte" if config.output_format == "matte" else "composite",
                          "path": str(dst), "format": dst.suffix.lstrip(".").lower(),
                          "encoder": None, "audio_tracks": []}]
