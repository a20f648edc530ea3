"""CUDA C++ source of the pre/post-processing kernels, and how to launch them.

Every kernel has a numpy twin in :mod:`streammatte.cuda.reference` with the same semantics;
CI tests the twins (and runs this very source on the CPU through a small emulation shim), the
GPU check (``benchmarks/gpu_check.py``) compares the compiled kernels with the twins.

Conventions shared with the reference:

- resize: per axis, *area* averaging when that axis shrinks (OpenCV ``INTER_AREA``) and linear
  interpolation between pixel centres when it grows (OpenCV ``INTER_LINEAR``: source coordinate
  ``(o + 0.5)·in/out − 0.5``, clamped to the edge pixels). Alpha upsampling is always linear,
  as the CPU Postprocessor's ``cv2.resize(..., INTER_LINEAR)``.
- normalisation: ``x·scale + offset`` with ``scale = 1/(255·std)``, ``offset = −mean/std`` (the
  CPU Preprocessor's folding); ``quantize`` rounds the resized pixel to an integer first, as the
  CPU path does by resizing in uint8.
- blends use the ``_rn`` intrinsics so nvcc cannot fuse them into FMAs: the composite then
  matches ``compose.blend`` bit for bit.

Parameter formats are pycuda ``prepare`` strings: ``P`` pointer, ``i`` int32, ``q`` int64,
``f`` float32.
"""

from __future__ import annotations

from dataclasses import dataclass

#: name → pycuda prepare() format of its parameters
KERNEL_SIGNATURES: dict[str, str] = {
    "sm_preprocess_f32": "PiiiiqPiiqiiffffff",
    "sm_preprocess_f16": "PiiiiqPiiqiiffffff",
    "sm_preprocess_u8": "PiiiiqPiiqiiffffff",
    "sm_alpha_f32": "PiiqiPiiq",
    "sm_alpha_f16": "PiiqiPiiq",
    "sm_ema": "PPfii",
    "sm_composite": "PPPiiiiPiiiqqq",
}

#: composite modes, as the kernel's ``mode`` argument
COMPOSITE_MODES: dict[str, int] = {"rgb": 0, "rgba": 1, "cutout": 2, "matte": 3}

#: output channels of each composite mode
COMPOSITE_CHANNELS: dict[str, int] = {"rgb": 3, "rgba": 4, "cutout": 4, "matte": 1}

#: dtype name → suffix of the preprocess / alpha kernel that handles it
DTYPE_SUFFIX: dict[str, str] = {"float32": "f32", "float16": "f16", "uint8": "u8"}

BLOCK_2D: tuple[int, int, int] = (16, 16, 1)
BLOCK_1D: tuple[int, int, int] = (256, 1, 1)


@dataclass(frozen=True, slots=True)
class Launch:
    """Grid and block of one kernel launch."""

    grid: tuple[int, int, int]
    block: tuple[int, int, int]


def launch_2d(width: int, height: int, batch: int = 1,
              block: tuple[int, int, int] = BLOCK_2D) -> Launch:
    """One thread per output pixel, ``batch`` samples along the grid's z axis."""
    if width < 1 or height < 1 or batch < 1:
        raise ValueError(f"launch size should be positive, got {width}×{height}×{batch}")
    bx, by, _ = block
    return Launch(((width + bx - 1) // bx, (height + by - 1) // by, batch), block)


def launch_1d(count: int, block: tuple[int, int, int] = BLOCK_1D) -> Launch:
    if count < 1:
        raise ValueError(f"launch size should be positive, got {count}")
    return Launch(((count + block[0] - 1) // block[0], 1, 1), block)


KERNEL_SOURCE = r"""
#ifndef STREAMMATTE_CPU_EMULATION
#include <cuda_fp16.h>
#endif

namespace sm {

template <typename T> __device__ __forceinline__ T store(float v);
template <> __device__ __forceinline__ float store<float>(float v) { return v; }
template <> __device__ __forceinline__ __half store<__half>(float v) {
    return __float2half_rn(v);
}
template <> __device__ __forceinline__ unsigned char store<unsigned char>(float v) {
    return (unsigned char)fminf(fmaxf(rintf(v), 0.0f), 255.0f);
}

__device__ __forceinline__ float load(float v) { return v; }
__device__ __forceinline__ float load(__half v) { return __half2float(v); }

// Output index o of one axis reads input indices first..last, weighted by weight().
struct Axis {
    int first;
    int last;
    float pos;    // area: start of the covered span; linear: source coordinate
    float scale;  // input pixels per output pixel
    bool area;
};

__device__ __forceinline__ Axis make_axis(int o, int n_in, int n_out, bool allow_area) {
    Axis a;
    a.scale = (float)n_in / (float)n_out;
    a.area = allow_area && a.scale > 1.0f;
    if (a.area) {
        a.pos = (float)o * a.scale;
        a.first = (int)floorf(a.pos);
        a.last = min((int)ceilf(a.pos + a.scale) - 1, n_in - 1);
    } else {
        a.pos = fminf(fmaxf(((float)o + 0.5f) * a.scale - 0.5f, 0.0f), (float)(n_in - 1));
        a.first = (int)floorf(a.pos);
        a.last = min(a.first + 1, n_in - 1);
    }
    return a;
}

__device__ __forceinline__ float weight(const Axis& a, int i) {
    if (a.area) {
        float lo = fmaxf(a.pos, (float)i);
        float hi = fminf(a.pos + a.scale, (float)(i + 1));
        return fmaxf(hi - lo, 0.0f) / a.scale;
    }
    return fmaxf(1.0f - fabsf((float)i - a.pos), 0.0f);
}

// uint8 RGB(A) frames, packed rows -> model input: resize, normalise, NCHW or NHWC, T.
template <typename T>
__device__ __forceinline__ void preprocess(
    const unsigned char* src, int src_w, int src_h, int src_pitch, int src_channels,
    long long src_sample_stride, T* dst, int dst_w, int dst_h, long long dst_sample_stride,
    int planar, int quantize, float s0, float s1, float s2, float o0, float o1, float o2)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    int n = blockIdx.z;
    if (x >= dst_w || y >= dst_h) return;
    Axis ax = make_axis(x, src_w, dst_w, true);
    Axis ay = make_axis(y, src_h, dst_h, true);
    const unsigned char* base = src + (long long)n * src_sample_stride;
    float acc0 = 0.0f, acc1 = 0.0f, acc2 = 0.0f;
    for (int j = ay.first; j <= ay.last; ++j) {
        float wy = weight(ay, j);
        if (wy == 0.0f) continue;
        const unsigned char* row = base + (long long)j * src_pitch;
        for (int i = ax.first; i <= ax.last; ++i) {
            float w = wy * weight(ax, i);
            const unsigned char* p = row + i * src_channels;
            acc0 += w * (float)p[0];
            acc1 += w * (float)p[1];
            acc2 += w * (float)p[2];
        }
    }
    if (quantize) {
        // the CPU path resizes in uint8: round (half to even, as OpenCV's saturate_cast)
        acc0 = fminf(fmaxf(rintf(acc0), 0.0f), 255.0f);
        acc1 = fminf(fmaxf(rintf(acc1), 0.0f), 255.0f);
        acc2 = fminf(fmaxf(rintf(acc2), 0.0f), 255.0f);
    }
    T* out = dst + (long long)n * dst_sample_stride;
    T v0 = store<T>(__fadd_rn(__fmul_rn(acc0, s0), o0));
    T v1 = store<T>(__fadd_rn(__fmul_rn(acc1, s1), o1));
    T v2 = store<T>(__fadd_rn(__fmul_rn(acc2, s2), o2));
    long long plane = (long long)dst_w * dst_h;
    long long at = (long long)y * dst_w + x;
    if (planar) {
        out[at] = v0;
        out[plane + at] = v1;
        out[2 * plane + at] = v2;
    } else {
        out[3 * at] = v0;
        out[3 * at + 1] = v1;
        out[3 * at + 2] = v2;
    }
}

__device__ __forceinline__ float to_alpha(float v, int sigmoid) {
    if (sigmoid) v = 1.0f / (1.0f + expf(-v));
    return fminf(fmaxf(v, 0.0f), 1.0f);
}

// One channel of the raw model output (H'xW' per sample) -> alpha at frame size, in [0, 1].
template <typename T>
__device__ __forceinline__ void alpha_resize(
    const T* raw, int raw_w, int raw_h, long long raw_sample_stride, int sigmoid,
    float* alpha, int w, int h, long long alpha_sample_stride)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    int n = blockIdx.z;
    if (x >= w || y >= h) return;
    Axis ax = make_axis(x, raw_w, w, false);
    Axis ay = make_axis(y, raw_h, h, false);
    const T* base = raw + (long long)n * raw_sample_stride;
    float acc = 0.0f;
    for (int j = ay.first; j <= ay.last; ++j) {
        float wy = weight(ay, j);
        for (int i = ax.first; i <= ax.last; ++i) {
            acc += wy * weight(ax, i) * to_alpha(load(base[(long long)j * raw_w + i]), sigmoid);
        }
    }
    alpha[(long long)n * alpha_sample_stride + (long long)y * w + x] = acc;
}

}  // namespace sm

#define SM_PREPROCESS(NAME, T)                                                              \
extern "C" __global__ void NAME(                                                            \
    const unsigned char* src, int src_w, int src_h, int src_pitch, int src_channels,        \
    long long src_sample_stride, T* dst, int dst_w, int dst_h, long long dst_sample_stride, \
    int planar, int quantize, float s0, float s1, float s2, float o0, float o1, float o2)   \
{                                                                                           \
    sm::preprocess<T>(src, src_w, src_h, src_pitch, src_channels, src_sample_stride, dst,   \
                      dst_w, dst_h, dst_sample_stride, planar, quantize, s0, s1, s2, o0,    \
                      o1, o2);                                                              \
}

SM_PREPROCESS(sm_preprocess_f32, float)
SM_PREPROCESS(sm_preprocess_f16, __half)
SM_PREPROCESS(sm_preprocess_u8, unsigned char)

#define SM_ALPHA(NAME, T)                                                                   \
extern "C" __global__ void NAME(                                                            \
    const T* raw, int raw_w, int raw_h, long long raw_sample_stride, int sigmoid,           \
    float* alpha, int w, int h, long long alpha_sample_stride)                              \
{                                                                                           \
    sm::alpha_resize<T>(raw, raw_w, raw_h, raw_sample_stride, sigmoid, alpha, w, h,         \
                        alpha_sample_stride);                                               \
}

SM_ALPHA(sm_alpha_f32, float)
SM_ALPHA(sm_alpha_f16, __half)

// Temporal EMA (streammatte.temporal.FixedEma): state += w·(alpha − state), and the smoothed
// value is written back over alpha for the composite. ``first`` starts from alpha itself.
extern "C" __global__ void sm_ema(float* state, float* alpha, float w, int first, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float s = first ? alpha[i] : __fadd_rn(state[i], __fmul_rn(w, __fsub_rn(alpha[i], state[i])));
    state[i] = s;
    alpha[i] = s;
}

// Frame + alpha -> uint8 output. mode 0: RGB over the background (image when has_bg, else
// the colour), 1: the same with an opaque alpha channel, 2: RGBA cut-out (straight alpha),
// 3: the matte alone.
extern "C" __global__ void sm_composite(
    const unsigned char* frame, const float* alpha, const unsigned char* bg, int has_bg,
    int r, int g, int b, unsigned char* out, int w, int h, int mode,
    long long frame_stride, long long alpha_stride, long long out_stride)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    int n = blockIdx.z;
    if (x >= w || y >= h) return;
    long long at = (long long)y * w + x;
    float a = alpha[(long long)n * alpha_stride + at];
    unsigned char a8 = (unsigned char)fminf(fmaxf(__fadd_rn(__fmul_rn(a, 255.0f), 0.5f),
                                                  0.0f), 255.0f);
    if (mode == 3) {
        out[(long long)n * out_stride + at] = a8;
        return;
    }
    const unsigned char* f = frame + (long long)n * frame_stride + 3 * at;
    int channels = mode == 0 ? 3 : 4;
    unsigned char* o = out + (long long)n * out_stride + channels * at;
    if (mode == 2) {
        o[0] = f[0];
        o[1] = f[1];
        o[2] = f[2];
        o[3] = a8;
        return;
    }
    int colour[3] = {r, g, b};
    for (int c = 0; c < 3; ++c) {
        float back = has_bg ? (float)bg[3 * at + c] : (float)colour[c];
        float v = __fadd_rn(back, __fmul_rn(__fsub_rn((float)f[c], back), a));
        o[c] = (unsigned char)fminf(fmaxf(__fadd_rn(v, 0.5f), 0.0f), 255.0f);
    }
    if (mode == 1) o[3] = 255;
}
"""
