"""Honest device selection: the best back-end this machine can run, and why the better ones
were passed over.

Order: TensorRT (``trt``), ONNX Runtime's CUDA provider on our stream (``onnxruntime-cuda``),
then plain ONNX Runtime (``onnxruntime``: its CUDA provider with host copies where
onnxruntime-gpu is installed, else the CPU). ``--device cpu`` goes straight to the CPU;
``--device cuda`` never falls back to the CPU silently: it raises with every reason instead.

``select_backend`` is a pure function of a :class:`RuntimeProbe`, so the choice and its
messages are tested without a GPU; ``probe_runtime`` fills the probe on the real machine.
The registry's ``auto`` back-end (``streammatte.inference.auto``) opens what it selects.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, EngineUnavailableError

log = logging.getLogger(__name__)

TRT_HINT = "pip install 'streammatte[trt]'"
ORT_GPU_HINT = "pip install onnxruntime-gpu in place of onnxruntime"

#: the zero-copy GPU back-ends, best first
GPU_BACKENDS: tuple[str, ...] = ("trt", "onnxruntime-cuda")


@dataclass(frozen=True, slots=True)
class RuntimeProbe:
    """What this process can use: GPUs as pycuda sees them, and the optional packages."""

    gpus: tuple[str, ...] = ()
    gpu_error: str | None = None
    pycuda: str | None = None
    tensorrt: str | None = None
    ort_providers: tuple[str, ...] = ("CPUExecutionProvider",)


@dataclass(frozen=True, slots=True)
class Selection:
    """The back-end to open, on which device, and why each better one was skipped."""

    backend: str
    device: str
    skipped: tuple[str, ...] = ()

    def note(self) -> str:
        return "; ".join(self.skipped)


def _version(module_name: str) -> tuple[Any, str | None]:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None, None
    except OSError as exc:  # a wheel whose shared libraries do not load
        log.warning("%s is installed but does not load: %s", module_name, exc)
        return None, None
    return module, str(getattr(module, "__version__", None) or getattr(module, "VERSION", "?"))


def probe_runtime() -> RuntimeProbe:
    """Import what is installed and ask the driver for GPUs; never raises."""
    import onnxruntime

    providers = tuple(onnxruntime.get_available_providers())
    _, trt_version = _version("tensorrt")
    pycuda, pycuda_version = _version("pycuda")
    if pycuda is None:
        return RuntimeProbe(gpu_error=f"pycuda not installed ({TRT_HINT})",
                            tensorrt=trt_version, ort_providers=providers)
    try:
        import pycuda.driver as cuda  # type: ignore[import-not-found, import-untyped, unused-ignore]

        cuda.init()
        names = tuple(cuda.Device(i).name() for i in range(cuda.Device.count()))
    except Exception as exc:  # pycuda.driver.Error and its kin: no driver, no device
        return RuntimeProbe(gpu_error=f"CUDA driver: {exc}", pycuda=pycuda_version,
                            tensorrt=trt_version, ort_providers=providers)
    return RuntimeProbe(gpus=names, gpu_error=None if names else "no CUDA GPU found",
                        pycuda=pycuda_version, tensorrt=trt_version, ort_providers=providers)


def _gpu_reason(probe: RuntimeProbe, index: int) -> str | None:
    if probe.pycuda is None:
        return f"pycuda not installed ({TRT_HINT})"
    if not probe.gpus:
        return probe.gpu_error or "no CUDA GPU found"
    if index >= len(probe.gpus):
        return f"no GPU #{index} (found {len(probe.gpus)})"
    return None


def unavailable_reason(backend: str, probe: RuntimeProbe, index: int = 0) -> str | None:
    """Why ``backend`` cannot run on GPU ``index`` here, or None when it can."""
    if backend == "trt":
        if probe.tensorrt is None:
            return f"tensorrt not installed ({TRT_HINT})"
        return _gpu_reason(probe, index)
    if backend == "onnxruntime-cuda":
        if "CUDAExecutionProvider" not in probe.ort_providers:
            return f"onnxruntime has no CUDA provider ({ORT_GPU_HINT})"
        return _gpu_reason(probe, index)
    raise ConfigError(f"unknown GPU backend {backend!r} (expected {', '.join(GPU_BACKENDS)})")


def _device_index(device: str) -> int | None:
    text = device.strip().lower()
    if text == "cpu":
        return None
    if text in ("auto", "cuda", "gpu"):
        return 0
    if text.startswith("cuda:") and text[5:].isdigit():
        return int(text[5:])
    raise ConfigError(f"unknown device {device!r} (expected auto, cpu or cuda[:N])")


def select_backend(device: str, probe: RuntimeProbe, *, prefer: str = "auto") -> Selection:
    """The back-end for ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) on this probe.

    ``prefer`` names one GPU back-end to try alone, or ``auto`` for the best available.
    """
    index = _device_index(device)
    if index is None:
        return Selection("onnxruntime", "cpu")
    candidates = GPU_BACKENDS if prefer == "auto" else (prefer,)
    skipped: list[str] = []
    for backend in candidates:
        why = unavailable_reason(backend, probe, index)
        if why is None:
            return Selection(backend, f"cuda:{index}", tuple(skipped))
        skipped.append(f"{backend}: {why}")
    explicit_gpu = device.strip().lower() != "auto"
    if "CUDAExecutionProvider" in probe.ort_providers:
        # no pycuda: ONNX Runtime's CUDA provider still runs, copying through host memory
        return Selection("onnxruntime", f"cuda:{index}" if explicit_gpu else "auto",
                         tuple(skipped))
    if explicit_gpu:
        raise EngineUnavailableError(f"device {device!r} asked for, but nothing here can run "
                                     f"on a GPU: {'; '.join(skipped)}")
    return Selection("onnxruntime", "cpu", tuple(skipped))
