"""The GPU kernels' numpy twins against independent computations (OpenCV, the CPU
Preprocessor/Postprocessor, compose.blend, FixedEma), and the CUDA C++ source itself run on the
CPU through an emulation shim (g++, one loop over blocks and threads) against the twins.

The emulation checks the kernels' indexing, weights and rounding; it cannot check CUDA itself
(launch limits, memory coalescing, nvcc's floating point): that is benchmarks/gpu_check.py's job
on a GPU machine.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from cuda_emulation import Emulated, FakeContext, FakeStream

from streammatte.compose import Background, Compositor, blend
from streammatte.cuda import reference as ref
from streammatte.cuda.kernels import (
    COMPOSITE_MODES,
    KERNEL_SIGNATURES,
    KERNEL_SOURCE,
    launch_1d,
    launch_2d,
)
from streammatte.inference.base import Engine
from streammatte.models.catalog import InputSpec, OutputSpec
from streammatte.postprocess import Postprocessor
from streammatte.preprocess import Preprocessor
from streammatte.temporal import FixedEma

ALPHA_TOL = 1.0 / 255.0
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _frames(n: int, w: int, h: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    # smooth structure plus noise: flat random noise would hide resize weight errors less well
    yy, xx = np.mgrid[0:h, 0:w]
    base = (127 + 100 * np.sin(xx / 7.0)[..., None] * np.cos(yy / 5.0)[..., None]
            * np.array([1.0, 0.6, -0.8]))
    out = np.stack([base + rng.normal(0, 20, (h, w, 3)) for _ in range(n)])
    frames: npt.NDArray[np.uint8] = np.clip(out, 0, 255).astype(np.uint8)
    return frames


# --- the twins against independent computations -------------------------------------------

@pytest.mark.parametrize(("src", "dst"), [((96, 54), (32, 32)), ((1280, 720), (320, 320)),
                                          ((854, 480), (320, 320))])
def test_area_weights_match_opencv_inter_area(src: tuple[int, int], dst: tuple[int, int]) -> None:
    image = _frames(1, *src)[0].astype(np.float32)
    expected = cv2.resize(image, dst, interpolation=cv2.INTER_AREA)
    got = ref.resize(image[None], dst)[0]
    assert np.abs(got - expected).max() < 1e-3


@pytest.mark.parametrize(("src", "dst"), [((32, 24), (320, 320)), ((320, 320), (1920, 1080)),
                                          ((7, 5), (13, 11))])
def test_linear_weights_match_opencv_inter_linear(src: tuple[int, int],
                                                  dst: tuple[int, int]) -> None:
    image = _frames(1, *src, seed=1)[0].astype(np.float32)
    expected = cv2.resize(image, dst, interpolation=cv2.INTER_LINEAR)
    got = ref.resize(image[None], dst, allow_area=False)[0]
    assert np.abs(got - expected).max() < 1e-3


def test_linear_downscale_is_two_tap_not_area() -> None:
    # the alpha path resizes linearly in both directions, as cv2 INTER_LINEAR does
    weights = ref.axis_weights(8, 2, allow_area=False)
    assert (np.count_nonzero(weights, axis=1) <= 2).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)


def test_axis_weights_reject_empty_axes() -> None:
    with pytest.raises(ValueError, match="positive"):
        ref.axis_weights(0, 4, allow_area=True)


@pytest.mark.parametrize("src", [(640, 360), (48, 40)])
def test_preprocess_matches_cpu_preprocessor(src: tuple[int, int]) -> None:
    frames = _frames(2, *src, seed=2)
    spec = InputSpec(name="x", size=(320, 320), mean=MEAN, std=STD)
    expected = np.stack([Preprocessor(spec)(f) for f in frames])
    got = ref.preprocess(frames, (320, 320), mean=MEAN, std=STD)
    assert got.shape == expected.shape == (2, 3, 320, 320)
    # OpenCV's uint8 resize is fixed point (11-bit weights): at most one grey level apart
    one_level = 1.0 / (255.0 * min(STD)) + 1e-5
    diff = np.abs(got - expected)
    assert diff.max() <= one_level
    assert diff.mean() < 0.2 * one_level


def test_preprocess_nhwc_uint8_matches_cpu_preprocessor() -> None:
    frames = _frames(1, 50, 30, seed=3)
    spec = InputSpec(name="x", size=(25, 15), layout="nhwc", dtype="uint8")
    expected = Preprocessor(spec)(frames[0])
    got = ref.preprocess(frames, (25, 15), layout="nhwc", dtype="uint8")[0]
    assert got.dtype == np.uint8 and got.shape == expected.shape == (15, 25, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_preprocess_float16_is_the_float32_result_rounded() -> None:
    frames = _frames(1, 64, 48, seed=4)
    f32 = ref.preprocess(frames, (32, 32), mean=MEAN, std=STD)
    f16 = ref.preprocess(frames, (32, 32), mean=MEAN, std=STD, dtype="float16")
    assert f16.dtype == np.float16
    np.testing.assert_array_equal(f16, f32.astype(np.float16))


def test_preprocess_rejects_non_rgb_frames() -> None:
    with pytest.raises(ValueError, match=r"N×H×W×3 uint8"):
        ref.preprocess(np.zeros((2, 4, 4), np.uint8), (2, 2))


@pytest.mark.parametrize("sigmoid", [False, True])
@pytest.mark.parametrize("size", [(1920, 1080), (200, 150)])
def test_alpha_resize_matches_cpu_postprocessor(sigmoid: bool, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(5)
    raw = rng.normal(0.5, 0.6 if not sigmoid else 3.0, (2, 1, 80, 80)).astype(np.float32)
    post = Postprocessor(OutputSpec(activation="sigmoid" if sigmoid else "none"))
    expected = np.stack([post(r, size) for r in raw])
    got = ref.alpha_resize(raw[:, 0], size, sigmoid=sigmoid)
    assert got.shape == expected.shape == (2, size[1], size[0])
    assert np.abs(got - expected).max() <= ALPHA_TOL


def test_ema_matches_fixed_ema_over_a_sequence() -> None:
    rng = np.random.default_rng(6)
    alphas = rng.random((5, 12, 16), dtype=np.float32)
    cpu = FixedEma(0.4)
    state = None
    for a in alphas:
        expected = cpu(a.copy(), np.zeros((12, 16, 3), np.uint8))
        state = ref.ema(state, a, 0.4)
        np.testing.assert_array_equal(state, expected)


def test_composite_blend_matches_compose_blend_exactly() -> None:
    frames = _frames(2, 40, 30, seed=7)
    bg = _frames(1, 40, 30, seed=8)[0]
    alphas = np.random.default_rng(9).random((2, 30, 40), dtype=np.float32)
    got = ref.composite(frames, alphas, mode="rgb", background=bg)
    for n in range(2):
        np.testing.assert_array_equal(got[n], blend(frames[n], bg, alphas[n]))


@pytest.mark.parametrize(("mode", "kind"), [("rgb", "colour"), ("rgba", "colour"),
                                            ("cutout", "transparent"), ("matte", "colour")])
def test_composite_matches_compositor(mode: str, kind: str) -> None:
    frames = _frames(1, 24, 18, seed=10)
    alpha = np.random.default_rng(11).random((18, 24), dtype=np.float32)
    background = Background("transparent") if kind == "transparent" else Background(
        "colour", colour=(0, 177, 64))
    out_mode = {"cutout": "rgba"}.get(mode, mode)
    expected = Compositor(background, out_mode)(frames[0], alpha)  # type: ignore[arg-type]
    got = ref.composite(frames, alpha[None], mode=mode, colour=(0, 177, 64))  # type: ignore[arg-type]
    np.testing.assert_array_equal(got[0], expected)


# --- the CUDA source, run on the CPU --------------------------------------------------------


def _run_preprocess(emulated: Emulated, frames: npt.NDArray[np.uint8], size: tuple[int, int],
                    dtype: str, planar: bool, mean: tuple[float, float, float],
                    std: tuple[float, float, float]) -> np.ndarray:
    n, h, w, c = frames.shape
    dw, dh = size
    out_dtype = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}[dtype]
    out = np.full((n, 3, dh, dw) if planar else (n, dh, dw, 3), 7, out_dtype)
    if dtype == "uint8":
        scale, offset = (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)
    else:
        s = 1.0 / (255.0 * np.asarray(std, np.float32))
        scale = tuple(float(v) for v in s.astype(np.float32))  # type: ignore[assignment]
        offset = tuple(float(v) for v in (-np.asarray(mean, np.float32)
                                          / np.asarray(std, np.float32)))  # type: ignore[assignment]
    launch = launch_2d(dw, dh, n)
    name = {"float32": "sm_preprocess_f32", "float16": "sm_preprocess_f16",
            "uint8": "sm_preprocess_u8"}[dtype]
    emulated(name, launch.grid, launch.block, np.ascontiguousarray(frames), w, h, w * c, c,
             h * w * c, out, dw, dh, 3 * dw * dh, int(planar), 1, *scale, *offset)
    return out


@pytest.mark.parametrize(("src", "dst"), [((100, 60), (32, 32)), ((20, 14), (48, 40))])
def test_cuda_preprocess_f32_matches_reference(emulated: Emulated, src: tuple[int, int],
                                               dst: tuple[int, int]) -> None:
    frames = _frames(2, *src, seed=12)
    got = _run_preprocess(emulated, frames, dst, "float32", True, MEAN, STD)
    expected = ref.preprocess(frames, dst, mean=MEAN, std=STD)
    # float32 sums in a different order can land either side of a .5 before rounding
    diff = np.abs(got - expected)
    assert diff.max() <= 1.0 / (255.0 * min(STD)) + 1e-5
    assert (diff > 1e-5).mean() < 0.01


def test_cuda_preprocess_f16_and_nhwc_u8_match_reference(emulated: Emulated) -> None:
    frames = _frames(1, 64, 36, seed=13)
    f16 = _run_preprocess(emulated, frames, (16, 16), "float16", True, MEAN, STD)
    assert np.abs(f16.astype(np.float32)
                  - ref.preprocess(frames, (16, 16), mean=MEAN, std=STD)).max() < 0.03
    u8 = _run_preprocess(emulated, frames, (16, 16), "uint8", False, MEAN, STD)
    expected = ref.preprocess(frames, (16, 16), layout="nhwc", dtype="uint8")
    assert np.abs(u8.astype(int) - expected.astype(int)).max() <= 1


def test_cuda_preprocess_reads_rgba_frames_with_a_row_pitch(emulated: Emulated) -> None:
    frames = _frames(1, 30, 20, seed=14)
    rgba = np.zeros((1, 20, 32, 4), np.uint8)  # 32 px per row: 2 px of padding at the end
    rgba[:, :, :30, :3] = frames
    out = np.zeros((1, 3, 10, 15), np.float32)
    launch = launch_2d(15, 10, 1)
    emulated("sm_preprocess_f32", launch.grid, launch.block, rgba, 30, 20, 32 * 4, 4,
             20 * 32 * 4, out, 15, 10, 3 * 150, 1, 1, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0)
    expected = ref.preprocess(frames, (15, 10), std=(1 / 255, 1 / 255, 1 / 255))
    assert np.abs(out - expected).max() <= 1.0 + 1e-4


@pytest.mark.parametrize("sigmoid", [0, 1])
def test_cuda_alpha_matches_reference_within_one_level(emulated: Emulated, sigmoid: int) -> None:
    rng = np.random.default_rng(15)
    raw = rng.normal(0.4, 2.0, (2, 1, 40, 40)).astype(np.float32)
    w, h = 130, 70
    alpha = np.zeros((2, h, w), np.float32)
    launch = launch_2d(w, h, 2)
    emulated("sm_alpha_f32", launch.grid, launch.block, raw, 40, 40, 40 * 40, sigmoid, alpha,
             w, h, w * h)
    expected = ref.alpha_resize(raw[:, 0], (w, h), sigmoid=bool(sigmoid))
    assert np.abs(alpha - expected).max() <= ALPHA_TOL / 100
    post = Postprocessor(OutputSpec(activation="sigmoid" if sigmoid else "none"))
    assert np.abs(alpha[1] - post(raw[1], (w, h))).max() <= ALPHA_TOL


def test_cuda_alpha_reads_float16_and_a_channel_offset(emulated: Emulated) -> None:
    rng = np.random.default_rng(16)
    raw = rng.random((1, 2, 8, 8)).astype(np.float16)
    alpha = np.zeros((1, 16, 16), np.float32)
    launch = launch_2d(16, 16, 1)
    channel1 = raw[:, 1:]  # a view that starts at channel 1, as the host offsets the pointer
    emulated("sm_alpha_f16", launch.grid, launch.block, np.ascontiguousarray(raw)[0, 1], 8, 8,
             2 * 64, 0, alpha, 16, 16, 256)
    expected = ref.alpha_resize(channel1[:, 0], (16, 16))
    assert np.abs(alpha - expected).max() <= 1e-6


def test_cuda_ema_matches_reference_bit_for_bit(emulated: Emulated) -> None:
    rng = np.random.default_rng(17)
    seq = rng.random((4, 300), dtype=np.float32)
    state = np.full(300, np.nan, np.float32)  # garbage before the first frame must not leak
    expected = None
    for k, a in enumerate(seq):
        alpha = a.copy()
        launch = launch_1d(300)
        emulated("sm_ema", launch.grid, launch.block, state, alpha, 0.3, int(k == 0), 300)
        expected = ref.ema(expected, a, 0.3)
        np.testing.assert_array_equal(state, expected)
        np.testing.assert_array_equal(alpha, expected)


@pytest.mark.parametrize("mode", ["rgb", "rgba", "cutout", "matte"])
@pytest.mark.parametrize("with_image", [False, True])
def test_cuda_composite_matches_reference_bit_for_bit(emulated: Emulated, mode: str,
                                                      with_image: bool) -> None:
    frames = _frames(2, 21, 13, seed=18)
    bg = _frames(1, 21, 13, seed=19)[0]
    alphas = np.random.default_rng(20).random((2, 13, 21), dtype=np.float32)
    alphas[0, 0, :4] = (0.0, 1.0, 0.5, 0.999)
    channels = {"rgb": 3, "rgba": 4, "cutout": 4, "matte": 1}[mode]
    out = np.zeros((2, 13, 21, channels), np.uint8)
    launch = launch_2d(21, 13, 2)
    emulated("sm_composite", launch.grid, launch.block, frames, alphas,
             bg if with_image else np.zeros(1, np.uint8), int(with_image), 0, 177, 64, out, 21,
             13, COMPOSITE_MODES[mode], 13 * 21 * 3, 13 * 21, 13 * 21 * channels)
    expected = ref.composite(frames, alphas, mode=mode, colour=(0, 177, 64),  # type: ignore[arg-type]
                             background=bg if with_image else None)
    np.testing.assert_array_equal(out.reshape(expected.shape), expected)


def test_emulation_catches_a_wrong_argument_count(emulated: Emulated) -> None:
    with pytest.raises(TypeError, match="takes 5 arguments"):
        emulated("sm_ema", (1, 1, 1), (1, 1, 1), np.zeros(1, np.float32))


# --- the CUDA source through the real CUDA compiler (no GPU needed to compile) ---------------

_PTX_TYPES = {"P": ".u64", "i": ".u32", "q": ".u64", "f": ".f32"}


@pytest.fixture(scope="module")
def ptx(tmp_path_factory: pytest.TempPathFactory) -> str:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found: cannot compile the CUDA source")
    work = Path(tmp_path_factory.mktemp("nvcc"))
    (work / "kernels.cu").write_text(KERNEL_SOURCE, encoding="utf-8")
    # the same translation pycuda's SourceModule(no_extern_c=True) does, to PTX for sm_80
    subprocess.run([nvcc, "--ptx", "-arch=sm_80", "-o", str(work / "kernels.ptx"),
                    str(work / "kernels.cu")], check=True, capture_output=True, text=True)
    return (work / "kernels.ptx").read_text(encoding="utf-8")


def _entry(ptx: str, name: str) -> tuple[list[str], str]:
    start = ptx.index(f".entry {name}(")
    params_end = ptx.index(")", start)
    params = [line.split()[1] for line in ptx[start:params_end].splitlines()
              if line.strip().startswith(".param")]
    body_end = ptx.index("\n}", params_end)
    return params, ptx[params_end:body_end]


@pytest.mark.parametrize("name", sorted(KERNEL_SIGNATURES))
def test_nvcc_compiles_each_kernel_with_the_declared_parameters(ptx: str, name: str) -> None:
    params, _ = _entry(ptx, name)
    assert params == [_PTX_TYPES[c] for c in KERNEL_SIGNATURES[name]]


@pytest.mark.parametrize("name", ["sm_ema", "sm_composite"])
def test_nvcc_keeps_the_exact_blends_unfused(ptx: str, name: str) -> None:
    # an fma would round once where numpy rounds twice: the composite would drift from blend()
    _, body = _entry(ptx, name)
    assert "fma" not in body
    assert "mul.rn.f32" in body


# --- GpuMatter's orchestration on the CPU: fake pycuda over host memory, emulated kernels ----


class _MeanEngine:
    """Device engine double: alpha = mean of the three input planes (input is pixel/255)."""

    name = "mean"
    max_batch = 2
    input_dtype = "float32"
    output_dtype = "float32"

    def __init__(self) -> None:
        self.context = FakeContext()
        self.stream = FakeStream()

    def input_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, 3, 12, 16)

    def output_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, 1, 12, 16)

    def enqueue(self, input_ptr: int, output_ptr: int, batch: int) -> None:
        assert 1 <= batch <= self.max_batch, f"batch {batch} outside the profile"
        count = batch * 3 * 12 * 16
        x = np.empty(count, np.float32)
        ctypes.memmove(x.ctypes.data, int(input_ptr), x.nbytes)
        y = x.reshape(batch, 3, 12, 16).mean(axis=1, keepdims=True).astype(np.float32)
        ctypes.memmove(int(output_ptr), y.ctypes.data, y.nbytes)

    @staticmethod
    def cpu(sample: np.ndarray) -> np.ndarray:
        out: np.ndarray = sample.mean(axis=0, keepdims=True).astype(np.float32)
        return out


def test_gpu_matter_chain_matches_the_cpu_chain(emulated_gpu: None) -> None:
    import streammatte.cuda.runtime as runtime

    engine = _MeanEngine()
    frames = _frames(5, 64, 48, seed=21)
    # the engine double has a fake context, not a CudaContext: structurally enough here
    matter = runtime.GpuMatter(engine, frame_size=(64, 48), input_size=(16, 12),  # type: ignore[arg-type]
                               mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), mode="rgb",
                               colour=(0, 177, 64), ema_weight=0.5, batch=2)
    # double buffering: two batches in flight, the first comes back with the third submit
    assert matter.submit([frames[0], frames[1]]) == []
    assert matter.submit([frames[2]]) == []
    outputs = matter.submit([frames[3], frames[4]])
    assert len(outputs) == 2
    outputs += matter.flush()
    matter.close()
    spec = InputSpec(name="x", size=(16, 12))
    pre, post, ema = Preprocessor(spec), Postprocessor(OutputSpec()), FixedEma(0.5)
    compositor = Compositor(Background("colour", colour=(0, 177, 64)), "rgb")
    assert len(outputs) == 5
    for frame, got in zip(frames, outputs, strict=True):
        alpha = ema(post(_MeanEngine.cpu(pre(frame)), (64, 48)), frame)
        expected = compositor(frame, alpha)
        assert got.shape == expected.shape == (48, 64, 3)
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_host_staging_runs_a_host_batch_through_the_device_engine(emulated_gpu: None) -> None:
    # Engine.infer of the TensorRT and ONNX Runtime CUDA engines: pinned arrays, device
    # buffers, enqueue, and batches larger than the profile split
    import streammatte.cuda.runtime as runtime

    engine = _MeanEngine()
    staging = runtime.HostStaging(engine)  # type: ignore[arg-type]
    rng = np.random.default_rng(5)
    for n in (1, 2, 5):  # 5 > max_batch 2: split into 2 + 2 + 1
        batch = rng.random((n, 3, 12, 16), dtype=np.float32)
        got = np.array(staging.infer(batch))
        expected = np.stack([_MeanEngine.cpu(sample) for sample in batch])
        assert got.shape == (n, 1, 12, 16)
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    staging.close()


# --- matte_video through the all-GPU chain (fake driver, emulated kernels) -------------------

class _DeviceMeanEngine(Engine):
    """An Engine that also runs on device buffers: the host ``infer`` and the device
    ``enqueue`` compute the same thing (alpha = mean of the input planes), so the host chain
    and the GPU chain must agree."""

    name = "mean"
    device = "cuda:0 (emulated)"
    provider = "test double"
    max_batch = 2
    input_dtype = "float32"
    output_dtype = "float32"
    input_spec = InputSpec(name="x", size=(16, 12))
    output_spec = OutputSpec()

    def __init__(self) -> None:
        self._device = _MeanEngine()
        self.context = self._device.context
        self.stream = self._device.stream
        self.enqueued = 0

    def input_shape(self, batch: int) -> tuple[int, ...]:
        return self._device.input_shape(batch)

    def output_shape(self, batch: int) -> tuple[int, ...]:
        return self._device.output_shape(batch)

    def enqueue(self, input_ptr: int, output_ptr: int, batch: int) -> None:
        self.enqueued += batch
        self._device.enqueue(input_ptr, output_ptr, batch)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return np.stack([_MeanEngine.cpu(sample) for sample in batch])


class _HostOnly(Engine):
    """The same model without device buffers: what the host chain runs."""

    name, device, provider = "mean", "cpu", "test double"
    input_spec = _DeviceMeanEngine.input_spec
    output_spec = _DeviceMeanEngine.output_spec
    max_batch = 2

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return np.stack([_MeanEngine.cpu(sample) for sample in batch])


def _pngs(folder: Path) -> list[npt.NDArray[np.uint8]]:
    return [np.asarray(cv2.imread(str(p), cv2.IMREAD_UNCHANGED))
            for p in sorted(folder.glob("*.png"))]


@pytest.mark.parametrize("background", ["#00b140", "transparent"])
def test_matte_video_runs_a_device_engine_through_the_gpu_chain(
        emulated_gpu: None, tmp_path: Path, background: str) -> None:
    from media import make_video

    from streammatte.api import matte_video

    src = tmp_path / "clip.mp4"
    make_video(src, frames=7, size=(64, 48))
    device = _DeviceMeanEngine()
    on_gpu = matte_video(src, tmp_path / "gpu/", engine=device, temporal="ema",
                         background=background, batch_size=2)
    on_host = matte_video(src, tmp_path / "host/", engine=_HostOnly(), temporal="ema",
                          background=background, batch_size=2)
    assert device.enqueued == 7  # every frame went through the device engine
    assert any("all-GPU chain" in note for note in on_gpu.notes)
    assert not any("GPU" in note for note in on_host.notes)
    gpu, host = _pngs(tmp_path / "gpu"), _pngs(tmp_path / "host")
    assert on_gpu.frames_out == len(gpu) == len(host) == 7
    for got, expected in zip(gpu, host, strict=True):
        assert got.shape == expected.shape == (48, 64, 4)
        # the kernels quantize the resized frame like OpenCV's fixed-point resize: ≤ 1 level
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_a_run_the_gpu_chain_cannot_do_says_why_and_runs_on_the_host(
        emulated_gpu: None, tmp_path: Path) -> None:
    from media import make_video

    from streammatte.api import matte_video

    src = tmp_path / "clip.mp4"
    make_video(src, frames=5, size=(64, 48))
    device = _DeviceMeanEngine()
    report = matte_video(src, tmp_path / "out/", engine=device, temporal="none",
                         background="blur")
    assert device.enqueued == 0
    assert report.frames_out == 5
    assert any("host chain" in n and "blur background" in n for n in report.notes)
