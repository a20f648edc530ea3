"""The GPU path's pure logic, on the CPU: TensorRT cache keys and profiles, buffer plans, launch
geometry, back-end selection with fallback, and what happens here without TensorRT/pycuda."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streammatte.cli import main
from streammatte.cuda.kernels import launch_1d, launch_2d
from streammatte.cuda.plan import ALIGNMENT, GpuOutOfMemoryError, align, plan_buffers
from streammatte.cuda.select import (
    RuntimeProbe,
    select_backend,
    unavailable_reason,
)
from streammatte.errors import ConfigError, EngineUnavailableError, ModelError
from streammatte.inference import open_engine
from streammatte.inference.auto import open_auto
from streammatte.inference.trt import (
    EngineCacheKey,
    ShapeProfile,
    choose_profile,
    read_sidecar,
    sidecar_path,
)
from streammatte.models.catalog import InputSpec, get_spec

U2NET_IN = InputSpec(name="input.1", size=(320, 320), mean=(0.485, 0.456, 0.406),
                     std=(0.229, 0.224, 0.225))
FREE_SIZE = InputSpec(name="src", size=None)


# --- optimisation profiles -------------------------------------------------------------------

def test_fixed_graph_gives_a_fixed_profile() -> None:
    p = choose_profile("input.1", [1, 3, 320, 320], U2NET_IN, batch=4)
    # u2net's batch axis is fixed at 1: larger batches are split, not built for
    assert (p.min, p.opt, p.max) == ((1, 3, 320, 320),) * 3
    assert p.max_batch == 1


def test_free_batch_gets_min_one_and_opt_max_the_batch() -> None:
    p = choose_profile("input.1", [-1, 3, 320, 320], U2NET_IN, batch=4)
    assert p.min == (1, 3, 320, 320)
    assert p.opt == p.max == (4, 3, 320, 320)


def test_free_spatial_dims_take_the_catalog_size() -> None:
    p = choose_profile("input.1", ["batch", 3, "h", "w"], U2NET_IN, batch=2)
    assert p.opt == (2, 3, 320, 320) and p.min == (1, 3, 320, 320)


def test_resolution_free_model_gets_a_resolution_range() -> None:
    p = choose_profile("src", [None, 3, None, None], FREE_SIZE, batch=1,
                       frame_size=(1280, 720), min_frame_size=(640, 360),
                       max_frame_size=(1920, 1080))
    assert (p.min, p.opt, p.max) == ((1, 3, 360, 640), (1, 3, 720, 1280), (1, 3, 1080, 1920))


def test_nhwc_profile_puts_channels_last() -> None:
    spec = InputSpec(name="x", size=(256, 144), layout="nhwc", dtype="uint8")
    p = choose_profile("x", [-1, -1, -1, 3], spec, batch=2)
    assert p.opt == (2, 144, 256, 3)


def test_resolution_free_model_without_frame_size_says_what_to_pass() -> None:
    with pytest.raises(ConfigError, match="--frame-size"):
        choose_profile("src", [1, 3, -1, -1], FREE_SIZE)


def test_graph_size_that_contradicts_the_catalog_is_a_model_error() -> None:
    with pytest.raises(ModelError, match=r"fixed at 512×512 but the catalog says 320×320"):
        choose_profile("input.1", [1, 3, 512, 512], U2NET_IN)


@pytest.mark.parametrize(("shape", "match"), [([1, 3, 320], "4-D"), ([1, 1, 320, 320],
                                                                        "1 channels")])
def test_non_image_inputs_are_refused(shape: list[int], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        choose_profile("input.1", shape, U2NET_IN)


def test_profile_ordering_is_checked() -> None:
    with pytest.raises(ValueError, match="min <= opt <= max"):
        ShapeProfile("x", (2, 3, 8, 8), (1, 3, 8, 8), (4, 3, 8, 8))
    with pytest.raises(ConfigError, match="min <= frame <= max"):
        choose_profile("src", [1, 3, -1, -1], FREE_SIZE, frame_size=(640, 480),
                       max_frame_size=(320, 240))


def test_profile_label_names_every_shape() -> None:
    p = ShapeProfile("input.1", (1, 3, 320, 320), (4, 3, 320, 320), (8, 3, 320, 320))
    assert p.label() == "input.1:1x3x320x320/4x3x320x320/8x3x320x320"


# --- the engine cache key --------------------------------------------------------------------

BASE_KEY = EngineCacheKey(
    model_sha256="309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
    tensorrt_version="10.3.0", gpu_name="NVIDIA H100 80GB HBM3", compute_capability=(9, 0),
    precision="fp16",
    profiles=(ShapeProfile("input.1", (1, 3, 320, 320), (1, 3, 320, 320), (1, 3, 320, 320)),),
)

CHANGES: dict[str, Any] = {
    "model_sha256": "8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491",
    "tensorrt_version": "10.4.0",
    "gpu_name": "NVIDIA A100-SXM4-40GB",
    "compute_capability": (8, 0),
    "precision": "fp32",
    "profiles": (ShapeProfile("input.1", (1, 3, 320, 320), (4, 3, 320, 320),
                              (4, 3, 320, 320)),),
}


@pytest.mark.parametrize("component", sorted(CHANGES))
def test_every_component_changes_the_engine_key(component: str) -> None:
    other = dataclasses.replace(BASE_KEY, **{component: CHANGES[component]})
    assert other.digest() != BASE_KEY.digest()
    assert other.engine_path(Path("/c"), "u2netp") != BASE_KEY.engine_path(Path("/c"), "u2netp")


def test_key_is_stable_across_processes() -> None:
    code = ("from tests.test_trt_plan import BASE_KEY; print(BASE_KEY.digest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    assert out == BASE_KEY.digest()


@pytest.mark.parametrize(("component", "changes"), [
    ("tensorrt_version", True), ("gpu_name", True), ("compute_capability", True),
    ("model_sha256", False), ("precision", False), ("profiles", False)])
def test_timing_cache_is_shared_across_models_but_not_across_gpus(component: str,
                                                                  changes: bool) -> None:
    other = dataclasses.replace(BASE_KEY, **{component: CHANGES[component]})
    assert (other.timing_cache_digest() != BASE_KEY.timing_cache_digest()) is changes


def test_engine_file_name_says_model_and_precision() -> None:
    path = BASE_KEY.engine_path(Path("/cache"), "u2netp")
    assert path.parent == Path("/cache")
    assert path.name == f"u2netp-fp16-{BASE_KEY.digest()}.engine"


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ConfigError, match="fp16, fp32"):
        dataclasses.replace(BASE_KEY, precision="int8")  # type: ignore[arg-type]


def test_sidecar_roundtrip_and_damaged_sidecar(tmp_path: Path) -> None:
    engine = BASE_KEY.engine_path(tmp_path, "u2netp")
    assert read_sidecar(engine) is None
    import json

    sidecar_path(engine).write_text(json.dumps(BASE_KEY.components()), encoding="utf-8")
    assert read_sidecar(engine) == BASE_KEY.components()
    sidecar_path(engine).write_text("{not json", encoding="utf-8")
    assert read_sidecar(engine) is None


# --- buffer planning -------------------------------------------------------------------------

def _plan(**overrides: object) -> object:
    options: dict[str, object] = dict(
        frame_size=(1920, 1080), batch=2, input_shape=(3, 320, 320), input_dtype="float32",
        output_shape=(1, 320, 320), output_dtype="float32", mode="rgb")
    options.update(overrides)
    return plan_buffers(**options)  # type: ignore[arg-type]


def test_plan_sizes_for_1080p_u2netp_batch_2() -> None:
    plan = plan_buffers(frame_size=(1920, 1080), batch=2, input_shape=(3, 320, 320),
                        input_dtype="float32", output_shape=(1, 320, 320),
                        output_dtype="float32", mode="rgb", temporal=True)
    frame = 2 * 1080 * 1920 * 3
    assert plan.get("frames_host", 0).nbytes == frame
    assert plan.get("frames", 1).shape == (2, 1080, 1920, 3)
    assert plan.get("model_input", 0).nbytes == 2 * 3 * 320 * 320 * 4
    assert plan.get("alpha", 0).nbytes == 2 * 1080 * 1920 * 4
    assert plan.get("ema_state").shape == (1080, 1920)
    # two slots of: frames in + out pinned, everything else on the device
    assert plan.pinned_bytes == 2 * (frame + frame)
    expected_device = 2 * sum(align(n) for n in (frame, 2 * 3 * 320 * 320 * 4,
                                                 2 * 320 * 320 * 4, 2 * 1080 * 1920 * 4, frame))
    assert plan.device_bytes == expected_device + align(1080 * 1920 * 4)


def test_plan_offsets_are_aligned_and_do_not_overlap() -> None:
    # odd sizes everywhere so that unaligned packing would show
    plan = plan_buffers(frame_size=(641, 359), batch=3, input_shape=(3, 37, 41),
                        input_dtype="float16", output_shape=(37, 41), output_dtype="float16",
                        mode="rgba", background_image=True, temporal=True)
    spans = sorted((plan.offsets[b.key], plan.offsets[b.key] + b.nbytes) for b in plan
                   if b.where == "device")
    assert all(start % ALIGNMENT == 0 for start, _ in spans)
    assert all(end <= nxt for (_, end), (nxt, _) in itertools.pairwise(spans))
    assert spans[-1][1] <= plan.device_bytes
    assert "background" in plan.offsets


@pytest.mark.parametrize(("mode", "shape"), [("rgb", (1, 9, 16, 3)), ("rgba", (1, 9, 16, 4)),
                                             ("cutout", (1, 9, 16, 4)), ("matte", (1, 9, 16))])
def test_plan_output_shape_follows_the_mode(mode: str, shape: tuple[int, ...]) -> None:
    plan = plan_buffers(frame_size=(16, 9), batch=1, input_shape=(3, 8, 8),
                        input_dtype="float32", output_shape=(1, 8, 8), output_dtype="float32",
                        mode=mode)
    assert plan.get("output_host", 1).shape == shape


def test_single_slot_plan_has_one_of_each() -> None:
    plan = plan_buffers(frame_size=(16, 9), batch=1, input_shape=(3, 8, 8),
                        input_dtype="float32", output_shape=(1, 8, 8), output_dtype="float32",
                        mode="rgb", slots=1)
    with pytest.raises(KeyError, match=r"frames\[1\]"):
        plan.get("frames", 1)


@pytest.mark.parametrize(("overrides", "match"), [
    ({"frame_size": (0, 1080)}, "frame size"), ({"batch": 0}, "batch"),
    ({"mode": "rgbx"}, "unknown output mode"), ({"input_shape": (3, -1, 320)}, "free dimension"),
    ({"slots": 0}, "slots")])
def test_plan_refuses_bad_input(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _plan(**overrides)


def test_plan_that_does_not_fit_raises_out_of_memory_with_numbers() -> None:
    plan = plan_buffers(frame_size=(3840, 2160), batch=8, input_shape=(3, 1024, 1024),
                        input_dtype="float32", output_shape=(1, 1024, 1024),
                        output_dtype="float32", mode="rgba")
    plan.check_fits(plan.device_bytes + 100 * 2**20, engine_bytes=100 * 2**20)
    with pytest.raises(GpuOutOfMemoryError, match=r"RTX 3050: needs .* MiB .* free: close"):
        plan.check_fits(plan.device_bytes - 1, device_name="RTX 3050")
    assert issubclass(GpuOutOfMemoryError, MemoryError)


def test_launch_geometry_covers_every_pixel() -> None:
    launch = launch_2d(1921, 1080, 3)
    assert launch.grid == (121, 68, 3)
    assert launch.grid[0] * launch.block[0] >= 1921 > (launch.grid[0] - 1) * launch.block[0]
    assert launch_1d(257).grid == (2, 1, 1)
    with pytest.raises(ValueError, match="positive"):
        launch_2d(0, 10)


# --- back-end selection ----------------------------------------------------------------------

NOTHING = RuntimeProbe()
FULL = RuntimeProbe(gpus=("NVIDIA H100",), pycuda="2024.1", tensorrt="10.3.0",
                    ort_providers=("CUDAExecutionProvider", "CPUExecutionProvider"))


def test_full_gpu_machine_selects_tensorrt() -> None:
    sel = select_backend("auto", FULL)
    assert (sel.backend, sel.device, sel.skipped) == ("trt", "cuda:0", ())


def test_without_tensorrt_the_ort_cuda_path_is_next_and_says_why() -> None:
    sel = select_backend("cuda:0", dataclasses.replace(FULL, tensorrt=None))
    assert (sel.backend, sel.device) == ("onnxruntime-cuda", "cuda:0")
    assert sel.note() == "trt: tensorrt not installed (pip install 'streammatte[trt]')"


def test_cpu_machine_falls_back_to_cpu_with_every_reason() -> None:
    sel = select_backend("auto", NOTHING)
    assert (sel.backend, sel.device) == ("onnxruntime", "cpu")
    assert "trt: tensorrt not installed" in sel.note()
    assert "onnxruntime-cuda: onnxruntime has no CUDA provider" in sel.note()


def test_ort_gpu_without_pycuda_uses_ort_cuda_with_host_copies() -> None:
    probe = RuntimeProbe(ort_providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    sel = select_backend("auto", probe)
    assert (sel.backend, sel.device) == ("onnxruntime", "auto")
    assert "pycuda not installed" in sel.note()


def test_asking_for_cuda_on_a_cpu_machine_never_falls_back_silently() -> None:
    with pytest.raises(EngineUnavailableError, match=r"'cuda' asked for.*tensorrt not inst"):
        select_backend("cuda", NOTHING)


def test_device_cpu_goes_straight_to_cpu_even_with_a_gpu() -> None:
    assert select_backend("cpu", FULL) == select_backend("cpu", NOTHING)
    assert select_backend("cpu", FULL).backend == "onnxruntime"


def test_missing_gpu_index_and_driver_errors_are_reported() -> None:
    assert unavailable_reason("trt", FULL, 1) == "no GPU #1 (found 1)"
    broken = dataclasses.replace(FULL, gpus=(), gpu_error="CUDA driver: cuInit failed: no CUDA"
                                 "-capable device is detected")
    assert "no CUDA-capable device" in (unavailable_reason("onnxruntime-cuda", broken) or "")
    with pytest.raises(ConfigError, match="unknown device"):
        select_backend("tpu", FULL)


def test_open_engine_trt_without_tensorrt_names_the_extra(u2netp_path: Path) -> None:
    with pytest.raises(EngineUnavailableError, match=r"pip install 'streammatte\[trt\]'"):
        open_engine("u2netp", model_file=u2netp_path, backend="trt")


def test_open_engine_ort_cuda_without_the_provider_names_the_fix(u2netp_path: Path) -> None:
    with pytest.raises(EngineUnavailableError, match="onnxruntime-gpu"):
        open_engine("u2netp", model_file=u2netp_path, backend="onnxruntime-cuda")


def test_auto_backend_runs_u2netp_on_the_cpu_and_says_why(u2netp_path: Path) -> None:
    with open_engine("u2netp", model_file=u2netp_path, backend="auto") as engine:
        assert engine.device == "cpu"
        text = engine.describe()
        out = engine.infer(np.zeros((1, 3, 320, 320), np.float32))
    assert text.startswith("u2netp on cpu (onnxruntime CPUExecutionProvider; not used: trt:")
    assert out.shape == (1, 1, 320, 320)


def test_auto_backend_skips_a_gpu_backend_that_fails_to_open(u2netp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    # the probe claims a GPU; opening TensorRT then fails (tensorrt is not really here)
    engine = open_auto(get_spec("u2netp"), u2netp_path, probe=dataclasses.replace(
        FULL, ort_providers=("CPUExecutionProvider",)))
    try:
        assert engine.device == "cpu"
        assert "trt: the TensorRT backend needs the tensorrt package" in engine.provider
    finally:
        engine.close()


def test_importing_streammatte_imports_no_gpu_package() -> None:
    code = ("import sys, streammatte, streammatte.cuda, streammatte.cuda.plan, "
            "streammatte.cuda.select, streammatte.inference.trt, streammatte.cli; "
            "streammatte.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorrt', 'pycuda')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_engines_build_without_tensorrt_exits_2_with_the_fix(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status = main(["engines", "--models-dir", str(tmp_path), "build", "u2netp"])
    err = capsys.readouterr().err
    assert status == 2
    assert "pip install 'streammatte[trt]'" in err
    assert not any(tmp_path.iterdir())  # failed before pulling the model


def test_engines_build_rejects_a_bad_frame_size(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["engines", "build", "u2netp", "--frame-size", "1920by1080"])
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_engines_list_reads_the_cache(capsys: pytest.CaptureFixture[str], tmp_path: Path
                                      ) -> None:
    import json

    engine = BASE_KEY.engine_path(tmp_path, "u2netp")
    engine.write_bytes(b"x" * 1000)
    sidecar_path(engine).write_text(json.dumps(BASE_KEY.components()), encoding="utf-8")
    (tmp_path / "stray.engine").write_bytes(b"")
    assert main(["engines", "--cache-dir", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    assert f"{engine.name}: fp16 input.1:1x3x320x320/1x3x320x320/1x3x320x320; TensorRT " \
           "10.3.0, NVIDIA H100 80GB HBM3 sm_90" in out
    assert "stray.engine: no readable metadata" in out
