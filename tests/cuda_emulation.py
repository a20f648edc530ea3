"""The CUDA kernels run on the CPU, and a fake pycuda driver over host memory: what the tests
of the GPU path use where no GPU is (tests/test_cuda_reference.py, tests/test_gpu_selfcheck.py).

- ``emulated``: the CUDA C++ source compiled with g++ and a small shim (``blockIdx`` /
  ``threadIdx`` loops, ``__half`` as ``_Float16``, no FMA contraction), called like pycuda's
  ``prepared_call``;
- ``emulated_gpu``: ``streammatte.cuda.runtime`` on ``fake_driver()`` (device memory is host
  memory, copies are ``memmove``, streams and events do nothing) with the emulated kernels, so
  ``GpuMatter`` and the all-GPU chain run on the CPU.

The emulation checks the kernels' indexing, weights and rounding and the runtime's
orchestration; it cannot check CUDA itself (launch limits, real streams, nvcc's floating point).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streammatte.cuda.kernels import KERNEL_SIGNATURES, KERNEL_SOURCE

_SHIM = r"""
#include <algorithm>
#include <cmath>
#define STREAMMATTE_CPU_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
struct sm_dim3 { int x, y, z; };
static sm_dim3 blockIdx, threadIdx, blockDim, gridDim;
typedef _Float16 __half;
static inline __half __float2half_rn(float v) { return (__half)v; }
static inline float __half2float(__half v) { return (float)v; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
using std::min;
using std::max;
"""

_LAUNCHER = r"""
template <typename R, typename... P, typename... A>
static void sm_call(R (*kernel)(P...), A... args) { kernel(((P)args)...); }

template <typename F>
static void sm_launch(int gx, int gy, int gz, int bx, int by, int bz, F body) {
    gridDim = {gx, gy, gz};
    blockDim = {bx, by, bz};
    for (int z = 0; z < gz; ++z) for (int y = 0; y < gy; ++y) for (int x = 0; x < gx; ++x)
    for (int tz = 0; tz < bz; ++tz) for (int ty = 0; ty < by; ++ty)
    for (int tx = 0; tx < bx; ++tx) {
        blockIdx = {x, y, z};
        threadIdx = {tx, ty, tz};
        body();
    }
}
"""

_C_TYPES = {"P": ("void*", ctypes.c_void_p), "i": ("int", ctypes.c_int),
            "q": ("long long", ctypes.c_longlong), "f": ("float", ctypes.c_float)}


def _wrappers() -> str:
    out = []
    for name, fmt in KERNEL_SIGNATURES.items():
        params = ", ".join(f"{_C_TYPES[c][0]} a{i}" for i, c in enumerate(fmt))
        args = ", ".join(f"a{i}" for i in range(len(fmt)))
        out.append(
            f'extern "C" void emu_{name}(int gx, int gy, int gz, int bx, int by, int bz, '
            f"{params}) {{ sm_launch(gx, gy, gz, bx, by, bz, "
            f"[&] {{ sm_call(&{name}, {args}); }}); }}"
        )
    return "\n".join(out)


class Emulated:
    """The kernels compiled for the CPU; call like pycuda's prepared_call(grid, block, *args)."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib

    def __call__(self, name: str, grid: tuple[int, int, int], block: tuple[int, int, int],
                 *args: Any) -> None:
        fmt = KERNEL_SIGNATURES[name]
        if len(args) != len(fmt):
            raise TypeError(f"{name} takes {len(fmt)} arguments, got {len(args)}")
        fn = getattr(self._lib, f"emu_{name}")
        fn.argtypes = [ctypes.c_int] * 6 + [_C_TYPES[c][1] for c in fmt]
        fn.restype = None
        converted = [a.ctypes.data if isinstance(a, np.ndarray) else
                     int(a) if isinstance(a, FakeAllocation) else a for a in args]
        fn(*grid, *block, *converted)


@pytest.fixture(scope="session")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> Emulated:
    """The kernels compiled for the CPU, once per test session."""
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("g++ not found: cannot run the CUDA source on the CPU")
    work = Path(tmp_path_factory.mktemp("cuda-emulation"))
    source = work / "kernels.cpp"
    source.write_text(_SHIM + KERNEL_SOURCE + _LAUNCHER + _wrappers(), encoding="utf-8")
    lib = work / "kernels.so"
    # no FMA contraction: CUDA's _rn intrinsics promise the same
    subprocess.run([compiler, "-std=c++17", "-O1", "-ffp-contract=off", "-shared", "-fPIC",
                    "-o", str(lib), str(source)], check=True, capture_output=True, text=True)
    return Emulated(ctypes.CDLL(str(lib)))


class FakeAllocation:
    def __init__(self, nbytes: int) -> None:
        self.buffer = np.zeros(nbytes, np.uint8)

    def __int__(self) -> int:
        return int(self.buffer.ctypes.data)

    def free(self) -> None:
        self.buffer = np.zeros(0, np.uint8)


class FakeStream:
    handle = 0

    def synchronize(self) -> None:
        pass

    def wait_for_event(self, event: object) -> None:
        pass


class FakeEvent:
    def record(self, stream: object = None) -> None:
        pass

    def synchronize(self) -> None:
        pass


def fake_driver() -> Any:
    import types

    def htod(dest: int, src: np.ndarray, stream: object = None) -> None:
        ctypes.memmove(int(dest), np.ascontiguousarray(src).ctypes.data, src.nbytes)

    def dtoh(dest: np.ndarray, src: int, stream: object = None) -> None:
        ctypes.memmove(dest.ctypes.data, int(src), dest.nbytes)

    def to_device(array: np.ndarray) -> FakeAllocation:
        allocation = FakeAllocation(array.nbytes)
        htod(int(allocation), array)
        return allocation

    def from_device(src: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        out = np.empty(shape, dtype)
        dtoh(out, src)
        return out

    driver = types.SimpleNamespace(
        mem_alloc=FakeAllocation, memcpy_htod_async=htod, memcpy_htod=htod,
        memcpy_dtoh_async=dtoh, memcpy_dtoh=dtoh, to_device=to_device, from_device=from_device,
        pagelocked_empty=lambda shape, dtype: np.zeros(shape, dtype),
        Stream=FakeStream, Event=FakeEvent, MemoryError=MemoryError,
        mem_get_info=lambda: (1 << 34, 1 << 34))
    return driver


class FakeContext:
    name, index, compute_capability = "emulated GPU", 0, (0, 0)

    def active(self) -> Any:
        import contextlib

        return contextlib.nullcontext()

    def mem_info(self) -> tuple[int, int]:
        return 1 << 34, 1 << 34


@pytest.fixture
def emulated_gpu(emulated: Emulated, monkeypatch: pytest.MonkeyPatch) -> None:
    import streammatte.cuda.runtime as runtime

    class _Prepared:
        def __init__(self, name: str) -> None:
            self.name = name

        def prepared_async_call(self, grid: tuple[int, int, int], block: tuple[int, int, int],
                                stream: object, *args: Any) -> None:
            emulated(self.name, grid, block, *args)

    monkeypatch.setattr(runtime, "import_pycuda", fake_driver)
    monkeypatch.setattr(runtime, "compile_kernels",
                        lambda ctx: {n: _Prepared(n) for n in KERNEL_SIGNATURES})
