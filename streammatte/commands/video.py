"""``streammatte video IN -o OUT``: matte a video file (or several: ``IN… -o FOLDER``; or a
stream: ``-`` reads stdin, ``-o -`` writes stdout)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..api import RunReport, matte_video, open_configured_engine
from ..cluster.work import Outcome
from ..config import MatteConfig
from ..errors import ConfigError, StreamMatteError
from ..inference import Engine
from ..pipeline import PipelineStats
from ..progress import DownloadProgress, ProgressLine
from ..report import ReportFile, RunEntry, entry_from
from ..sinks.formats import FORMATS, auto_format
from ..sources.file import FileSource, is_stdio
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
    add_encoding_options,
    add_engine_options,
    add_mask_options,
    add_output_options,
    add_report_option,
    add_trim_options,
    config_from,
    hf_auth_tokens,
    report_file,
)


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("video", help="remove or replace the background of a video",
                                   description=__doc__)
    parser.add_argument("input", type=Path, nargs="+",
                        help="video file (MP4, MOV, MKV, WebM, AVI, …); several files or "
                        "folders make a batch; - reads a stream from stdin (Matroska, "
                        "MPEG-TS, NUT, y4m)")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="output file (.mp4, .mov, .webm, .mkv, .gif, .nut, .y4m) or "
                        "directory for PNG frames; for a batch, the folder that receives one "
                        "result per input; - writes a stream to stdout (Matroska with the "
                        "format's codec, or nut/y4m/gif as they are)")
    parser.add_argument("--output-matte", "--output-alpha", type=Path, metavar="PATH",
                        dest="output_matte",
                        help="also write the matte: greyscale .mp4/.mov/.mkv, or a folder of "
                        "PNGs (for a batch: a folder, one <name>.mp4 per input)")
    parser.add_argument("--output-foreground", type=Path, metavar="PATH",
                        dest="output_foreground",
                        help="also write the foreground with alpha: .mov, .webm, .mkv, .gif or "
                        "a folder of PNGs (for a batch: a folder, one <name>.webm per input)")
    add_engine_options(parser)
    add_output_options(parser, video=True)
    add_cluster_options(parser, video=True)
    add_encoding_options(parser)
    add_mask_options(parser)
    add_trim_options(parser)
    add_report_option(parser)
    parser.set_defaults(func=run)


def batch_suffix(config: MatteConfig) -> str:
    """A batch output's suffix: the chosen format's, else H.264 MP4 over a background and VP9
    WebM with alpha without one (what a single run picks from the output's extension)."""
    if config.output_format != "auto":
        return FORMATS[config.output_format].extension  # "" for PNG: a folder per clip
    if config.codec in CODEC_SUFFIXES:
        return CODEC_SUFFIXES[config.codec]
    return auto_format(config.background).extension


def _check_pipes(inputs: list[Path], output: Path) -> None:
    """Refuse a pipe that cannot work, before anything runs."""
    if any(is_stdio(p) for p in inputs):
        if len(inputs) > 1:
            raise ConfigError("stdin (-) is the one input of a run: give it alone")
        if sys.stdin.isatty():
            raise ConfigError("stdin is a terminal: pipe a video into it (ffmpeg -i IN -f "
                              "matroska - | streammatte video - -o OUT)")
    if is_stdio(output):
        if is_batch(inputs):
            raise ConfigError("a batch writes one result per input into a folder; stdout "
                              "(-o -) takes the result of one input")
        if sys.stdout.isatty():
            raise ConfigError("stdout is a terminal: send the video into a pipe or a file "
                              "(-o - | ffmpeg -i - OUT)")


#: a batch's file suffix for each --codec (with no --format)
CODEC_SUFFIXES = {"h264": ".mp4", "hevc": ".mp4", "av1": ".mp4", "prores": ".mov",
                  "vp9": ".webm", "h264_nvenc": ".mp4", "hevc_nvenc": ".mp4", "av1_nvenc": ".mp4"}


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    with report_file(args, "video") as report_to:
        return _run(args, config, report_to)


def _run(args: argparse.Namespace, config: MatteConfig, report_to: ReportFile | None) -> int:
    on_download = DownloadProgress(enabled=None if not args.quiet else False)
    _check_pipes(args.input, args.output)
    if not is_batch(args.input):
        if not is_stdio(args.output) and skip_single(
                args.output, skip_existing=args.skip_existing, quiet=args.quiet):
            if report_to is not None:
                report_to.add(RunEntry(args.input[0], status="skipped"))
            return 0
        if wants_cluster(args):
            return run_on_cluster(args, config, [(args.input[0], args.output)], "video",
                                  _describe, batch=False, report_to=report_to)
        report = _matte_one(args, config, args.input[0], args.output, None, on_download,
                            report_to)
        if not args.quiet:
            print(_summary(report), file=sys.stderr)
            for line in _details(report):
                print(f"  {line}", file=sys.stderr)
        return 0
    files = expand_inputs(args.input, VIDEO_SUFFIXES, "video")
    pairs = plan_outputs(files, args.output, batch_suffix(config))
    if wants_cluster(args):
        return run_on_cluster(args, config, pairs, "video", _describe, report_to=report_to)
    extras = _batch_extra_folders(args)
    with open_configured_engine(config, on_download, hf_auth_tokens()) as engine:
        def one(src: Path, dst: Path) -> str:
            engine.reset()  # a background model must not carry one clip into the next
            report = _matte_one(args, config, src, dst, engine, on_download, report_to,
                                {kind: folder / f"{src.stem}{suffix}"
                                 for kind, (folder, suffix) in extras.items()})
            return "\n  ".join([_summary(report), *_details(report)])

        return run_batch(pairs, one, quiet=args.quiet, skip_existing=args.skip_existing,
                         report=report_to)


def _batch_extra_folders(args: argparse.Namespace) -> dict[str, tuple[Path, str]]:
    """A batch's --output-matte / --output-foreground: folders beside the output folder, one
    result per input in each."""
    extras = {kind: (folder, suffix) for kind, folder, suffix in (
        ("matte", args.output_matte, ".mp4"), ("foreground", args.output_foreground, ".webm"))
        if folder is not None}
    folders = [args.output, *[folder for folder, _ in extras.values()]]
    if len({f.resolve() for f in folders}) < len(folders):
        raise ConfigError("a batch writes each kind of output into its own folder: give -o, "
                          "--output-matte and --output-foreground different folders")
    for folder, _ in extras.values():
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{folder}: several inputs need an output folder, and this is "
                              "a file")
        folder.mkdir(parents=True, exist_ok=True)
    return extras


def _matte_one(args: argparse.Namespace, config: MatteConfig, src: Path, dst: Path,
               engine: Engine | None, on_download: DownloadProgress,
               report_to: ReportFile | None = None, extras: dict[str, Path] | None = None
               ) -> RunReport:
    if extras is None:
        extras = {kind: path for kind, path in (("matte", args.output_matte),
                                                ("foreground", args.output_foreground))
                  if path is not None}
    entry = None if report_to is None else report_to.add(RunEntry(src, status="failed"))
    try:
        report = _matte_and_show(args, config, src, dst, engine, on_download, extras)
    except StreamMatteError as exc:
        if entry is not None:
            entry.error = str(exc)
        raise
    if entry is not None:
        entry_from(entry, report)
    return report


def _matte_and_show(args: argparse.Namespace, config: MatteConfig, src: Path, dst: Path,
                    engine: Engine | None, on_download: DownloadProgress,
                    extras: dict[str, Path]) -> RunReport:
    total, described = config.max_frames, None
    if not is_stdio(src):  # stdin can be read once: the run itself describes nothing
        with FileSource(src, decode_range=config.decode_range()) as probe:
            total = probe.expected_frames
            described = probe.describe()
    bar = ProgressLine(total, enabled=None if not args.quiet else False)
    started = False

    def on_progress(stats: PipelineStats) -> None:
        nonlocal started
        if not started and not args.quiet and described:  # once the options are known good
            print(described, file=sys.stderr)
        started = True
        bar.update(stats.frames_out, stats.elapsed_s)

    report = matte_video(src, dst, config, on_progress=on_progress, on_download=on_download,
                         engine=engine, auth_tokens=hf_auth_tokens(),
                         matte_output=extras.get("matte"),
                         foreground_output=extras.get("foreground"))
    bar.finish()
    return report


def _describe(outcome: Outcome) -> list[str]:
    return [_summary(outcome.report), *_details(outcome.report)] if outcome.report else []


def _summary(report: RunReport) -> str:
    encoder = report.outputs[0].encoder if report.outputs else None
    what = f"{report.format}, {encoder}" if encoder else report.format
    output = "stdout" if is_stdio(report.output) else report.output
    return (f"wrote {output} ({what}): {report.frames_out} frames in "
            f"{report.elapsed_s:.1f} s ({report.fps:.1f} fps) with {report.engine}")


def _details(report: RunReport) -> list[str]:
    return ([f"also wrote {out.path} ({out.kind}, {out.encoder or out.format}"
             + "".join(f"; audio: {track}" for track in out.audio_tracks) + ")"
             for out in report.outputs[1:]]
            + [f"audio: {track}" for track in report.audio_tracks]
            + [f"note: {note}" for note in report.notes])
