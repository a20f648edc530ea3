"""Engines and the registry that opens them by name.

Registry values are import strings, so ``import streammatte`` never imports an optional backend
(TensorRT, pycuda); a missing one raises EngineUnavailableError naming the extra to install.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import EngineUnavailableError, ModelError
from ..models.catalog import ModelSpec, load_catalog
from ..models.store import ModelStore, ProgressFn, verify_file
from .base import Engine, TensorSpec

__all__ = ["BACKENDS", "BUILTIN_ENGINES", "BUILTIN_GOOD_FOR", "Engine",
           "NonCommercialModelWarning", "TensorSpec", "backend_class", "engine_names",
           "open_engine", "resolve_model"]

#: engines that need no catalog entry (no weights)
BUILTIN_ENGINES: dict[str, str] = {
    "mog2": "streammatte.inference.mog2:Mog2Engine",
    "grabcut": "streammatte.inference.grabcut:GrabCutEngine",
}

#: what each builtin engine suits, in a few words (as a catalog entry's ``good_for``)
BUILTIN_GOOD_FOR: dict[str, str] = {
    "mog2": "a static camera; video only",
    "grabcut": "one subject near the centre",
}

#: how a catalog model's graph can be run, by backend name → (import string, extra to install)
BACKENDS: dict[str, tuple[str, str | None]] = {
    "onnxruntime": ("streammatte.inference.ort:OrtEngine", None),
    "trt": ("streammatte.inference.trt:TrtEngine", "trt"),
    "onnxruntime-cuda": ("streammatte.inference.ort_cuda:OrtCudaEngine", "trt"),
    "auto": ("streammatte.inference.auto:open_auto", None),
}


class NonCommercialModelWarning(UserWarning):
    """The chosen model's licence forbids commercial use."""


def engine_names() -> list[str]:
    return sorted([*load_catalog(), *BUILTIN_ENGINES])


def _load(target: str, extra: str | None, what: str) -> Any:
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"pip install 'streammatte[{extra}]'" if extra else "reinstall streammatte"
        raise EngineUnavailableError(f"{what} needs {exc.name or 'a missing module'}: {hint}"
                                     ) from exc
    return getattr(module, attr)


def backend_class(backend: str) -> Any:
    """What opens a catalog model on ``backend`` (a key of BACKENDS): called as
    ``(spec, model_path, device=...)`` it returns an Engine. A backend whose optional
    dependency is missing raises EngineUnavailableError naming the extra to install."""
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r} (choose from: {', '.join(BACKENDS)})")
    target, extra = BACKENDS[backend]
    return _load(target, extra, f"backend {backend}")


def resolve_model(
    spec: ModelSpec,
    *,
    model_file: Path | None = None,
    models_dir: Path | None = None,
    progress: ProgressFn | None = None,
    auth_tokens: Mapping[str, str] | None = None,
) -> Path:
    """A verified local file for ``spec``: ``model_file`` if given, else the cache (pulled
    on first use)."""
    if model_file is not None:
        verify_file(Path(model_file), spec)
        return Path(model_file)
    return ModelStore(models_dir, auth_tokens=auth_tokens).ensure(spec, progress)


def open_engine(
    name: str,
    *,
    model_file: Path | None = None,
    models_dir: Path | None = None,
    device: str = "auto",
    backend: str = "onnxruntime",
    progress: ProgressFn | None = None,
    input_size: tuple[int, int] | None = None,
    short_side: int | None = None,
    auth_tokens: Mapping[str, str] | None = None,
) -> Engine:
    """Open the engine ``name`` (a catalog model or a builtin such as ``mog2``).

    Catalog models are pulled into ``models_dir`` on first use and verified by checksum; a
    model whose licence forbids commercial use raises NonCommercialModelWarning.
    ``input_size`` / ``short_side`` replace the catalog's input size (ConfigError or ModelError
    when the model does not accept it); ``auth_tokens`` (host → token) open gated sources.
    """
    key = name.lower()
    if key in BUILTIN_ENGINES:
        engine: Engine = _load(BUILTIN_ENGINES[key], None, f"engine {key}")()
        return engine
    catalog = load_catalog()
    if key not in catalog:
        raise ModelError(f"unknown engine {name!r} (choose from: {', '.join(engine_names())})")
    spec = catalog[key]
    if input_size is not None or short_side is not None:
        spec = spec.with_input_size(input_size, short_side)
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r} (choose from: {', '.join(BACKENDS)})")
    if spec.non_commercial:
        warnings.warn(
            f"{spec.name} is licensed {spec.licence}: not for commercial use",
            NonCommercialModelWarning,
            stacklevel=2,
        )
    # load the backend first: a missing TensorRT should be reported before a long download
    engine_cls = backend_class(backend)
    path = resolve_model(spec, model_file=model_file, models_dir=models_dir, progress=progress,
                         auth_tokens=auth_tokens)
    opened: Engine = engine_cls(spec, path, device=device)
    return opened
