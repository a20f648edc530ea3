"""pycuda plumbing: the device's primary context, streams, pinned buffers, and GpuMatter, the
whole frame → output chain on the GPU.

A full-resolution frame crosses PCIe once each way: it is copied from a pinned host buffer to
the device, preprocessed by a kernel into the engine's input, the engine runs, the alpha is
upsampled, smoothed and composited by kernels, and the result comes back into a pinned buffer.
Buffers are planned by :mod:`.plan` and allocated once.

Streams: everything that depends on the previous frame (engine, kernels, download) runs in
order on the pipeline's compute stream, which is the engine's own stream. Uploads go on a
second stream, ordered against the compute stream with events, so the copy engine uploads
frame N+1 while the SMs work on frame N; ``overlap=False`` puts everything on the one compute
stream (the baseline the double-buffering gain is measured against).

Nothing here runs without pycuda and an NVIDIA GPU; the logic it relies on (plans, launch
geometry, kernel semantics) is tested on the CPU.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError, EngineUnavailableError
from . import kernels as K
from .plan import BufferPlan, GpuOutOfMemoryError, plan_buffers

INSTALL_HINT = "pip install 'streammatte[trt]'"


def import_pycuda() -> Any:
    """``pycuda.driver``, or EngineUnavailableError naming the extra to install."""
    try:
        import pycuda.driver as cuda  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError as exc:
        raise EngineUnavailableError(
            f"the GPU path needs pycuda ({exc}): {INSTALL_HINT}") from exc
    return cuda


def parse_device(device: str) -> int:
    """``auto``, ``cuda`` → 0; ``cuda:N`` → N; anything else is a ConfigError."""
    text = device.strip().lower()
    if text in ("auto", "cuda", "gpu"):
        return 0
    if text.startswith("cuda:") and text[5:].isdigit():
        return int(text[5:])
    raise ConfigError(f"device {device!r} cannot run the GPU path (expected auto, cuda or "
                      "cuda:N)")


class CudaContext:
    """The primary context of one GPU, retained and made current on demand.

    TensorRT and ONNX Runtime use the CUDA runtime API, which works in the device's primary
    context; retaining that same context (rather than pycuda.autoinit's private one) lets
    their pointers, streams and ours mix. Pipeline stages run on several threads, so every GPU
    call is wrapped in ``with ctx.active():``.
    """

    def __init__(self, index: int = 0) -> None:
        cuda = import_pycuda()
        self._cuda = cuda
        try:
            cuda.init()
            count = cuda.Device.count()
        except cuda.Error as exc:
            raise EngineUnavailableError(f"no usable CUDA driver ({exc}); check `nvidia-smi` "
                                         "and `streammatte doctor`") from exc
        if index >= count:
            raise EngineUnavailableError(
                f"no CUDA GPU #{index} (found {count}); use --device cpu or cuda:0")
        self.index = index
        self.device = cuda.Device(index)
        self.name: str = self.device.name()
        self.compute_capability: tuple[int, int] = tuple(self.device.compute_capability())
        self.total_memory: int = self.device.total_memory()
        self._ctx: Any = self.device.retain_primary_context()
        self._local = threading.local()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        # re-entrant per thread: nested calls push once
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            self._ctx.push()
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth -= 1
            if self._local.depth == 0:
                self._cuda.Context.pop()

    def mem_info(self) -> tuple[int, int]:
        """(free, total) bytes."""
        with self.active():
            free, total = self._cuda.mem_get_info()
        return int(free), int(total)

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.detach()
            self._ctx = None


def alloc_device(context: CudaContext, nbytes: int, what: str) -> Any:
    """``cuMemAlloc`` with an out-of-memory error that says what, how much and the fix."""
    cuda = import_pycuda()
    with context.active():
        try:
            return cuda.mem_alloc(max(nbytes, 1))
        except cuda.MemoryError as exc:
            free, total = cuda.mem_get_info()
            raise GpuOutOfMemoryError(
                f"{context.name}: out of GPU memory allocating {nbytes / 2**20:.1f} MiB for "
                f"{what} ({free / 2**20:.0f} of {total / 2**20:.0f} MiB free): close other GPU "
                "programs, lower the batch size, or use a smaller model") from exc


@runtime_checkable
class DeviceEngine(Protocol):
    """What GpuMatter needs of an engine: device-buffer inference on its own stream.

    The TensorRT and ONNX Runtime CUDA engines implement it; ``isinstance(engine,
    DeviceEngine)`` is how the chain tells them apart (it checks these members exist)."""

    name: str
    context: CudaContext
    stream: Any
    max_batch: int

    @property
    def input_dtype(self) -> str: ...

    @property
    def output_dtype(self) -> str: ...

    def input_shape(self, batch: int) -> tuple[int, ...]: ...

    def output_shape(self, batch: int) -> tuple[int, ...]: ...

    def enqueue(self, input_ptr: int, output_ptr: int, batch: int) -> None: ...


class HostStaging:
    """``Engine.infer`` for a device-buffer engine: a host batch goes through page-locked
    staging arrays and device buffers (allocated once per batch size, grown when needed) to
    ``engine.enqueue`` and back, on the engine's stream. Batches larger than the engine's
    profile are split. TensorRT and ONNX Runtime CUDA engines share it."""

    def __init__(self, engine: DeviceEngine) -> None:
        self._cuda = import_pycuda()
        self.engine = engine
        self._pinned: dict[tuple[str, tuple[int, ...]], Any] = {}
        self._device: dict[str, tuple[int, Any]] = {}

    def infer(self, batch: np.ndarray) -> np.ndarray:
        engine = self.engine
        if batch.shape[0] > engine.max_batch:
            parts = [np.array(self.infer(batch[i:i + engine.max_batch]))
                     for i in range(0, batch.shape[0], engine.max_batch)]
            return np.concatenate(parts)
        n = batch.shape[0]
        with engine.context.active():
            host_in = self._pinned_array("in", engine.input_shape(n), engine.input_dtype)
            host_out = self._pinned_array("out", engine.output_shape(n), engine.output_dtype)
            np.copyto(host_in, batch, casting="same_kind")
            d_in = self._buffer("in", host_in.nbytes)
            d_out = self._buffer("out", host_out.nbytes)
            self._cuda.memcpy_htod_async(d_in, host_in, engine.stream)
            engine.enqueue(d_in, d_out, n)
            self._cuda.memcpy_dtoh_async(host_out, d_out, engine.stream)
            engine.stream.synchronize()
        result: np.ndarray = host_out
        return result

    def _pinned_array(self, role: str, shape: tuple[int, ...], dtype: str) -> Any:
        key = (role, shape)
        if key not in self._pinned:
            self._pinned[key] = self._cuda.pagelocked_empty(shape, np.dtype(dtype))
        return self._pinned[key]

    def _buffer(self, role: str, nbytes: int) -> int:
        held = self._device.get(role)
        if held is None or held[0] < nbytes:
            if held is not None:
                held[1].free()
            self._device[role] = (nbytes, alloc_device(self.engine.context, nbytes,
                                                       f"{self.engine.name} {role}put"))
        return int(self._device[role][1])

    def close(self) -> None:
        """Free the device buffers (the caller makes the engine's context current)."""
        for _, allocation in self._device.values():
            allocation.free()
        self._device.clear()
        self._pinned.clear()


_KERNEL_CACHE: dict[tuple[int, tuple[int, int]], Any] = {}


def compile_kernels(context: CudaContext) -> dict[str, Any]:
    """The kernels compiled (once per GPU) and prepared for async calls."""
    with context.active():
        from pycuda.compiler import SourceModule  # type: ignore[import-not-found, import-untyped, unused-ignore]

        key = (context.index, context.compute_capability)
        module = _KERNEL_CACHE.get(key)
        if module is None:
            # no --use_fast_math: the composite must round exactly like compose.blend
            module = SourceModule(K.KERNEL_SOURCE, no_extern_c=True)
            _KERNEL_CACHE[key] = module
        functions = {}
        for name, fmt in K.KERNEL_SIGNATURES.items():
            fn = module.get_function(name)
            fn.prepare(fmt)
            functions[name] = fn
    return functions


CompositeMode = Literal["rgb", "rgba", "cutout", "matte"]


class GpuMatter:
    """Frames in, composited output out, all on the GPU, with double buffering.

    ``submit(frames)`` queues a batch and returns the outputs of the batch submitted ``slots``
    calls earlier (nothing for the first ``slots`` calls), so the GPU always has the next batch
    queued while the host waits for one; ``flush()`` returns what is still in flight, in order.
    ``process(frames)`` is submit + flush, for callers that need the result at once. Outputs
    are copies; frames must all be ``frame_size`` (width, height), RGB uint8.
    """

    def __init__(
        self,
        engine: DeviceEngine,
        *,
        frame_size: tuple[int, int],
        input_size: tuple[int, int],
        mean: Sequence[float],
        std: Sequence[float],
        layout: Literal["nchw", "nhwc"] = "nchw",
        channel: int = 0,
        sigmoid: bool = False,
        mode: CompositeMode = "rgb",
        colour: tuple[int, int, int] = (255, 255, 255),
        background_image: npt.NDArray[np.uint8] | None = None,
        ema_weight: float | None = None,
        batch: int = 1,
        slots: int = 2,
        overlap: bool = True,
        quantize: bool = True,
    ) -> None:
        cuda = import_pycuda()
        self._cuda = cuda
        if batch > engine.max_batch:
            raise ConfigError(f"batch {batch} is larger than {engine.name}'s profile allows "
                              f"({engine.max_batch}); rebuild with --batch {batch}")
        if ema_weight is not None and not 0.0 < ema_weight <= 1.0:
            raise ConfigError(f"ema weight should be in (0, 1], got {ema_weight}")
        self.engine = engine
        self.context = engine.context
        self.stream = engine.stream
        self.frame_size = frame_size
        self.input_size = input_size
        self.batch = batch
        self.slots = slots
        self.mode = mode
        self.colour = colour
        self.ema_weight = ema_weight
        self.layout = layout
        self.sigmoid = sigmoid
        self.quantize = quantize
        w, h = frame_size
        in_shape = engine.input_shape(batch)[1:]
        out_shape = engine.output_shape(batch)[1:]
        if len(out_shape) == 3:
            out_channels, self._raw_h, self._raw_w = out_shape
        elif len(out_shape) == 2:
            out_channels, (self._raw_h, self._raw_w) = 1, out_shape
        else:
            raise ConfigError(f"{engine.name}: output per sample should be H×W or C×H×W, got "
                              f"{out_shape}")
        if not 0 <= channel < out_channels:
            raise ConfigError(f"{engine.name}: output channel {channel} asked for, the model "
                              f"has {out_channels}")
        self._channel = channel
        self._out_sample = int(np.prod(out_shape))
        self.plan: BufferPlan = plan_buffers(
            frame_size=frame_size, batch=batch, input_shape=in_shape,
            input_dtype=engine.input_dtype, output_shape=out_shape,
            output_dtype=engine.output_dtype, mode=mode,
            background_image=background_image is not None, temporal=ema_weight is not None,
            slots=slots)
        free, _ = self.context.mem_info()
        self.plan.check_fits(free, device_name=self.context.name)
        if engine.input_dtype not in K.DTYPE_SUFFIX:
            raise ConfigError(f"{engine.name}: input dtype {engine.input_dtype} has no "
                              "preprocess kernel")
        if engine.output_dtype not in ("float32", "float16"):
            raise ConfigError(f"{engine.name}: output dtype {engine.output_dtype} has no alpha "
                              "kernel")
        self._kernels = compile_kernels(self.context)
        std32 = np.asarray(std, np.float32)
        self._scale: tuple[float, ...]
        self._offset: tuple[float, ...]
        if engine.input_dtype == "uint8":
            self._scale, self._offset = (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)
        else:
            self._scale = tuple(float(v) for v in (1.0 / (255.0 * std32)).astype(np.float32))
            self._offset = tuple(float(v) for v in (-np.asarray(mean, np.float32) / std32))
        with self.context.active():
            self._arena = alloc_device(self.context, self.plan.device_bytes, "frame buffers")
            base = int(self._arena)
            self._ptr = {k: base + off for k, off in self.plan.offsets.items()}
            self._host = {b.key: cuda.pagelocked_empty(b.shape, np.dtype(b.dtype))
                          for b in self.plan if b.where == "pinned"}
            self._upload = cuda.Stream() if overlap else self.stream
            self._uploaded = [cuda.Event() for _ in range(slots)]
            self._done = [cuda.Event() for _ in range(slots)]
            if background_image is not None:
                if background_image.shape != (h, w, 3):
                    raise ConfigError(f"background image shape {background_image.shape} != "
                                      f"{(h, w, 3)}")
                cuda.memcpy_htod(self._ptr["background"],
                                 np.ascontiguousarray(background_image, np.uint8))
        self._pending: list[int | None] = [None] * slots
        self._next = 0
        self._ema_first = True
        self._capture_left = 0
        self._captured = [0] * slots
        self._alpha_host: dict[int, Any] = {}
        #: alphas downloaded by ``capture_alpha``, in frame order, for the caller to take
        self.alphas: collections.deque[npt.NDArray[np.float32]] = collections.deque()

    def reset(self) -> None:
        """Forget the temporal state (seek, scene cut, new stream)."""
        self._ema_first = True

    def capture_alpha(self, frames: int) -> None:
        """Also download the alpha (after the EMA, before compositing) of the next ``frames``
        frames submitted: they arrive in ``alphas`` with their outputs, in order. The
        self-check compares them with the CPU chain's; later frames pay nothing."""
        self._capture_left = max(0, frames)

    def submit(self, frames: Sequence[npt.NDArray[np.uint8]]) -> list[npt.NDArray[np.uint8]]:
        n = len(frames)
        if not 1 <= n <= self.batch:
            raise ValueError(f"submit takes 1 to {self.batch} frames, got {n}")
        w, h = self.frame_size
        for f in frames:
            if f.shape != (h, w, 3) or f.dtype != np.uint8:
                raise ValueError(f"unexpected frame shape: {f.shape} {f.dtype} != {(h, w, 3)} "
                                 "uint8")
        slot = self._next
        self._next = (slot + 1) % self.slots
        results = self._collect(slot)
        host_in = self._host[f"frames_host[{slot}]"]
        for i, f in enumerate(frames):
            np.copyto(host_in[i], f)
        self._captured[slot] = min(n, self._capture_left)
        self._capture_left -= self._captured[slot]
        with self.context.active():
            self._enqueue(slot, n)
        self._pending[slot] = n
        return results

    def flush(self) -> list[npt.NDArray[np.uint8]]:
        out: list[npt.NDArray[np.uint8]] = []
        for k in range(self.slots):
            out += self._collect((self._next + k) % self.slots)
        return out

    def process(self, frames: Sequence[npt.NDArray[np.uint8]]) -> list[npt.NDArray[np.uint8]]:
        return self.submit(frames) + self.flush()

    def _collect(self, slot: int) -> list[npt.NDArray[np.uint8]]:
        n = self._pending[slot]
        if n is None:
            return []
        with self.context.active():
            self._done[slot].synchronize()
        self._pending[slot] = None
        if self._captured[slot]:
            self.alphas.extend(np.array(a) for a in self._alpha_host[slot][:self._captured[slot]])
            self._captured[slot] = 0
        host_out = self._host[f"output_host[{slot}]"]
        return [np.array(host_out[i]) for i in range(n)]

    def _enqueue(self, slot: int, n: int) -> None:
        cuda, k, s = self._cuda, self._kernels, self.stream
        w, h = self.frame_size
        iw, ih = self.input_size
        p = self._ptr
        frames = p[f"frames[{slot}]"]
        host_in = self._host[f"frames_host[{slot}]"]
        cuda.memcpy_htod_async(frames, host_in[:n], self._upload)
        if self._upload is not s:
            self._uploaded[slot].record(self._upload)
            s.wait_for_event(self._uploaded[slot])
        model_in, model_out = p[f"model_input[{slot}]"], p[f"model_output[{slot}]"]
        alpha, out = p[f"alpha[{slot}]"], p[f"output[{slot}]"]
        launch = K.launch_2d(iw, ih, n)
        k[f"sm_preprocess_{K.DTYPE_SUFFIX[self.engine.input_dtype]}"].prepared_async_call(
            launch.grid, launch.block, s, frames, w, h, 3 * w, 3, h * w * 3, model_in, iw, ih,
            3 * iw * ih, int(self.layout == "nchw"), int(self.quantize), *self._scale,
            *self._offset)
        self.engine.enqueue(model_in, model_out, n)
        item = np.dtype(self.engine.output_dtype).itemsize
        raw = model_out + self._channel * self._raw_h * self._raw_w * item
        launch = K.launch_2d(w, h, n)
        k[f"sm_alpha_{K.DTYPE_SUFFIX[self.engine.output_dtype]}"].prepared_async_call(
            launch.grid, launch.block, s, raw, self._raw_w, self._raw_h, self._out_sample,
            int(self.sigmoid), alpha, w, h, w * h)
        if self.ema_weight is not None:
            flat = K.launch_1d(w * h)
            for i in range(n):  # in order: each frame's state feeds the next
                k["sm_ema"].prepared_async_call(
                    flat.grid, flat.block, s, p["ema_state"], alpha + 4 * w * h * i,
                    float(self.ema_weight), int(self._ema_first), w * h)
                self._ema_first = False
        if self._captured[slot]:
            if slot not in self._alpha_host:
                self._alpha_host[slot] = cuda.pagelocked_empty((self.batch, h, w), np.float32)
            cuda.memcpy_dtoh_async(self._alpha_host[slot][:self._captured[slot]], alpha, s)
        channels = K.COMPOSITE_CHANNELS[self.mode]
        background = p.get("background", 0)
        k["sm_composite"].prepared_async_call(
            launch.grid, launch.block, s, frames, alpha, background, int(background != 0),
            *self.colour, out, w, h, K.COMPOSITE_MODES[self.mode], h * w * 3, h * w,
            h * w * channels)
        host_out = self._host[f"output_host[{slot}]"]
        cuda.memcpy_dtoh_async(host_out[:n], out, s)
        self._done[slot].record(s)

    def close(self) -> None:
        if getattr(self, "_arena", None) is None:
            return
        with self.context.active():
            # kernels still queued may read the arena: let them finish before freeing it
            self.stream.synchronize()
            self._arena.free()
        self._arena = None
        self._host.clear()
        self._alpha_host.clear()

    def __enter__(self) -> GpuMatter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
