"""Publishing outputs: nothing is lost, whatever the user types.

Every writer (video files, PNG-sequence folders, still images; batch mode and server jobs go
through them) stages its output as a hidden temporary file or folder beside the target,
``.NAME.partial-PID-RANDOM[.ext]``, and publishes it in one step when it is complete.

- What the output path may be is decided before any work (:func:`check_output`): never an
  input, a folder that holds an input, or the current directory. ``overwrite`` may replace
  only a regular file, or a PNG-sequence folder that streammatte wrote: it holds
  :data:`MANIFEST` and nothing but frame PNGs and ``audio.mka``. Anything else at the path is
  refused with one line saying why.
- Without ``overwrite`` the output is published with a no-clobber step (``os.link`` for files,
  ``renameat2(RENAME_NOREPLACE)`` for folders, and an exclusive placeholder where neither is
  available), so a run that races another one to the same new path never replaces its
  result: it gets :class:`OutputExistsError` and keeps its own result under another name.
- With ``overwrite`` a file is replaced by ``os.replace`` and a folder by an atomic exchange;
  the folder swapped out loses only the files a PNG sequence is made of.
- Temporary outputs left by a run that was killed (SIGKILL, power loss) are removed by the
  next run into the same folder, once their process is gone. The temporary name carries the
  host as well as the pid, ``.NAME.partial-PID-RANDOM@HOST``: on a shared folder (a cluster
  on NFS) a pid can be judged only on its own host, so another host's are left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import socket
import stat
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

from ..errors import ConfigError, SinkError

#: the file that marks a folder as a PNG sequence streammatte wrote
MANIFEST = ".streammatte-sequence.json"

_SEQUENCE_FILE = re.compile(r"frame_\d{6}\.png|audio\.mka|" + re.escape(MANIFEST))
_PARTIAL = re.compile(r"\..+\.partial-(?P<pid>[1-9]\d*)-[0-9a-f]{8}(@(?P<host>[\w-]+))?"
                      r"(\.[A-Za-z0-9]+)?", re.ASCII)
#: errno values that mean "this filesystem cannot do that", not "that failed"
_UNSUPPORTED = {errno.EPERM, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP,
                errno.EMLINK, errno.EXDEV}
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class OutputExistsError(SinkError):
    """Something appeared at the output path while the run was writing it (another run?).

    ``kept`` is where this run's finished result was kept instead, or None when it could not
    be kept and was removed; the message says which.
    """

    def __init__(self, message: str, kept: Path | None) -> None:
        super().__init__(message)
        self.kept = kept


def write_error(path: Path, exc: OSError, doing: str = "cannot write") -> SinkError:
    """``exc`` as one line naming the user's output ``path``: a SinkError that keeps the
    errno (so a batch can tell a full disk from a bad file)."""
    reason = exc.strerror or str(exc)
    error = SinkError(f"{path}: {doing}: {reason}")
    error.errno = exc.errno
    return error


def is_sequence_folder(path: Path) -> str | None:
    """None if ``path`` is a PNG-sequence folder streammatte wrote, else why it is not."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return f"it has no {MANIFEST}, so streammatte did not write it"
    if not isinstance(manifest, dict) or manifest.get("written_by") != "streammatte":
        return f"its {MANIFEST} was not written by streammatte"
    others = []
    with os.scandir(path) as entries:
        for entry in entries:
            if not (_SEQUENCE_FILE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)):
                others.append(entry.name)
    if others:
        shown = ", ".join(sorted(others)[:3]) + (", …" if len(others) > 3 else "")
        return f"it holds other content ({shown})"
    return None


def write_manifest(folder: Path, frames: int) -> None:
    """Mark ``folder`` as a PNG sequence streammatte wrote (what ``overwrite`` may replace)."""
    from .. import __version__

    (folder / MANIFEST).write_text(json.dumps(
        {"written_by": "streammatte", "version": __version__, "frames": frames}) + "\n")


def _contains(outer: Path, inner: Path) -> bool:
    return outer == inner or outer in inner.parents


def check_output(path: Path, *, folder: bool, overwrite: bool,
                 inputs: Iterable[Path] = ()) -> None:
    """Refuse, with one line saying why, an output path that would lose something.

    ``folder``: the output is a PNG-sequence folder (else a file). Raises ConfigError for a
    path that may never be an output (an input, a folder holding an input, the current
    directory) and SinkError for what is at the path (exists without ``overwrite``, a folder
    where a file is asked for or the reverse, a folder streammatte did not write).
    """
    target = path.resolve()
    for source in inputs:
        real = source.resolve()
        if real == target or (path.exists() and source.exists()
                              and os.path.samefile(path, source)):
            raise ConfigError(f"{path}: output would overwrite the input; choose another path")
        if _contains(target, real):
            raise ConfigError(f"{path}: holds the input {source}; choose another output path")
    if _contains(target, Path.cwd().resolve()):
        raise ConfigError(f"{path}: is the current directory or holds it; choose a new path "
                          "for the output")
    try:
        st = path.lstat()
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise SinkError(f"{path.parent}: output folder does not exist") from None
        return
    if stat.S_ISLNK(st.st_mode):
        raise SinkError(f"{path}: is a symbolic link; streammatte replaces only a regular file "
                        "or a PNG-sequence folder it wrote")
    if folder and not stat.S_ISDIR(st.st_mode):
        raise SinkError(f"{path}: is a file, and a PNG sequence is written to a folder")
    if not folder and stat.S_ISDIR(st.st_mode):
        raise SinkError(f"{path}: is a folder, and this output is a file; choose a file name")
    if not folder and not stat.S_ISREG(st.st_mode):
        raise SinkError(f"{path}: is not a regular file; choose another path")
    if not overwrite:
        raise SinkError(f"{path}: already exists (pass --overwrite to replace it)")
    if folder and (why := is_sequence_folder(path)):
        raise SinkError(f"{path}: --overwrite replaces only a PNG-sequence folder streammatte "
                        f"wrote, and {why}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _remove_partial(path: Path) -> None:
    """Remove a temporary output: a file, or a folder of the files a PNG sequence is made of
    (anything else in it stays, and so does the folder)."""
    if not path.is_dir() or path.is_symlink():
        path.unlink(missing_ok=True)
        return
    with os.scandir(path) as entries:
        for entry in entries:
            if _SEQUENCE_FILE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
    with contextlib.suppress(OSError):
        path.rmdir()


def _host_tag() -> str:
    """This host as the temporary name carries it (letters, digits, ``_`` and ``-``)."""
    return re.sub(r"[^\w-]", "_", socket.gethostname(), flags=re.ASCII)[:64] or "host"


def sweep_stale_partials(folder: Path) -> list[Path]:
    """Remove the temporary outputs in ``folder`` whose process is gone (a run that was
    killed); returns what was removed. Only names of the ``.NAME.partial-PID-RANDOM[@HOST]``
    form are looked at, and only this host's (a name without a host counts as this host's)."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    here = _host_tag()
    for entry in entries:
        match = _PARTIAL.fullmatch(entry.name)
        if match is None or match["host"] not in (None, here) or _pid_alive(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            _remove_partial(Path(entry.path))
            removed.append(Path(entry.path))
    return removed


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """renameat2(2); False where the C library or the filesystem does not offer it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return False
    if function(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(dst))  # EEXIST comes out as FileExistsError


def move_no_clobber(src: Path, dst: Path) -> None:
    """Move ``src`` (a file or folder) to ``dst``; FileExistsError if ``dst`` exists, and then
    nothing at ``dst`` is touched."""
    if not src.is_dir():
        try:
            os.link(src, dst)
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
        else:
            os.unlink(src)
            return
    if _renameat2(src, dst, _RENAME_NOREPLACE):
        return
    # Last resort: take the name with an exclusive create, then rename over that placeholder
    # (rename(2) replaces an empty folder). Whoever loses the create loses the race.
    if src.is_dir():
        os.mkdir(dst)
    else:
        os.close(os.open(dst, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    placeholder = os.lstat(dst)
    try:
        os.rename(src, dst)
    except OSError:
        # take back the placeholder only while it is still ours and empty
        with contextlib.suppress(OSError):
            now = os.lstat(dst)
            if (now.st_ino, now.st_dev) == (placeholder.st_ino, placeholder.st_dev):
                if stat.S_ISDIR(now.st_mode):
                    os.rmdir(dst)  # only if still empty
                elif now.st_size == 0:
                    os.unlink(dst)
        raise


def _partial_name(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                          f"@{_host_tag()}{suffix}")


class StagedOutput:
    """A temporary file or folder beside ``path``, published there in one step.

    Creating it checks the path (:func:`check_output`), sweeps stale partials from the folder
    and creates the temporary output at once, so a missing or read-only folder fails before
    any work. Write to ``temp``, then call :meth:`publish`; leaving the ``with`` block without
    publishing (or on an exception) removes it. ``suffix`` ends the temporary name (encoders
    pick the container by it).
    """

    def __init__(self, path: str | os.PathLike[str], *, folder: bool, overwrite: bool,
                 suffix: str = "", inputs: Sequence[Path] = ()) -> None:
        self.path = Path(path)
        self.folder = folder
        self.overwrite = overwrite
        check_output(self.path, folder=folder, overwrite=overwrite, inputs=inputs)
        sweep_stale_partials(self.path.parent)
        temp = _partial_name(self.path, suffix)
        try:
            if folder:
                temp.mkdir(mode=0o777)
            else:
                # Not tempfile.mkstemp: its 0600 mode would survive the rename; this gets the
                # user's umask like any file they create.
                os.close(os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except OSError as exc:
            raise write_error(self.path, exc, f"cannot write into {self.path.parent}") from exc
        self.temp: Path | None = temp

    def publish(self) -> Path:
        """Move the finished output into place; returns the output path.

        Raises OutputExistsError when, without ``overwrite``, something appeared at the path
        meanwhile (this run's result is then kept under the name the error gives, or removed
        if that fails too), and SinkError for any other failure (the temporary output is then
        removed).
        """
        temp = self.temp
        if temp is None:
            raise SinkError(f"{self.path}: already published or discarded")
        try:
            if self.overwrite:
                self._replace(temp)
            else:
                move_no_clobber(temp, self.path)
        except FileExistsError:
            raise self._keep_elsewhere(temp) from None
        except SinkError:
            self.discard()
            raise
        except OSError as exc:
            self.discard()
            raise write_error(self.path, exc, "cannot publish the finished output") from exc
        except BaseException:
            self.discard()
            raise
        self.temp = None
        return self.path

    def _replace(self, temp: Path) -> None:
        # The path was checked before the run; check again, as it may have changed since.
        check_output(self.path, folder=self.folder, overwrite=True)
        if not self.folder or not self.path.exists():
            if self.folder:
                move_no_clobber(temp, self.path)
            else:
                os.replace(temp, self.path)
            return
        if not _renameat2(temp, self.path, _RENAME_EXCHANGE):
            # no atomic exchange here: move the old folder aside under a partial name (a
            # later run sweeps it if this one dies now), then put the new one in place
            aside = _partial_name(self.path, "")
            os.rename(self.path, aside)
            try:
                move_no_clobber(temp, self.path)
            except OSError:
                os.rename(aside, self.path)
                raise
            temp = aside
        _remove_partial(temp)  # the old sequence, now under the temporary name

    def _keep_elsewhere(self, temp: Path) -> OutputExistsError:
        stem, suffix = (self.path.name, "") if self.folder else (self.path.stem,
                                                                 self.path.suffix)
        for n in range(1, 100):
            candidate = self.path.with_name(f"{stem}-{n}{suffix}")
            try:
                move_no_clobber(temp, candidate)
            except FileExistsError:
                continue
            except OSError:
                break
            self.temp = None
            return OutputExistsError(
                f"{self.path}: appeared while this run was writing it (another run?); it was "
                f"left as it is, and this run's result was kept as {candidate}", candidate)
        self.discard()
        return OutputExistsError(
            f"{self.path}: appeared while this run was writing it (another run?); it was left "
            "as it is, and this run's result was removed", None)

    def discard(self) -> None:
        """Remove the temporary output (nothing is published). Safe to call twice."""
        if self.temp is not None:
            with contextlib.suppress(OSError):
                _remove_partial(self.temp)
            self.temp = None

    def __enter__(self) -> StagedOutput:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.discard()


def publish_all(outputs: Sequence[StagedOutput]) -> list[Path]:
    """Publish the finished outputs of one run (a composite and its matte, say); returns
    their paths.

    Call it only once every output is complete: a run that fails before that publishes none
    of them (each is discarded), so outputs never disagree about which frames they hold.
    Publishing is one step per output, and there is no atomic step across files: when one
    cannot be published (another run took its name, an OS error), the others are still
    published, and one SinkError (an OutputExistsError when that was the cause, saying where
    the result was kept) names the output that failed and those that were published.
    """
    published: list[Path] = []
    failed: list[SinkError] = []
    for staged in outputs:
        try:
            published.append(staged.publish())
        except SinkError as exc:
            failed.append(exc)
    if not failed:
        return published
    done = ", ".join(str(p) for p in published) or "none"
    message = f"{'; '.join(str(e) for e in failed)} (the run's other outputs published: {done})"
    first = failed[0]
    if isinstance(first, OutputExistsError) and len(failed) == 1:
        raise OutputExistsError(message, first.kept) from first
    error = SinkError(message)
    error.errno = first.errno
    raise error from first
