"""``streammatte image IN -o OUT``: matte a still image (PNG keeps the alpha); several
inputs or folders (``IN… -o FOLDER``) make a batch, as ``rembg p`` does."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..api import matte_image, open_configured_engine
from ..progress import DownloadProgress
from .batch import IMAGE_SUFFIXES, expand_inputs, is_batch, plan_outputs, run_batch, skip_single
from .cluster import add_cluster_options, run_on_cluster, wants_cluster
from .common import (
    SubParsers,
    add_engine_options,
    add_output_options,
    config_from,
    hf_auth_tokens,
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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    on_download = DownloadProgress(enabled=None if not args.quiet else False)
    if not is_batch(args.input):
        if skip_single(args.output, skip_existing=args.skip_existing, quiet=args.quiet):
            return 0
        matte_image(args.input[0], args.output, config, on_download=on_download,
                    auth_tokens=hf_auth_tokens())
        if not args.quiet:
            print(f"wrote {args.output}", file=sys.stderr)
        return 0
    pairs = plan_outputs(expand_inputs(args.input, IMAGE_SUFFIXES, "image"), args.output, ".png")
    if wants_cluster(args):
        return run_on_cluster(args, config, pairs, "image",
                              lambda outcome: [f"wrote {outcome.task.dst}"])
    with open_configured_engine(config, on_download, hf_auth_tokens()) as engine:
        def one(src: Path, dst: Path) -> str:
            matte_image(src, dst, config, engine=engine)
            return f"wrote {dst}"

        return run_batch(pairs, one, quiet=args.quiet, skip_existing=args.skip_existing)
