"""Buffer planning for the GPU path: what is allocated, once, for a model, a frame size and a
batch; pure Python, so it is tested without a GPU.

Device buffers live in one arena (one ``cuMemAlloc``), each at a 256-byte aligned offset:
that is what ``cudaMalloc`` guarantees and what TensorRT asks of its I/O tensors. Pinned
(page-locked) host buffers are separate allocations, one per double-buffer slot, so the host
fills slot k+1 while the GPU still reads slot k.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..errors import ConfigError, StreamMatteError
from .kernels import COMPOSITE_CHANNELS

ALIGNMENT = 256
MiB = 1024 * 1024

Where = Literal["device", "pinned"]


class GpuOutOfMemoryError(StreamMatteError, MemoryError):
    """The GPU has not enough free memory for an engine or its buffers."""


@dataclass(frozen=True, slots=True)
class BufferSpec:
    """One buffer: ``slot`` is its double-buffer slot, None when one buffer is shared."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    where: Where
    slot: int | None = None

    @property
    def key(self) -> str:
        return self.name if self.slot is None else f"{self.name}[{self.slot}]"

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize

    @property
    def aligned_nbytes(self) -> int:
        return align(self.nbytes)


def align(nbytes: int, alignment: int = ALIGNMENT) -> int:
    return (nbytes + alignment - 1) // alignment * alignment


@dataclass(frozen=True, slots=True)
class BufferPlan:
    """Every buffer of one GPU pipeline and where each device buffer sits in the arena."""

    buffers: tuple[BufferSpec, ...]
    offsets: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        keys = [b.key for b in self.buffers]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate buffers in plan: {keys}")
        offset = 0
        for b in self.buffers:
            if b.where == "device":
                self.offsets[b.key] = offset
                offset += b.aligned_nbytes

    def __iter__(self) -> Iterator[BufferSpec]:
        return iter(self.buffers)

    def get(self, name: str, slot: int | None = None) -> BufferSpec:
        key = name if slot is None else f"{name}[{slot}]"
        for b in self.buffers:
            if b.key == key:
                return b
        raise KeyError(f"no buffer {key!r} in plan (has: {', '.join(x.key for x in self)})")

    @property
    def device_bytes(self) -> int:
        """Size of the device arena."""
        return sum(b.aligned_nbytes for b in self.buffers if b.where == "device")

    @property
    def pinned_bytes(self) -> int:
        return sum(b.nbytes for b in self.buffers if b.where == "pinned")

    def check_fits(self, free_bytes: int, *, engine_bytes: int = 0,
                   device_name: str = "the GPU") -> None:
        """Raise GpuOutOfMemoryError, with the numbers and the fix, when the arena (plus the
        engine's own ``engine_bytes``) does not fit in ``free_bytes``."""
        needed = self.device_bytes + engine_bytes
        if needed > free_bytes:
            raise GpuOutOfMemoryError(
                f"{device_name}: needs {needed / MiB:.1f} MiB of GPU memory (buffers "
                f"{self.device_bytes / MiB:.1f} MiB, engine {engine_bytes / MiB:.1f} MiB) but "
                f"{free_bytes / MiB:.1f} MiB are free: close other GPU programs, lower the "
                "batch size, or use a smaller model or frame size"
            )

    def describe(self) -> list[str]:
        lines = [f"{b.key:<20} {b.where:<6} {b.dtype:<8} {'×'.join(map(str, b.shape)):<22} "
                 f"{b.nbytes / MiB:8.2f} MiB" for b in self.buffers]
        lines.append(f"device arena {self.device_bytes / MiB:.2f} MiB, pinned host "
                     f"{self.pinned_bytes / MiB:.2f} MiB")
        return lines


def plan_buffers(
    *,
    frame_size: tuple[int, int],
    batch: int,
    input_shape: tuple[int, ...],
    input_dtype: str,
    output_shape: tuple[int, ...],
    output_dtype: str,
    mode: str,
    background_image: bool = False,
    temporal: bool = False,
    slots: int = 2,
) -> BufferPlan:
    """Buffers for ``batch`` frames of ``frame_size`` (width, height) through a model whose one
    sample is ``input_shape`` in and ``output_shape`` out, composited as ``mode`` (``rgb``,
    ``rgba``, ``cutout`` or ``matte``); ``slots`` copies of everything a batch in flight uses.
    """
    w, h = frame_size
    if w < 1 or h < 1:
        raise ConfigError(f"frame size should be positive, got {w}×{h}")
    if batch < 1:
        raise ConfigError(f"batch should be >= 1, got {batch}")
    if slots < 1:
        raise ConfigError(f"slots should be >= 1, got {slots}")
    if mode not in COMPOSITE_CHANNELS:
        raise ConfigError(f"unknown output mode {mode!r} (expected one of "
                          f"{', '.join(COMPOSITE_CHANNELS)})")
    for what, shape in (("input", input_shape), ("output", output_shape)):
        if not shape or any(not isinstance(d, int) or d < 1 for d in shape):
            raise ConfigError(f"model {what} shape per sample should be positive integers, "
                              f"got {shape} (a free dimension must be fixed by the profile)")
    channels = COMPOSITE_CHANNELS[mode]
    out_shape = (batch, h, w) if channels == 1 else (batch, h, w, channels)
    buffers: list[BufferSpec] = []
    for slot in range(slots):
        buffers += [
            BufferSpec("frames_host", (batch, h, w, 3), "uint8", "pinned", slot),
            BufferSpec("frames", (batch, h, w, 3), "uint8", "device", slot),
            BufferSpec("model_input", (batch, *input_shape), input_dtype, "device", slot),
            BufferSpec("model_output", (batch, *output_shape), output_dtype, "device", slot),
            BufferSpec("alpha", (batch, h, w), "float32", "device", slot),
            BufferSpec("output", out_shape, "uint8", "device", slot),
            BufferSpec("output_host", out_shape, "uint8", "pinned", slot),
        ]
    if temporal:
        buffers.append(BufferSpec("ema_state", (h, w), "float32", "device"))
    if background_image:
        buffers.append(BufferSpec("background", (h, w, 3), "uint8", "device"))
    return BufferPlan(tuple(buffers))
