"""Real filesystems for fault tests: a small tmpfs that fills up, a read-only bind mount.

Both need root (mount(2)); a test that cannot have them skips, saying why.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a real tmpfs or read-only bind mount needs root")
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"mount {' '.join(args)} failed: {result.stderr.strip()}")


def _unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``"300k"``) mounted at ``path``: a disk that fills up for real."""
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        _unmount(path)


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` (a folder) bind-mounted read-only onto itself: even root cannot write there."""
    path.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(path), str(path))
    try:
        result = subprocess.run(["mount", "-o", "remount,bind,ro", str(path)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"remounting {path} read-only failed: {result.stderr.strip()}")
        yield path
    finally:
        _unmount(path)
