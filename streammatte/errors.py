"""The exception hierarchy.

Every error the library raises on purpose is a :class:`StreamMatteError`, and also the builtin that
best describes it (PyAV's habit), so ``except OSError`` still catches a missing input file.
Messages name the thing at fault and what was expected, e.g.
``clip.mp4: no video stream (found: audio)``.
"""

from __future__ import annotations


class StreamMatteError(Exception):
    """Root of every error streammatte raises on purpose."""


class ConfigError(StreamMatteError, ValueError):
    """An option or combination of options is invalid."""


class SourceError(StreamMatteError, OSError):
    """An input cannot be opened or decoded."""


class SinkError(StreamMatteError, OSError):
    """An output cannot be written."""


class EngineUnavailableError(StreamMatteError, ImportError):
    """An engine needs an optional dependency that is not installed."""


class ModelError(StreamMatteError):
    """A model is unknown, malformed, or does not match its catalog entry."""


class ModelFetchError(ModelError, OSError):
    """Every source of a model failed; the message lists what was tried."""


class ChecksumError(ModelError):
    """A model file's sha256 differs from the catalog's."""


class CancelledRun(StreamMatteError):
    """A run was stopped before the end of its input: its cancel handle was set (``cancel=``
    of ``matte_video`` / ``matte_frames``) or ``Pipeline.cancel()`` was called. Nothing
    partial is left behind: a file output is removed, as after any error."""


class GpuCheckError(StreamMatteError, RuntimeError):
    """The GPU chain failed its self-check (it raised while opening, compiling its kernels or
    running the first frames, or its first frame disagreed with the CPU chain's) on a run that
    named a GPU back-end: ``--backend auto`` falls back to the CPU chain instead."""
