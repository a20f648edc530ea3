"""The registry's ``auto`` back-end: the fastest engine this machine can open for a model.

``streammatte.cuda.select`` decides from what is installed and which GPUs the driver sees;
this module opens the choice through the registry, falling back a step at a time, and writes
why each faster back-end was passed over into the engine's ``provider``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..cuda.select import (
    GPU_BACKENDS,
    RuntimeProbe,
    probe_runtime,
    select_backend,
    unavailable_reason,
)
from ..errors import StreamMatteError
from ..models.catalog import ModelSpec
from . import backend_class
from .base import Engine

log = logging.getLogger(__name__)


def open_auto(spec: ModelSpec, model_path: Path, *, device: str = "auto",
              probe: RuntimeProbe | None = None) -> Engine:
    """Open the best engine for ``spec`` here (registry back-end ``auto``).

    A GPU back-end that fails to open (no memory, a driver problem, a TensorRT build error:
    anything it raises) is skipped like a missing one; the engine's ``provider`` ends with the
    reasons, so ``describe()`` tells the user which device runs the model and why not a faster
    one, and ``gpu_fallback`` says which selected back-end failed and why.
    """
    probe = probe if probe is not None else probe_runtime()
    selection = select_backend(device, probe)
    skipped = list(selection.skipped)
    failed: list[str] = []
    order = [selection.backend] if selection.backend not in GPU_BACKENDS else [
        b for b in GPU_BACKENDS[GPU_BACKENDS.index(selection.backend):]]
    index = int(selection.device.partition(":")[2] or 0)
    for backend in order:
        if backend == "onnxruntime":
            break
        why_not = None if backend == selection.backend else unavailable_reason(
            backend, probe, index)
        if why_not is not None:  # not installed: passed over, as select_backend does
            skipped.append(f"{backend}: {why_not}")
            continue
        try:
            engine: Engine = backend_class(backend)(spec, model_path, device=selection.device)
        except Exception as exc:  # anything a GPU back-end raises while opening: fall back
            why = str(exc) if isinstance(exc, StreamMatteError) else (
                f"{type(exc).__name__}: {exc}")
            log.warning("%s could not open %s: %s", backend, spec.name, why)
            skipped.append(f"{backend}: {why}")
            failed.append(f"{backend} failed to open {spec.name}: {why}")
            continue
        return _noted(engine, skipped, failed)
    ort_device = selection.device if selection.backend == "onnxruntime" else "auto"
    opened: Engine = backend_class("onnxruntime")(spec, model_path, device=ort_device)
    return _noted(opened, skipped, failed)


def _noted(engine: Engine, skipped: list[str], failed: list[str]) -> Engine:
    if skipped:
        engine.provider = f"{engine.provider}; not used: {'; '.join(skipped)}"
        log.info("%s", engine.describe())
    if failed:
        engine.gpu_fallback = "; ".join(failed)
    return engine
