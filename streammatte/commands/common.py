"""Options shared by several subcommands, and the environment the CLI (not the library) reads."""

from __future__ import annotations

import argparse
import os
import re
from contextlib import nullcontext
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..config import DEFAULT_ENGINE, MatteConfig
from ..errors import ConfigError
from ..inference import BACKENDS
from ..refine import UPSAMPLERS
from ..report import ReportFile
from ..sinks.formats import CODECS, FORMATS, HARDWARE_ENCODERS, parse_bit_rate
from ..temporal import DEFAULT_FILE_DELAY, DEFAULT_FILE_MODE, temporal_modes

SubParsers = Any  # argparse's _SubParsersAction is private

# ``literal`` and `interpreted` text: the docstrings that double as descriptions are written
# for Sphinx and the README; a terminal shows the words alone
_MARKUP = re.compile(r"``(.+?)``|`([^`]+)`", re.DOTALL)


def plain_text(text: str) -> str:
    """``text`` without reStructuredText / Markdown quoting."""
    return _MARKUP.sub(lambda m: m.group(1) or m.group(2), text)


def tidy_help(parser: argparse.ArgumentParser) -> None:
    """Make the description and every help line of ``parser`` and its subcommands plain text."""
    if parser.description:
        parser.description = plain_text(parser.description)
    for action in parser._actions:
        if action.help and action.help != argparse.SUPPRESS:
            action.help = plain_text(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:  # the one-line summaries in the list
                choice.help = plain_text(choice.help) if choice.help else choice.help
            for sub in set(action.choices.values()):
                tidy_help(sub)


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine")
    group.add_argument("--engine", "-e", default=DEFAULT_ENGINE,
                       help="catalog model or builtin engine (see `streammatte models list`); "
                       f"default: {DEFAULT_ENGINE}")
    group.add_argument("--model-file", type=Path, metavar="PATH",
                       help="use this local ONNX file (verified against the catalog's sha256)")
    add_models_dir_option(group)
    group.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    group.add_argument("--backend", default="onnxruntime", choices=sorted(BACKENDS),
                       help="what runs the model (default: onnxruntime; trt needs "
                       "streammatte[trt] and a GPU; auto picks the fastest available)")
    group.add_argument("--input-size", type=parse_size, metavar="WxH",
                       help="model input size instead of the catalog's native one, where the "
                       "model accepts it (e.g. 512x512)")
    group.add_argument("--short-side", type=int, metavar="N",
                       help="scale frames so their short side is N before inference (models "
                       "with a free input size, e.g. modnet; default: the catalog's)")
    group.add_argument("--upsample", choices=UPSAMPLERS, default="bilinear",
                       help="alpha to frame size: bilinear, or guided by the frame's edges "
                       "(fast guided filter); default: bilinear")
    group.add_argument("--rembg-compat", action="store_true",
                       help="reproduce rembg's per-image min/max rescaling exactly (bit-parity "
                       "with rembg; flickers on video)")


def add_models_dir_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--models-dir``, read back with ``models_dir_from``."""
    parser.add_argument("--models-dir", type=Path, metavar="DIR",
                        help="model cache (default: $STREAMMATTE_MODELS_DIR or "
                        "~/.cache/streammatte/models)")


def parse_size(text: str) -> tuple[int, int]:
    """``"512x288"`` → (512, 288), for argparse."""
    try:
        w, h = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"expected positive sides, got {text!r}")
    return w, h


_TIME = re.compile(r"(?:(?:(\d+):)?(\d+):)?(\d+(?:\.\d*)?|\.\d+)")


def parse_time(text: str) -> float:
    """``"90"``, ``"90.5"``, ``"1:30.5"`` or ``"01:01:30.250"`` → seconds, for argparse."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"expected seconds or [HH:]MM:SS(.ms), got {text!r}") from None
    hours, minutes, seconds = match.groups()
    if minutes is not None and ((int(minutes) >= 60 and hours is not None)
                                or Fraction(seconds) >= 60):
        raise argparse.ArgumentTypeError(f"expected minutes and seconds under 60, got {text!r}")
    # exact until the end: the source reads the float back as the decimal that was typed
    return float(int(hours or 0) * 3600 + int(minutes or 0) * 60 + Fraction(seconds))


def add_trim_options(parser: argparse.ArgumentParser) -> None:
    """``--start``, ``--end``, ``--frames``: part of a video, read back by ``config_from``."""
    group = parser.add_argument_group(
        "trim", "part of the video, frame-accurate; the output's timestamps start at zero and "
        "its audio is cut to match")
    group.add_argument("--start", dest="start_s", type=parse_time, metavar="TIME",
                       help="begin at the first frame at or after TIME: seconds (90.5) or "
                       "[HH:]MM:SS(.ms), from the start of the file as ffmpeg -ss counts")
    group.add_argument("--end", dest="end_s", type=parse_time, metavar="TIME",
                       help="stop before TIME (same forms, from the start of the file)")
    group.add_argument("--frames", dest="max_frames", type=int, metavar="N",
                       help="at most N frames")


def hf_auth_tokens() -> dict[str, str]:
    """Tokens for gated model hosts, from the environment (the CLI's job, not the library's)."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    return {"huggingface.co": token} if token else {}


def add_output_options(parser: argparse.ArgumentParser, *, video: bool) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("--background", "-b", default="auto",
                       help="transparent, blur, a colour (green, #00ff00) or an image/video "
                       "path; default: transparent where the format has alpha, else white")
    if video:
        group.add_argument("--format", "-f", dest="output_format", default="auto",
                           choices=["auto", *FORMATS],
                           help="default: from the output extension (.mp4 H.264, .mov ProRes "
                           "4444, .webm VP9 alpha, .gif GIF, .nut raw RGBA, .y4m raw YUV, no "
                           "extension: PNG sequence); on stdout (-o -), the codec in Matroska "
                           "(VP9 alpha, or H.264 over a --background), or nut/y4m as they are")
        group.add_argument("--temporal", default=DEFAULT_FILE_MODE, choices=temporal_modes(),
                           help="temporal smoothing of the matte (default: "
                           f"{DEFAULT_FILE_MODE}, which looks {DEFAULT_FILE_DELAY} frames "
                           "ahead; none: per frame)")
        group.add_argument("--batch-size", type=int, default=1,
                           help="frames per inference call, where the model allows (default: 1)")
        group.add_argument("--strict", action="store_true",
                           help="fail on the first damaged packet instead of concealing it")
    else:
        group.add_argument("--only-mask", action="store_true", help="write the matte alone")
    replace = group.add_mutually_exclusive_group()
    replace.add_argument("--overwrite", "-y", action="store_true",
                         help="replace an existing output")
    replace.add_argument("--skip-existing", action="store_true",
                         help="leave an existing output as it is and do not redo it (outputs "
                         "appear only when finished, so a stopped batch resumes)")
    group.add_argument("--quiet", "-q", action="store_true", help="no progress or summary")


def models_dir_from(args: argparse.Namespace) -> Path | None:
    if getattr(args, "models_dir", None):
        return Path(args.models_dir)
    env = os.environ.get("STREAMMATTE_MODELS_DIR")
    return Path(env) if env else None


def config_from(args: argparse.Namespace) -> MatteConfig:
    options: dict[str, Any] = {
        "engine": args.engine,
        "model_file": args.model_file,
        "models_dir": models_dir_from(args),
        "device": args.device,
        "backend": args.backend,
        "rembg_compat": args.rembg_compat,
        "background": args.background,
    }
    for name in ("output_format", "temporal", "upsample", "batch_size", "strict", "input_size",
                 "short_side", "overwrite"):
        if hasattr(args, name):
            options[name] = getattr(args, name)
    for name in ("start_s", "end_s", "max_frames"):  # the trim, where given
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    if getattr(args, "only_mask", False):
        options["output_format"] = "matte"
    options.update(mask_and_encoding_from(args))
    return MatteConfig.from_options(options)


def add_encoding_options(parser: argparse.ArgumentParser) -> None:
    """``--codec``, ``--crf``, ``--preset``, ``--bitrate``: the video encoder."""
    group = parser.add_argument_group("encoding")
    group.add_argument("--codec", type=str.lower, choices=["auto", *CODECS, *HARDWARE_ENCODERS],
                       help="video codec within the output's container (default: the format's: "
                       "H.264 for .mp4, ProRes for .mov, VP9 for .webm); auto, or an NVENC "
                       "encoder, uses the GPU's encoder when it opens and falls back to "
                       "software with a note")
    group.add_argument("--crf", type=int, metavar="N",
                       help="constant quality, lower is better: 0-51 for h264/hevc (default 18 "
                       "and 22), 0-63 for av1/vp9 (default 32 and 30)")
    group.add_argument("--preset", metavar="NAME",
                       help="encoder speed: x264's ultrafast ... placebo for h264/hevc (default "
                       "fast), 0-13 for av1 (13 fastest; default 8), 0-8 for vp9 (default 4)")
    group.add_argument("--bitrate", type=_bit_rate, metavar="RATE",
                       help="target bit rate instead of constant quality, e.g. 5M or 2500k")


def _bit_rate(text: str) -> int:
    try:
        return parse_bit_rate(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_mask_options(parser: argparse.ArgumentParser) -> None:
    """Threshold, shrink/grow, feather and despill (``streammatte.mask``)."""
    group = parser.add_argument_group(
        "mask", "applied after temporal smoothing, before compositing, in this order")
    group.add_argument("--threshold", type=float, metavar="T",
                       help="a hard mask: alpha >= T (0-1, e.g. 0.5) is foreground, the rest "
                       "background")
    size = group.add_mutually_exclusive_group()
    size.add_argument("--shrink", type=int, default=0, metavar="PX", dest="shrink_px",
                      help="erode the mask by PX pixels (cuts a halo of the old background; "
                      "default: 0)")
    size.add_argument("--grow", type=int, default=0, metavar="PX", dest="grow_px",
                      help="dilate the mask by PX pixels (keeps thin parts; default: 0)")
    group.add_argument("--feather", type=float, default=0, metavar="PX", dest="feather_px",
                       help="soften the edge so it ramps over about PX pixels (default: 0)")
    group.add_argument("--despill", action="store_true",
                       help="remove the old background's colour from soft edges (green spill, "
                       "dark halos) in the composite and the foreground")


def add_report_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--report", type=Path, metavar="FILE.json",
                        help="write a machine-readable run report (frames, engine, device, "
                        "timings per stage, notes, audio, outputs; docs/run-report.md), "
                        "replaced only with --overwrite")


def report_file(args: argparse.Namespace, command: str) -> ReportFile | nullcontext[None]:
    """The ``--report`` file, staged before any work (None without ``--report``)."""
    if getattr(args, "report", None) is None:
        return nullcontext()
    report: Path = args.report
    outputs = [args.output, getattr(args, "output_matte", None),
               getattr(args, "output_foreground", None)]
    for output in outputs:
        if output is not None and output.resolve() == report.resolve():
            raise ConfigError(f"{report}: the report would overwrite an output; choose "
                              "another path")
    return ReportFile(report, command, overwrite=getattr(args, "overwrite", False),
                      inputs=list(args.input), argv=getattr(args, "command_line", None))


def mask_and_encoding_from(args: argparse.Namespace) -> dict[str, Any]:
    """The MatteConfig options of ``add_mask_options`` and ``add_encoding_options``."""
    options: dict[str, Any] = {}
    for name in ("threshold", "shrink_px", "grow_px", "feather_px", "despill", "codec", "crf",
                 "preset"):
        if hasattr(args, name):
            options[name] = getattr(args, name)
    if hasattr(args, "bitrate"):
        options["bitrate_bps"] = args.bitrate
    return options
