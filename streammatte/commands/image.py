"""``streammatte image IN -o OUT``: matte a still image (PNG keeps the alpha)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..api import matte_image
from ..progress import DownloadProgress
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
    parser.add_argument("input", type=Path, help="image file (JPEG, PNG, WebP, …)")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="output image (.png keeps transparency; .jpg needs --background)")
    add_engine_options(parser)
    add_output_options(parser, video=False)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    matte_image(args.input, args.output, config,
                on_download=DownloadProgress(enabled=None if not args.quiet else False),
                auth_tokens=hf_auth_tokens())
    if not args.quiet:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0
