"""``streammatte``: argv → config → run. Each subcommand lives in ``streammatte.commands``.

Errors the user can fix print as one line (``streammatte: error: clip.mp4: no such file``) and
exit with status 2; Ctrl-C exits with 130 and leaves no partial output.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from . import __version__
from .commands.common import tidy_help
from .errors import StreamMatteError

#: exit status after Ctrl-C, as shells report a process ended by SIGINT
INTERRUPTED = 130
#: exit status when the reader of stdout went away (``streammatte models list | head``), as
#: shells report a process ended by SIGPIPE
BROKEN_PIPE = 141

#: subcommand name → module in streammatte.commands (each has add_parser(subparsers) and run)
COMMANDS: tuple[str, ...] = ("video", "image", "models", "bench", "serve", "live", "doctor",
                             "engines", "eval", "compare")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streammatte",
        description="Remove or replace the background of video files, images and live streams.",
    )
    parser.add_argument("--version", action="version", version=f"streammatte {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"streammatte.commands.{name}").add_parser(subparsers)
    tidy_help(parser)
    return parser


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    print(f"streammatte: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # what was typed, for reports that record the command that made them
    args.command_line = list(sys.argv[1:] if argv is None else argv)
    warnings.showwarning = _show_warning
    try:
        status: int = args.func(args)
        return status
    except KeyboardInterrupt:
        print("\nstreammatte: interrupted; no partial output was left", file=sys.stderr)
        return INTERRUPTED
    except StreamMatteError as exc:
        print(f"streammatte: error: {exc}", file=sys.stderr)
        return 2


def entry() -> NoReturn:
    """The process entry point (the ``streammatte`` script and ``python -m streammatte``)."""
    try:
        try:
            status = main()
        finally:  # also after --help's SystemExit: a reader that left early shows up here
            sys.stdout.flush()
    except BrokenPipeError:
        # Nothing more can reach the reader; point both streams at /dev/null so that the
        # interpreter's own flush at exit cannot raise again, and end quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.dup2(devnull, sys.stderr.fileno())
        status = BROKEN_PIPE
    if status == INTERRUPTED:
        # Outputs are already cleaned up. A worker that stopped a moment ago may still be in
        # OpenCV's or ONNX Runtime's thread-exit code, and a normal interpreter exit racing it
        # can abort the process (std::terminate) instead of exiting with 130.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":  # pragma: no cover
    entry()
