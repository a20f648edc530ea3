"""TensorRT engine: a catalog model's ONNX built into a TensorRT 10 engine, cached, run on the
pipeline's CUDA stream.

Built the way NVIDIA's samples and Polygraphy do it: parse the ONNX, one optimisation profile
(batch size and, for a model without a fixed input size, resolution), FP16 unless asked for
FP32, a timing cache so rebuilds are fast, the serialized engine written to disk and loaded
next time. The cache file name is a digest of everything that makes an engine unusable
elsewhere: model sha256, TensorRT version, GPU name, compute capability, precision, profile.
An engine that no longer deserializes (another TensorRT or GPU, a damaged file) is rebuilt.

``tensorrt`` and ``pycuda`` are imported when an engine is opened, never when this module is
imported: the cache key and profile logic work, and are tested, without them.

Runs ``infer(batch)`` on host arrays (pinned staging buffers, async copies on the stream) and
``enqueue(input_ptr, output_ptr, n)`` on device buffers for the zero-copy GPU path
(:class:`streammatte.cuda.runtime.GpuMatter`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, EngineUnavailableError, ModelError
from ..models.catalog import InputSpec, ModelSpec
from .base import Engine, TensorSpec

log = logging.getLogger(__name__)

Precision = Literal["fp16", "fp32"]
PRECISIONS: tuple[Precision, ...] = ("fp16", "fp32")

#: bump when the way engines are built changes, so old cache files are not reused
CACHE_FORMAT = 1
INSTALL_HINT = "pip install 'streammatte[trt]'"
DEFAULT_WORKSPACE_BYTES = 2 << 30


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or EngineUnavailableError naming the extra to install."""
    try:
        import tensorrt  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError as exc:
        raise EngineUnavailableError(
            f"the TensorRT backend needs the tensorrt package ({exc}): {INSTALL_HINT} "
            "(TensorRT 10 with a CUDA 12 GPU driver)"
        ) from exc
    return tensorrt


# --- optimisation profiles -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ShapeProfile:
    """min / opt / max shape of one input tensor (TensorRT's IOptimizationProfile.set_shape)."""

    input: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise ValueError(f"profile ranks differ: {self.min} {self.opt} {self.max}")
        for lo, mid, hi in zip(self.min, self.opt, self.max, strict=True):
            if not 1 <= lo <= mid <= hi:
                raise ValueError(f"profile for {self.input} needs 1 <= min <= opt <= max per "
                                 f"dimension, got {self.min} {self.opt} {self.max}")

    @property
    def max_batch(self) -> int:
        return self.max[0]

    def label(self) -> str:
        def dims(s: tuple[int, ...]) -> str:
            return "x".join(map(str, s))

        return f"{self.input}:{dims(self.min)}/{dims(self.opt)}/{dims(self.max)}"


def _free(dim: int | str | None) -> bool:
    return not isinstance(dim, int) or dim < 1


def choose_profile(
    input_name: str,
    graph_shape: Sequence[int | str | None],
    spec: InputSpec,
    *,
    batch: int = 1,
    frame_size: tuple[int, int] | None = None,
    min_frame_size: tuple[int, int] | None = None,
    max_frame_size: tuple[int, int] | None = None,
) -> ShapeProfile:
    """The profile for one 4-D image input, given its shape in the graph (an int for a fixed
    dimension; None, -1 or a name for a free one).

    Batch: a fixed batch axis is kept (larger batches are split, as OrtEngine does); a free one
    gets min 1, opt and max ``batch``. Resolution: a fixed size must match the catalog; a free
    one takes the catalog's size, or, for a model that runs at the frame's own size (catalog
    size unset), ``frame_size`` as opt and ``min/max_frame_size`` (default: the same) as range.
    """
    if batch < 1:
        raise ConfigError(f"batch should be >= 1, got {batch}")
    if len(graph_shape) != 4:
        raise ModelError(f"input {input_name!r} has shape {tuple(graph_shape)}: expected a 4-D "
                         f"image batch ({spec.layout})")
    n, *rest = graph_shape
    if spec.layout == "nchw":
        c, h, w = rest
    else:
        h, w, c = rest
    if not _free(c) and c != 3:
        raise ModelError(f"input {input_name!r} has {c} channels; the GPU path feeds RGB (3)")
    if _free(n):
        batches = (1, batch, batch)
    else:
        assert isinstance(n, int)
        batches = (n, n, n)

    def fixed_size(size: tuple[int, int]) -> tuple[tuple[int, int], ...]:
        return (size, size, size)

    sizes: tuple[tuple[int, int], ...]
    if not _free(h) and not _free(w):
        assert isinstance(h, int) and isinstance(w, int)
        if spec.size is not None and spec.size != (w, h):
            raise ModelError(f"input {input_name!r} is fixed at {w}×{h} but the catalog says "
                             f"{spec.size[0]}×{spec.size[1]}")
        sizes = fixed_size((w, h))
    elif spec.size is not None:
        sizes = fixed_size(spec.size)
    else:
        if frame_size is None:
            raise ConfigError(f"input {input_name!r} takes any resolution: give the frame size "
                              "to build for (engines build --frame-size WxH)")
        sizes = (min_frame_size or frame_size, frame_size, max_frame_size or frame_size)
        if not (sizes[0][0] <= sizes[1][0] <= sizes[2][0]
                and sizes[0][1] <= sizes[1][1] <= sizes[2][1]):
            raise ConfigError(f"frame sizes should satisfy min <= frame <= max, got "
                              f"{sizes[0]} {sizes[1]} {sizes[2]}")

    def shape(k: int) -> tuple[int, ...]:
        bw, bh = sizes[k]
        return (batches[k], 3, bh, bw) if spec.layout == "nchw" else (batches[k], bh, bw, 3)

    return ShapeProfile(input_name, shape(0), shape(1), shape(2))


# --- the engine cache ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EngineCacheKey:
    """Everything that makes a serialized engine unusable elsewhere."""

    model_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    precision: Precision
    profiles: tuple[ShapeProfile, ...]

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision should be one of {', '.join(PRECISIONS)}, "
                              f"got {self.precision!r}")

    def components(self) -> dict[str, Any]:
        return {
            "format": CACHE_FORMAT,
            "model_sha256": self.model_sha256,
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": list(self.compute_capability),
            "precision": self.precision,
            "profiles": [p.label() for p in self.profiles],
        }

    def digest(self) -> str:
        blob = json.dumps(self.components(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:20]

    def timing_cache_digest(self) -> str:
        # TensorRT's timing cache is keyed inside by layer signature, so one file serves every
        # model and precision; only another TensorRT or GPU invalidates it.
        blob = json.dumps([CACHE_FORMAT, self.tensorrt_version, self.gpu_name,
                           list(self.compute_capability)]).encode()
        return hashlib.sha256(blob).hexdigest()[:20]

    def engine_path(self, cache_dir: Path, model_name: str) -> Path:
        return Path(cache_dir) / f"{model_name}-{self.precision}-{self.digest()}.engine"

    def timing_cache_path(self, cache_dir: Path) -> Path:
        return Path(cache_dir) / f"timing-{self.timing_cache_digest()}.cache"


def sidecar_path(engine_path: Path) -> Path:
    return engine_path.with_suffix(".json")


def read_sidecar(engine_path: Path) -> dict[str, Any] | None:
    """The key components stored beside a cached engine, or None when missing or unreadable."""
    try:
        data = json.loads(sidecar_path(engine_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}-{threading.get_ident()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def model_sha256(spec: ModelSpec, model_path: Path) -> str:
    """The catalog's sha256, or the file's own for a model the catalog knows only by md5."""
    if spec.sha256:
        return spec.sha256
    from ..models.store import sha256_of

    return sha256_of(model_path)


def default_cache_dir(model_path: Path) -> Path:
    """Engines sit beside the model cache, in ``trt/``."""
    return Path(model_path).parent / "trt"


# --- TensorRT itself (runs only where tensorrt and a GPU exist) ------------------------------

class _Logger:
    """Forwards TensorRT's log to ``logging`` and keeps the errors for the exception message."""

    def __new__(cls, trt: Any) -> Any:
        class Logger(trt.ILogger):  # type: ignore[misc]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity: Any, msg: str) -> None:
                if severity <= trt.ILogger.Severity.ERROR:
                    self.errors.append(msg)
                    log.error("TensorRT: %s", msg)
                elif severity <= trt.ILogger.Severity.WARNING:
                    log.warning("TensorRT: %s", msg)
                else:
                    log.debug("TensorRT: %s", msg)

        return Logger()


def _looks_like_oom(messages: Sequence[str]) -> bool:
    text = " ".join(messages).lower()
    return any(s in text for s in ("out of memory", "outofmemory", "cudaerrormemoryallocation",
                                   "insufficient memory", "failed to allocate"))


def _network_input(network: Any, spec: ModelSpec, where: Path) -> Any:
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    if spec.input.name is None:
        return inputs[0]
    for tensor in inputs:
        if tensor.name == spec.input.name:
            return tensor
    raise ModelError(f"{where}: no input named {spec.input.name!r} as the catalog entry "
                     f"{spec.name} expects (graph inputs: {', '.join(t.name for t in inputs)})")


def build_engine(
    spec: ModelSpec,
    model_path: Path,
    *,
    context: Any,
    precision: Precision = "fp16",
    batch: int = 1,
    cache_dir: Path | None = None,
    frame_size: tuple[int, int] | None = None,
    max_frame_size: tuple[int, int] | None = None,
    rebuild: bool = False,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
) -> tuple[Path, EngineCacheKey]:
    """Build (or find in the cache) the engine for ``spec`` on ``context``'s GPU; returns the
    engine file and its key. ``context`` is a :class:`streammatte.cuda.runtime.CudaContext`."""
    trt = import_tensorrt()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir(model_path)
    logger = _Logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(model_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ModelError(f"{model_path}: TensorRT cannot parse this ONNX: {'; '.join(errors)}")
    tensor = _network_input(network, spec, model_path)
    profile = choose_profile(tensor.name, [int(d) for d in tensor.shape], spec.input,
                             batch=batch, frame_size=frame_size, max_frame_size=max_frame_size)
    key = EngineCacheKey(
        model_sha256=model_sha256(spec, model_path), tensorrt_version=str(trt.__version__),
        gpu_name=context.name, compute_capability=context.compute_capability,
        precision=precision, profiles=(profile,),
    )
    path = key.engine_path(cache_dir, spec.name)
    if path.is_file() and not rebuild and read_sidecar(path) == key.components():
        return path, key
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "fp16":
        if not builder.platform_has_fast_fp16:
            log.warning("%s has no fast FP16; building FP16 anyway", context.name)
        config.set_flag(trt.BuilderFlag.FP16)
    timing_path = key.timing_cache_path(cache_dir)
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file()
                                        else b"")
    config.set_timing_cache(timing, ignore_mismatch=True)
    optimisation = builder.create_optimization_profile()
    optimisation.set_shape(profile.input, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(optimisation)
    log.info("building TensorRT engine %s (%s, %s) on %s; this takes a while once",
             spec.name, precision, profile.label(), context.name)
    with context.active():
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        if _looks_like_oom(logger.errors):
            from ..cuda.plan import GpuOutOfMemoryError

            raise GpuOutOfMemoryError(
                f"{context.name}: out of GPU memory while building {spec.name} ({precision}, "
                f"{profile.label()}): close other GPU programs or lower the batch size "
                f"({'; '.join(logger.errors[-3:])})")
        raise ModelError(f"TensorRT could not build {spec.name} ({precision}, "
                         f"{profile.label()}): {'; '.join(logger.errors[-3:]) or 'no reason'}")
    _write_atomically(path, bytes(serialized))
    _write_atomically(sidecar_path(path), json.dumps(key.components(), indent=1).encode())
    _write_atomically(timing_path, bytes(config.get_timing_cache().serialize()))
    return path, key


_TRT_TO_NUMPY = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32",
                 "UINT8": "uint8", "BOOL": "bool", "INT64": "int64"}


class TrtEngine(Engine):
    """A catalog model as a TensorRT engine on one GPU.

    ``device``: ``auto``/``cuda`` (GPU 0) or ``cuda:N``. The engine is built on first use and
    cached (see :func:`build_engine`); a cached engine that does not deserialize on this
    TensorRT/GPU is rebuilt. ``warmup`` runs that many inferences before the first frame.
    """

    def __init__(
        self,
        spec: ModelSpec,
        model_path: Path,
        *,
        device: str = "auto",
        precision: Precision = "fp16",
        batch: int = 1,
        cache_dir: Path | None = None,
        frame_size: tuple[int, int] | None = None,
        warmup: int = 2,
        context: Any = None,
        stream: Any = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision should be one of {', '.join(PRECISIONS)}, "
                              f"got {precision!r}")
        trt = import_tensorrt()
        from ..cuda.runtime import CudaContext, HostStaging, import_pycuda, parse_device

        cuda = import_pycuda()
        self.name = spec.name
        self.spec = spec
        self.input_spec = spec.input
        self.output_spec = spec.output
        self.context = context if context is not None else CudaContext(parse_device(device))
        self._own_context = context is None
        self.device = f"cuda:{self.context.index}"
        self.precision = precision
        self.provider = f"TensorRT {trt.__version__} {precision} ({self.context.name})"
        self._logger = _Logger(trt)
        path, self.key = build_engine(spec, model_path, context=self.context,
                                      precision=precision, batch=batch, cache_dir=cache_dir,
                                      frame_size=frame_size)
        with self.context.active():
            self.stream = stream if stream is not None else cuda.Stream()
            self._engine = self._deserialize(trt, path)
            if self._engine is None:
                log.warning("%s: cached engine does not load on this TensorRT/GPU; rebuilding",
                            path)
                path, self.key = build_engine(spec, model_path, context=self.context,
                                              precision=precision, batch=batch,
                                              cache_dir=cache_dir, frame_size=frame_size,
                                              rebuild=True)
                self._engine = self._deserialize(trt, path)
                if self._engine is None:
                    raise ModelError(f"{path}: TensorRT cannot load the engine it just built "
                                     f"({'; '.join(self._logger.errors[-3:])})")
            self._exec = self._engine.create_execution_context()
            if self._exec is None:
                from ..cuda.plan import GpuOutOfMemoryError

                free, total = cuda.mem_get_info()
                raise GpuOutOfMemoryError(
                    f"{self.context.name}: no memory for {spec.name}'s execution context "
                    f"({free >> 20} of {total >> 20} MiB free): close other GPU programs")
        self.engine_path = path
        self._specs: dict[str, TensorSpec] = {}
        self._input_name = ""
        self._output_names: list[str] = []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            dtype = _TRT_TO_NUMPY.get(self._engine.get_tensor_dtype(name).name, "float32")
            shape = tuple(int(d) if d >= 0 else None for d in self._engine.get_tensor_shape(name))
            self._specs[name] = TensorSpec(name, shape, dtype)
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._input_name = self._input_name or name
            else:
                self._output_names.append(name)
        if spec.output.index >= len(self._output_names):
            raise ModelError(f"{model_path}: the catalog reads output {spec.output.index} but "
                             f"the engine has {len(self._output_names)}")
        self._output_name = self._output_names[spec.output.index]
        self.profile = self.key.profiles[0]
        self.max_batch = self.profile.max_batch
        self._device: dict[str, tuple[int, Any]] = {}  # outputs we do not read
        self._staging = HostStaging(self)
        for _ in range(warmup):
            self.infer(np.zeros((1, *self.profile.opt[1:]), self.input_dtype))

    def _deserialize(self, trt: Any, path: Path) -> Any:
        runtime = trt.Runtime(self._logger)
        try:
            return runtime.deserialize_cuda_engine(path.read_bytes())
        except (OSError, RuntimeError, TypeError) as exc:  # damaged or foreign file
            log.warning("%s: %s", path, exc)
            return None

    # -- the device-buffer API used by streammatte.cuda.runtime.GpuMatter --

    @property
    def inputs(self) -> Mapping[str, TensorSpec]:
        return {k: v for k, v in self._specs.items() if k == self._input_name}

    @property
    def outputs(self) -> Mapping[str, TensorSpec]:
        return {k: v for k, v in self._specs.items() if k in self._output_names}

    @property
    def input_dtype(self) -> str:
        return self._specs[self._input_name].dtype

    @property
    def output_dtype(self) -> str:
        return self._specs[self._output_name].dtype

    def input_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, *self.profile.opt[1:])

    def output_shape(self, batch: int) -> tuple[int, ...]:
        self._exec.set_input_shape(self._input_name, self.input_shape(batch))
        return tuple(int(d) for d in self._exec.get_tensor_shape(self._output_name))

    def _scratch(self, name: str, nbytes: int) -> int:
        """Device memory for outputs we do not read (allocated once, grown when needed)."""
        held = self._device.get(name)
        if held is None or held[0] < nbytes:
            from ..cuda.runtime import alloc_device

            self._device[name] = (nbytes, alloc_device(self.context, nbytes, f"{name} output"))
        return int(self._device[name][1])

    def enqueue(self, input_ptr: int, output_ptr: int, batch: int) -> None:
        """Queue one inference of ``batch`` samples on ``self.stream``; returns at once."""
        if not 1 <= batch <= self.max_batch:
            raise ValueError(f"batch of {batch} outside this engine's profile "
                             f"({self.profile.label()})")
        ctx = self._exec
        ctx.set_input_shape(self._input_name, self.input_shape(batch))
        ctx.set_tensor_address(self._input_name, int(input_ptr))
        for name in self._output_names:
            if name == self._output_name:
                ctx.set_tensor_address(name, int(output_ptr))
            else:
                shape = tuple(int(d) for d in ctx.get_tensor_shape(name))
                nbytes = int(np.prod(shape)) * np.dtype(self._specs[name].dtype).itemsize
                ctx.set_tensor_address(name, self._scratch(name, nbytes))
        if not ctx.execute_async_v3(self.stream.handle):
            raise ModelError(f"TensorRT failed to enqueue {self.name} "
                             f"({'; '.join(self._logger.errors[-3:]) or 'no reason given'})")

    # -- the host API of the Engine contract --

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self._exec is None:
            raise RuntimeError(f"engine {self.name} is closed")
        want = self.input_shape(min(batch.shape[0], self.max_batch))
        if tuple(batch.shape[1:]) != want[1:]:
            raise ValueError(f"unexpected input shape {tuple(batch.shape)} != {want} for "
                             f"{self.name}")
        return self._staging.infer(batch)

    def close(self) -> None:
        if getattr(self, "_exec", None) is None:
            return
        with self.context.active():
            self._exec = None
            self._engine = None
            for _, allocation in self._device.values():
                allocation.free()
            self._device.clear()
            self._staging.close()
        if self._own_context:
            self.context.close()
