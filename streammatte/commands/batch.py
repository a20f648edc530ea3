"""Many inputs, one output folder: ``streammatte video a.mp4 b.mov clips/ -o out/``.

What ``rembg p`` does for folders of images, for clips too: the engine is opened once and
reused, each input gets its own output named after it, a file that fails is reported and the
batch goes on, and the exit status says whether every file made it. A full disk (or a
read-only output folder) stops the batch at once: the files after it would fail the same way.
Ctrl-C stops the batch; files finished before it are kept (each one was written to a
temporary name and renamed).
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import ConfigError, SinkError, StreamMatteError
from ..report import ReportFile, RunEntry
from ..sinks.publish import write_error

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg",
                            ".ts", ".mts", ".wmv", ".flv"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
#: errors of the output folder itself, not of one file: the rest of a batch would fail alike
FOLDER_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def is_batch(inputs: Sequence[Path]) -> bool:
    """Several inputs, or one folder: the output is a folder of results."""
    return len(inputs) > 1 or inputs[0].is_dir()


def expand_inputs(inputs: Sequence[Path], suffixes: frozenset[str], what: str) -> list[Path]:
    """Files as given, folders replaced by the ``suffixes`` files directly inside them
    (sorted); an empty folder or a missing path is an error that names it."""
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                raise ConfigError(f"{path}: no {what} files in this folder (looked for "
                                  f"{', '.join(sorted(suffixes))})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"{path}: no such file or folder")
    return files


def plan_outputs(files: Sequence[Path], out_dir: Path, suffix: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs, ``out_dir/<input stem><suffix>``; two inputs that would write the
    same output are refused before anything runs."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: several inputs need an output folder, and this is a file")
    seen: dict[Path, Path] = {}
    inputs = {src.resolve() for src in files}
    pairs = []
    for src in files:
        dst = out_dir / f"{src.stem}{suffix}"
        if dst.resolve() in inputs:
            raise ConfigError(f"{dst}: the output would overwrite an input; choose another "
                              "output folder")
        if dst in seen:
            raise ConfigError(f"{seen[dst]} and {src} would both write {dst}: rename one, or "
                              "run them separately")
        seen[dst] = src
        pairs.append((src, dst))
    return pairs


def skip_single(output: Path, *, skip_existing: bool, quiet: bool) -> bool:
    """``--skip-existing`` for one input: True (and said) when its output is already there."""
    if not (skip_existing and output.exists()):
        return False
    if not quiet:
        print(f"skipped: {output} exists", file=sys.stderr)
    return True


def make_output_folder(pairs: Sequence[tuple[Path, Path]]) -> None:
    """Create the folder a batch writes into (SinkError naming it if it cannot be)."""
    if pairs:
        folder = pairs[0][1].parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(folder, exc, "cannot create the output folder") from exc


def run_batch(pairs: Sequence[tuple[Path, Path]], one: Callable[[Path, Path], str], *,
              quiet: bool, skip_existing: bool = False, report: ReportFile | None = None
              ) -> int:
    """Run ``one(input, output)`` (returns a line to show) for every pair; 0 if all succeeded,
    2 if any failed (each failure is printed as it happens and listed at the end).

    With ``skip_existing``, a pair whose output is already there is passed over: outputs are
    renamed into place only when finished, so an existing one is a whole result, and a batch
    that was stopped can be run again to do only what is left. ``one`` puts each input it
    runs into ``report`` (the ``--report`` file), done or failed; inputs passed over are put
    there as skipped.
    """
    make_output_folder(pairs)
    failed: list[tuple[Path, str]] = []
    skipped = 0
    for n, (src, dst) in enumerate(pairs, 1):
        if skip_existing and dst.exists():
            skipped += 1
            if report is not None:
                report.add(RunEntry(src, status="skipped"))
            if not quiet:
                print(f"[{n}/{len(pairs)}] {src}: skipped, {dst} exists", file=sys.stderr)
            continue
        if not quiet:
            print(f"[{n}/{len(pairs)}] {src}", file=sys.stderr)
        try:
            line = one(src, dst)
        except StreamMatteError as exc:
            if isinstance(exc, SinkError) and exc.errno in FOLDER_FULL:
                done = n - 1 - len(failed) - skipped
                raise SinkError(f"{exc}; the batch stopped at {src} ({n} of {len(pairs)}): "
                                f"{done} done before it, {len(pairs) - n} not started") from exc
            failed.append((src, str(exc)))
            print(f"streammatte: error: {exc}", file=sys.stderr)
            continue
        if not quiet:
            print(f"  {line}", file=sys.stderr)
    return report_tally(len(pairs), failed, skipped, quiet=quiet)


def report_tally(total: int, failed: Sequence[tuple[Path, str]], skipped: int, *,
                 quiet: bool) -> int:
    """The batch's last word: how many were done and skipped, every failure again; the exit
    status (2 if any failed)."""
    done = total - len(failed) - skipped
    tally = f"{done} of {total} done" + (f", {skipped} skipped (output exists)"
                                         if skipped else "")
    if failed:
        print(f"streammatte: {tally}; failed:", file=sys.stderr)
        for src, message in failed:
            print(f"  {src}: {message}", file=sys.stderr)
        return 2
    if not quiet:
        print(tally, file=sys.stderr)
    return 0
