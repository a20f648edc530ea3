"""``streammatte video IN -o OUT``: matte a video file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..api import matte_video
from ..pipeline import PipelineStats
from ..progress import DownloadProgress, ProgressLine
from ..sources.file import FileSource
from .common import (
    SubParsers,
    add_engine_options,
    add_output_options,
    config_from,
    hf_auth_tokens,
)


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("video", help="remove or replace the background of a video",
                                   description=__doc__)
    parser.add_argument("input", type=Path, help="video file (MP4, MOV, MKV, WebM, AVI, …)")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="output file (.mp4, .mov, .webm) or directory for PNG frames")
    add_engine_options(parser)
    add_output_options(parser, video=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    with FileSource(args.input) as probe:
        total = probe.frame_count
        described = probe.describe()
    bar = ProgressLine(total, enabled=None if not args.quiet else False)
    started = False

    def on_progress(stats: PipelineStats) -> None:
        nonlocal started
        if not started and not args.quiet:  # said once the options are known to be good
            print(described, file=sys.stderr)
        started = True
        bar.update(stats.frames_out, stats.elapsed_s)

    report = matte_video(args.input, args.output, config, on_progress=on_progress,
                         on_download=DownloadProgress(enabled=None if not args.quiet else False),
                         auth_tokens=hf_auth_tokens())
    bar.finish()
    if not args.quiet:
        print(f"wrote {report.output} ({report.format}): {report.frames_out} frames in "
              f"{report.elapsed_s:.1f} s ({report.fps:.1f} fps) with {report.engine}",
              file=sys.stderr)
        for track in report.audio_tracks:
            print(f"  audio: {track}", file=sys.stderr)
        for note in report.notes:
            print(f"  note: {note}", file=sys.stderr)
    return 0
