"""``streammatte video IN -o OUT``: matte a video file (or several: ``IN… -o FOLDER``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..api import RunReport, matte_video, open_configured_engine
from ..cluster.work import Outcome
from ..compose import parse_background
from ..config import MatteConfig
from ..inference import Engine
from ..pipeline import PipelineStats
from ..progress import DownloadProgress, ProgressLine
from ..sinks.formats import FORMATS
from ..sources.file import FileSource
from .batch import (
    VIDEO_SUFFIXES,
    expand_inputs,
    is_batch,
    plan_outputs,
    run_batch,
    skip_single,
)
from .cluster import add_cluster_options, run_on_cluster, wants_cluster
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
    parser.add_argument("input", type=Path, nargs="+",
                        help="video file (MP4, MOV, MKV, WebM, AVI, …); several files or "
                        "folders make a batch")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="output file (.mp4, .mov, .webm) or directory for PNG frames; for "
                        "a batch, the folder that receives one result per input")
    add_engine_options(parser)
    add_output_options(parser, video=True)
    add_cluster_options(parser, video=True)
    parser.set_defaults(func=run)


def batch_suffix(config: MatteConfig) -> str:
    """A batch output's suffix: the chosen format's, else H.264 MP4 over a background and VP9
    WebM with alpha without one (what a single run picks from the output's extension)."""
    if config.output_format != "auto":
        return FORMATS[config.output_format].extension  # "" for PNG: a folder per clip
    if config.background == "auto" or parse_background(config.background).is_transparent:
        return ".webm"
    return ".mp4"


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    on_download = DownloadProgress(enabled=None if not args.quiet else False)
    if not is_batch(args.input):
        if skip_single(args.output, skip_existing=args.skip_existing, quiet=args.quiet):
            return 0
        if wants_cluster(args):
            return run_on_cluster(args, config, [(args.input[0], args.output)], "video",
                                  _describe, batch=False)
        report = _matte_one(args, config, args.input[0], args.output, None, on_download)
        if not args.quiet:
            print(_summary(report), file=sys.stderr)
            for line in _details(report):
                print(f"  {line}", file=sys.stderr)
        return 0
    files = expand_inputs(args.input, VIDEO_SUFFIXES, "video")
    pairs = plan_outputs(files, args.output, batch_suffix(config))
    if wants_cluster(args):
        return run_on_cluster(args, config, pairs, "video", _describe)
    with open_configured_engine(config, on_download, hf_auth_tokens()) as engine:
        def one(src: Path, dst: Path) -> str:
            engine.reset()  # a background model must not carry one clip into the next
            report = _matte_one(args, config, src, dst, engine, on_download)
            return "\n  ".join([_summary(report), *_details(report)])

        return run_batch(pairs, one, quiet=args.quiet, skip_existing=args.skip_existing)


def _matte_one(args: argparse.Namespace, config: MatteConfig, src: Path, dst: Path,
               engine: Engine | None, on_download: DownloadProgress) -> RunReport:
    with FileSource(src) as probe:
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

    report = matte_video(src, dst, config, on_progress=on_progress, on_download=on_download,
                         engine=engine, auth_tokens=hf_auth_tokens())
    bar.finish()
    return report


def _describe(outcome: Outcome) -> list[str]:
    return [_summary(outcome.report), *_details(outcome.report)] if outcome.report else []


def _summary(report: RunReport) -> str:
    return (f"wrote {report.output} ({report.format}): {report.frames_out} frames in "
            f"{report.elapsed_s:.1f} s ({report.fps:.1f} fps) with {report.engine}")


def _details(report: RunReport) -> list[str]:
    return ([f"audio: {track}" for track in report.audio_tracks]
            + [f"note: {note}" for note in report.notes])
