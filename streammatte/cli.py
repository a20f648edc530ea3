"""``streammatte``: argv → config → run. Each subcommand lives in ``streammatte.commands``.

Errors the user can fix print as one line (``streammatte: error: clip.mp4: no such file``) and
exit with status 2, and so does any OS error (a full disk, a read-only folder); Ctrl-C exits
with 130 and SIGTERM with 143, both leaving no partial output (a stream on stdout, which has
gone out as it was written, just ends early).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn

from . import __version__
from .commands.common import tidy_help
from .errors import StreamMatteError

#: exit status after Ctrl-C, as shells report a process ended by SIGINT
INTERRUPTED = 130
#: exit status after SIGTERM (128 + 15)
TERMINATED = 143
#: exit status when the reader of stdout went away (``streammatte models list | head``), as
#: shells report a process ended by SIGPIPE
BROKEN_PIPE = 141


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds (and cleans up) as Ctrl-C does."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

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
        with _sigterm_as_interrupt():
            status: int = args.func(args)
        return status
    except Terminated:
        print(f"\nstreammatte: terminated; {_left_behind(args)}", file=sys.stderr)
        return TERMINATED
    except KeyboardInterrupt:
        print(f"\nstreammatte: interrupted; {_left_behind(args)}", file=sys.stderr)
        return INTERRUPTED
    except StreamMatteError as exc:
        print(f"streammatte: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise
    except OSError as exc:
        # what no layer below put into words (a disk filling up under a library call)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"streammatte: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


def _left_behind(args: argparse.Namespace) -> str:
    """What a stopped run leaves: no partial file, but what went to stdout is already out."""
    from .sources.file import is_stdio

    output = getattr(args, "output", None)
    if output is not None and is_stdio(output):
        return "the stream on stdout ends early here; no partial file was left"
    return "no partial output was left"


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
    if status in (INTERRUPTED, TERMINATED):
        # Outputs are already cleaned up. A worker that stopped a moment ago may still be in
        # OpenCV's or ONNX Runtime's thread-exit code, and a normal interpreter exit racing it
        # can abort the process (std::terminate) instead of exiting with 130.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":  # pragma: no cover
    entry()
