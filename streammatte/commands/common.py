"""Options shared by several subcommands, and the environment the CLI (not the library) reads."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from ..config import DEFAULT_ENGINE, MatteConfig
from ..inference import BACKENDS
from ..refine import UPSAMPLERS
from ..sinks.formats import FORMATS
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
                           "4444, .webm VP9 alpha, no extension: PNG sequence)")
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
    if getattr(args, "only_mask", False):
        options["output_format"] = "matte"
    return MatteConfig.from_options(options)
