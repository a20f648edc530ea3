"""The GPU chain's self-check on first use, and the fallback to the CPU chain.

A chain whose back-end is ``auto``, ``trt`` or ``onnxruntime-cuda`` and whose engine runs on a
GPU is guarded. ``Chain`` sets the guard up around its one host-or-GPU choice, so every path
that builds a chain gets it: files, the frames API, ``streammatte live`` (``Chain.stages``) and
stills (``Chain.alpha``).

- The first ``WINDOW_FRAMES`` frames (frames 0-3) must come through the GPU part of the chain
  without raising: opening it, compiling its kernels, the first inferences.
- Frame 0's alpha is compared with the CPU chain's (the same model file on ONNX Runtime's CPU
  provider) within the tolerance of :mod:`streammatte.cuda.selfcheck`; on the all-GPU chain,
  frame 0's composite is also compared with the host compositor's over the GPU's own alpha.
- Until both hold, the guard stage keeps the window's frames: nothing of a rejected window
  reaches the sink. Rejected, ``auto`` restarts the chain (not the file) on the CPU: the frames
  held and every later one run through the host stages on the CPU engine, in order, and the run
  notes say why in one line. An explicit GPU back-end raises GpuCheckError with the reason.

A pass is remembered per GPU and driver (``CheckRecords``, beside the model cache) and, in this
process, per engine, so later runs skip the comparison (never the window); a failure is
remembered with its reason, and the next run checks again.
"""

from __future__ import annotations

import collections
import logging
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..cuda.selfcheck import (
    COMPOSITE_TOLERANCE,
    CheckRecord,
    CheckRecords,
    GpuIdentity,
    compare_alphas,
    gpu_identity,
    output_difference,
)
from ..errors import GpuCheckError, StreamMatteError
from ..frames import Alpha, FramePacket, RGBImage
from ..inference.base import Engine
from ..pipeline import Stage
from ..refine import Upsampler
from .matter import Matter

log = logging.getLogger(__name__)

#: frames 0 to WINDOW_FRAMES - 1 must run on the GPU without error before it is trusted
WINDOW_FRAMES = 4

#: the back-ends a user names to run on a GPU; ``auto`` falls back, the others fail
CHECKED_BACKENDS = ("auto", "trt", "onnxruntime-cuda")

# in this process: engines whose chain passed (per subject), so a batch that reuses one engine
# for many files compares once even where no record can be kept
_PASSED: weakref.WeakKeyDictionary[Engine, set[str]] = weakref.WeakKeyDictionary()
_IDENTITIES: dict[int, GpuIdentity | None] = {}


def runs_on_gpu(engine: Engine) -> bool:
    return engine.device.strip().lower().startswith("cuda")


def _device_index(device: str) -> int:
    """N of ``cuda:N`` (``cuda:0 (…)`` too); 0 for anything else."""
    _, _, index = device.partition(":")
    digits = index.split(" ")[0]
    return int(digits) if digits.isdigit() else 0


def _identity(index: int) -> GpuIdentity | None:
    if index not in _IDENTITIES:
        _IDENTITIES[index] = gpu_identity(index)
    return _IDENTITIES[index]


def _why(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, StreamMatteError) else f"{type(exc).__name__}: {exc}"


def _frames(packets: Sequence[FramePacket]) -> str:
    first, last = packets[0].index, packets[-1].index
    return f"frame {first}" if first == last else f"frames {first}-{last}"


class GpuCheck:
    """The self-check of one chain's GPU engine (see the module's docstring).

    ``open_reference`` opens the CPU twin of the engine (same model file, ONNX Runtime CPU);
    ``fall_back`` is True for ``auto``; ``on_fallback(cpu)`` is given the CPU engine's steps
    that replace the GPU ones; ``note`` adds a line to the run's notes; ``records`` remembers the
    checks per GPU and driver (None: nowhere).
    """

    def __init__(self, engine: Engine, *, backend: str, open_reference: Callable[[], Engine],
                 on_fallback: Callable[[Matter], None], note: Callable[[str], None],
                 records: CheckRecords | None, upsample: Upsampler, rembg_compat: bool) -> None:
        self.engine = engine
        self.backend = backend
        self.fall_back = backend == "auto"
        self._open_reference = open_reference
        self._on_fallback = on_fallback
        self._note = note
        self._records = records
        self._upsample: Upsampler = upsample
        self._rembg_compat = rembg_compat
        self._reference: Matter | None = None
        self._gpu = _identity(_device_index(engine.device)) if records is not None else None
        #: why the GPU chain was rejected (None: it was not)
        self.rejected: str | None = None
        self._alpha_calls = 0
        self._alpha_settled = False
        self._alpha_compared: str | None = None

    @classmethod
    def applies(cls, engine: Engine, backend: str) -> bool:
        """A run on ``backend`` with ``engine`` is checked: a GPU back-end was asked for (or
        ``auto``), and the engine runs on a GPU."""
        return backend in CHECKED_BACKENDS and runs_on_gpu(engine)

    # -- the reference ---------------------------------------------------------------------

    def reference(self) -> Matter:
        """The CPU chain's engine steps (opened on first use, kept for the fallback)."""
        if self._reference is None:
            self._reference = Matter(self._open_reference(), upsample=self._upsample,
                                     rembg_compat=self._rembg_compat)
        return self._reference

    def _release_reference(self) -> None:
        if self._reference is not None and self.rejected is None:
            self._reference.engine.close()
            self._reference = None

    def close(self) -> None:
        """Close the CPU engine unless it replaced the GPU one (the chain then owns it)."""
        self._release_reference()

    # -- the verdict -----------------------------------------------------------------------

    def subject(self, kind: str) -> str:
        from .. import __version__

        provider = self.engine.provider.split("; not used")[0]
        return f"{self.engine.name}, {provider}, {kind}, streammatte {__version__}"

    def passed_before(self, subject: str) -> bool:
        """``subject`` passed on this GPU and driver before (or in this process)."""
        if subject in _PASSED.get(self.engine, set()):
            return True
        if self._records is None or self._gpu is None:
            return False
        record = self._records.find(self._gpu, subject)
        return record is not None and record.passed

    def _remember(self, subject: str, passed: bool, detail: str) -> None:
        if passed:
            _PASSED.setdefault(self.engine, set()).add(subject)
        if self._records is not None and self._gpu is not None:
            self._records.store(self._gpu, CheckRecord.now(subject, passed, detail))

    def compare(self, index: int, image: RGBImage, gpu_alpha: Alpha | None,
                composite: Callable[[Alpha], np.ndarray | None] | None = None,
                gpu_output: np.ndarray | None = None) -> tuple[bool, str]:
        """The first frame (``index``) on the GPU against the CPU chain: (passed, what was
        compared)."""
        if gpu_alpha is None:
            return False, f"the GPU chain gave no alpha for frame {index}"
        reference = self.reference()
        try:
            comparison = compare_alphas(gpu_alpha, reference.alpha(image))
        except ValueError as exc:
            return False, f"frame {index}: {exc}"
        text = (f"frame {index} against the CPU chain ({reference.engine.describe()}): "
                f"{comparison.describe()}")
        if not comparison.ok:
            return False, text
        host = composite(gpu_alpha) if composite is not None else None
        if host is not None and gpu_output is not None:
            diff = output_difference(gpu_output, host)
            relation = "≤" if diff <= COMPOSITE_TOLERANCE else ">"
            text += (f"; its composite within {diff} {relation} {COMPOSITE_TOLERANCE} level of "
                     "the host compositor's")
            if diff > COMPOSITE_TOLERANCE:
                return False, text
        return True, text

    def accept(self, subject: str, compared: str | None, frames: str) -> None:
        if compared is not None:
            self._remember(subject, True, compared)
            self._note(f"GPU chain self-check passed: {compared}; {frames} ran without error")
        else:
            self._note(f"GPU chain self-check: passed before on this GPU and driver, not "
                       f"compared again; {frames} ran without error")
        self._release_reference()

    def reject(self, subject: str, reason: str, cause: BaseException | None = None) -> Matter:
        """Remember the failure; raise GpuCheckError for an explicit back-end, else hand the
        chain the CPU engine and return its steps."""
        self._remember(subject, False, reason)
        if not self.fall_back:
            raise GpuCheckError(f"GPU chain self-check failed on backend {self.backend!r}: "
                                f"{reason} (backend 'auto' falls back to the CPU instead)"
                                ) from cause
        reference = self.reference()
        self.rejected = reason
        self._on_fallback(reference)
        self._note(f"GPU chain self-check failed ({reason}): the chain restarted on the CPU "
                   f"({reference.engine.describe()}) from the first frame; no frame was lost")
        log.warning("GPU chain self-check failed (%s): running on the CPU", reason)
        return reference

    # -- Chain.alpha: one frame at a time --------------------------------------------------

    def alpha(self, image: RGBImage, matter: Matter) -> Alpha:
        """One frame's unsmoothed alpha through ``matter`` (the GPU engine's steps), checked
        over the first frames; the CPU's alpha once the check has failed (``auto``)."""
        if self._alpha_settled:
            return matter.alpha(image)
        subject = self.subject("host chain, one frame at a time")
        index = self._alpha_calls
        self._alpha_calls += 1
        try:
            alpha = matter.alpha(image)
        except Exception as exc:  # anything the GPU raises in the window rejects it
            self._alpha_settled = True
            return self.reject(subject, f"{_why(exc)} at frame {index}", exc).alpha(image)
        if index == 0 and not self.passed_before(subject):
            passed, compared = self.compare(index, image, alpha)
            if not passed:
                self._alpha_settled = True
                return self.reject(subject, compared).alpha(image)
            self._alpha_compared = compared
        if self._alpha_calls >= WINDOW_FRAMES:
            self._alpha_settled = True
            self.accept(subject, self._alpha_compared, f"frames 0-{WINDOW_FRAMES - 1}")
        return alpha

    # -- Chain.stages: the guard stage -----------------------------------------------------

    def guard(self, primary: Sequence[Stage], fallback: Callable[[Matter], Sequence[Stage]], *,
              kind: str, gpu_alpha: Callable[[FramePacket], Alpha | None],
              composite: Callable[[FramePacket, Alpha], np.ndarray | None] | None,
              release_primary: Callable[[], None]) -> list[Stage]:
        """Three stages around the GPU run's three (``primary``: before, the GPU part, after)
        that hold the window in the middle one and, on a failure, switch all three to
        ``fallback(cpu_steps)`` (the host chain's preprocess, infer, compose on the CPU).

        ``gpu_alpha(packet)`` reads a packet's alpha as the GPU part left it; ``composite``
        (all-GPU chain) composes it on the host; ``release_primary`` frees the GPU part.
        """
        return _Guard(self, primary, fallback, kind=kind, gpu_alpha=gpu_alpha,
                      composite=composite, release_primary=release_primary).stages()


class _Guard:
    """One run's guard stages (see ``GpuCheck.guard``). The middle stage owns the window;
    the outer two only follow its switch, which happens before any frame leaves it."""

    def __init__(self, check: GpuCheck, primary: Sequence[Stage],
                 fallback: Callable[[Matter], Sequence[Stage]], *, kind: str,
                 gpu_alpha: Callable[[FramePacket], Alpha | None],
                 composite: Callable[[FramePacket, Alpha], np.ndarray | None] | None,
                 release_primary: Callable[[], None]) -> None:
        if len(primary) != 3:
            raise ValueError(f"the guard wraps three stages, got {len(primary)}")
        self.check = check
        self.primary = list(primary)
        self.make_fallback = fallback
        self.subject = check.subject(kind)
        self.gpu_alpha = gpu_alpha
        self.composite = composite
        self.release_primary = release_primary
        self.compare_due = not check.passed_before(self.subject)
        #: given to the GPU part and not yet let out, in order
        self.held: collections.deque[FramePacket] = collections.deque()
        self.returned = 0
        self.accepted = False
        #: the host stages on the CPU engine, once the GPU chain is rejected
        self.host: list[Stage] | None = None

    def stages(self) -> list[Stage]:
        before, middle, after = self.primary
        return [
            Stage(before.name, lambda batch: self._current(0).fn(batch)),
            Stage(middle.name, self._middle, batch_size=middle.batch_size, flush=self._flush),
            Stage(after.name, lambda batch: self._current(2).fn(batch), flush=self._after_flush),
        ]

    def _current(self, i: int) -> Stage:
        return self.host[i] if self.host is not None else self.primary[i]

    def _after_flush(self) -> list[FramePacket]:
        flush = self._current(2).flush
        return flush() if flush is not None else []

    # the middle stage -----------------------------------------------------------------------

    def _middle(self, batch: list[FramePacket]) -> list[FramePacket]:
        if self.host is not None:
            return self._on_host(batch)
        if self.accepted:
            return self.primary[1].fn(batch)
        self.held.extend(batch)
        try:
            out = self.primary[1].fn(batch)
        except Exception as exc:  # anything the GPU raises in the window rejects it
            return self._reject(f"{_why(exc)} at {_frames(batch)}", exc)
        self.returned += len(out)
        return self._decide() if self.returned >= WINDOW_FRAMES else []

    def _flush(self) -> list[FramePacket]:
        if self.host is not None:
            flush = self.host[1].flush
            return flush() if flush is not None else []
        flush = self.primary[1].flush
        if self.accepted:
            return flush() if flush is not None else []
        try:
            self.returned += len(flush()) if flush is not None else 0
        except Exception as exc:  # as in _middle: the last frames are still in the window
            return self._reject(f"{_why(exc)} at the end of the stream", exc)
        # a clip shorter than the window is judged on what it has
        return self._decide() if self.held else []

    def _decide(self) -> list[FramePacket]:
        out = [self.held.popleft() for _ in range(self.returned)]
        ran = _frames(out)
        compared = None
        first = next((p for p in out if p.run_engine), None)
        if self.compare_due and first is not None:
            alpha = self.gpu_alpha(first)
            composite = self.composite
            passed, compared = self.check.compare(
                first.index, first.image, alpha,
                (lambda a: composite(first, a)) if composite is not None else None,
                first.output)
            if not passed:
                self.held.extendleft(reversed(out))
                return self._reject(compared)
        self.accepted = True
        # the frames still in the GPU part leave it on later calls, as on an unguarded run
        self.held.clear()
        self.check.accept(self.subject, compared, ran)
        return out

    def _reject(self, reason: str, cause: BaseException | None = None) -> list[FramePacket]:
        try:
            self.release_primary()
        except Exception as exc:  # a GPU that failed may fail to let go too: the run goes on
            log.warning("freeing the rejected GPU chain failed: %s", _why(exc))
        cpu = self.check.reject(self.subject, reason, cause)
        self.host = list(self.make_fallback(cpu))
        held = list(self.held)
        self.held.clear()
        for p in held:  # what the GPU part left on them is void
            p.model_input = p.raw_output = p.alpha = p.output = None
        return self._on_host(held) if held else []

    def _on_host(self, batch: list[FramePacket]) -> list[FramePacket]:
        assert self.host is not None
        # frames that passed the first stage before the switch were not preprocessed
        unprepared = [p for p in batch if p.run_engine and p.model_input is None]
        if unprepared:
            self.host[0].fn(unprepared)
        return self.host[1].fn(batch)


def open_failure_note(engine: Engine, reason: str, records: CheckRecords, device: str) -> str:
    """The run note for a GPU back-end that ``auto`` selected and that failed to open (the
    failure is remembered too); ``engine`` runs instead."""
    gpu = _identity(_device_index(device))
    if gpu is not None:
        records.store(gpu, CheckRecord.now(f"{engine.name}, opening the GPU back-end", False,
                                           reason))
    return (f"GPU chain self-check failed while opening ({reason}): the run uses "
            f"{engine.name} on {engine.device}")


def default_records(models_dir: Path | None) -> CheckRecords:
    """The record beside the model cache (``models_dir`` or the default one)."""
    from ..cuda.selfcheck import RECORD_FILE
    from ..models.store import default_models_dir

    return CheckRecords((models_dir or default_models_dir()) / RECORD_FILE)
