"""The GPU chain's self-check and its fallback, on the CPU: a fake pycuda driver over host
memory, the real kernel source run through the emulation shim (tests/cuda_emulation.py), and a
device engine that runs a real catalog model (MediaPipe's selfie model, the fastest; ONNX
Runtime's CPU provider) behind the DeviceEngine protocol, against the same file on the CPU.

Three faults: kernels that fail to compile, an engine that returns wrong values, one that
raises on frame 3; each for ``--backend auto`` (falls back, every frame written once, in
order, the alphas of a host run) and for an explicit back-end (fails with the reason).
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pytest
from cuda_emulation import FakeContext, FakeStream
from media import imread, make_video

import streammatte.chain.check as check_module
import streammatte.inference as inference
import streammatte.inference.auto as auto
from streammatte.api import RunReport, matte_frames, matte_image, matte_video
from streammatte.chain import Chain
from streammatte.cli import main
from streammatte.commands.doctor import check_gpu_self_check
from streammatte.config import MatteConfig
from streammatte.cuda.select import RuntimeProbe
from streammatte.cuda.selfcheck import (
    FAR_LEVELS,
    MEAN_TOLERANCE,
    CheckRecord,
    CheckRecords,
    GpuIdentity,
    compare_alphas,
)
from streammatte.errors import GpuCheckError
from streammatte.inference.base import Engine
from streammatte.inference.ort import OrtEngine
from streammatte.models.catalog import ModelSpec, get_spec
from streammatte.sinks.file import FileSink

FRAMES = 8
SIZE = (96, 72)
GPU = GpuIdentity("NVIDIA H100 80GB HBM3", "550.54.15")
_real_backend_class = inference.backend_class


class DeviceModel(Engine):
    """A catalog model as a device-buffer engine: ``enqueue`` reads the model input from "device"
    memory (host memory under the fake driver), runs the real ONNX file on the CPU and writes
    the output back; ``infer`` is the host API. ``fault``: None, ``"wrong"`` (an inverted
    matte) or ``"raise3"`` (raises on the fourth frame it sees)."""

    input_dtype = output_dtype = "float32"
    fault: str | None = None
    opened: ClassVar[list[DeviceModel]] = []

    def __init__(self, spec: ModelSpec, model_path: Path, *, device: str = "auto") -> None:
        self._ort = OrtEngine(spec, model_path, device="cpu")
        self.name, self.device, self.provider = spec.name, "cuda:0", "emulated TensorRT"
        self.input_spec, self.output_spec = spec.input, spec.output
        self.context, self.stream, self.max_batch = FakeContext(), FakeStream(), 1
        self.frames = 0
        assert spec.input.size is not None
        self._size = spec.input.size
        DeviceModel.opened.append(self)

    def input_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, 3, self._size[1], self._size[0])

    def output_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, 1, self._size[1], self._size[0])

    def enqueue(self, input_ptr: int, output_ptr: int, batch: int) -> None:
        x = np.empty(self.input_shape(batch), np.float32)
        ctypes.memmove(x.ctypes.data, int(input_ptr), x.nbytes)
        y = np.ascontiguousarray(self.infer(x), np.float32)
        ctypes.memmove(int(output_ptr), y.ctypes.data, y.nbytes)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.fault == "raise3" and self.frames <= 3 < self.frames + len(batch):
            raise RuntimeError("an illegal memory access was encountered")
        self.frames += len(batch)
        out = np.asarray(self._ort.infer(batch), np.float32)
        return 1.0 - out if self.fault == "wrong" else out


class CompileError(Exception):
    """What pycuda raises when nvcc fails."""


@pytest.fixture
def gpu_backend(emulated_gpu: None, monkeypatch: pytest.MonkeyPatch) -> type[DeviceModel]:
    """``trt`` opens DeviceModel; ``auto`` sees a GPU with TensorRT; no GPU identity (so no
    record is written) unless a test sets one."""

    def backend_class(backend: str) -> Any:
        return DeviceModel if backend == "trt" else _real_backend_class(backend)

    monkeypatch.setattr(inference, "backend_class", backend_class)
    monkeypatch.setattr(auto, "backend_class", backend_class)
    monkeypatch.setattr(auto, "probe_runtime", lambda: RuntimeProbe(
        gpus=("emulated GPU",), pycuda="emulated", tensorrt="emulated"))
    monkeypatch.setattr(check_module, "_IDENTITIES", {})
    monkeypatch.setattr(check_module, "gpu_identity", lambda index: None)
    monkeypatch.setattr(DeviceModel, "fault", None)
    monkeypatch.setattr(DeviceModel, "opened", [])
    return DeviceModel


def _fault(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if name == "compile":
        import streammatte.cuda.runtime as runtime

        def fail(context: object) -> Any:
            raise CompileError("nvcc preprocessing of kernel.cu failed")

        monkeypatch.setattr(runtime, "compile_kernels", fail)
    else:
        monkeypatch.setattr(DeviceModel, "fault", name)


#: what the report or the error says for each fault
REASONS = {"compile": r"CompileError: nvcc preprocessing of kernel\.cu failed at frame 0",
           "wrong": r"frame 0 against the CPU chain .*mean \|Δα\| [\d.]+/255 > 4/255",
           "raise3": r"RuntimeError: an illegal memory access was encountered at frame 3"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    make_video(path, frames=FRAMES, size=SIZE)
    return path


MODEL = "mediapipe-selfie"


@pytest.fixture(scope="module")
def model_path(pull_model: Any) -> Path:
    path: Path = pull_model(MODEL)
    return path


def _options(model_path: Path, **more: Any) -> dict[str, Any]:
    return {"engine": MODEL, "model_file": model_path, "temporal": "ema",
            "background": "transparent", **more}


@pytest.fixture(scope="module")
def host_run(clip: Path, model_path: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> list[npt.NDArray[np.uint8]]:
    """The cut-outs of a plain CPU run: what a fallback must write."""
    out = tmp_path_factory.mktemp("host") / "out"
    matte_video(clip, out, **_options(model_path, backend="onnxruntime", device="cpu"))
    return _pngs(out)


def _pngs(folder: Path) -> list[npt.NDArray[np.uint8]]:
    return [imread(p) for p in sorted(folder.glob("frame_*.png"))]


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The index of every frame the file sink is handed, in the order it is handed them."""
    indexes: list[int] = []
    write = FileSink.write

    def spy(self: FileSink, packet: Any) -> None:
        indexes.append(packet.index)
        write(self, packet)

    monkeypatch.setattr(FileSink, "write", spy)
    return indexes


# --- the comparison --------------------------------------------------------------------------

def test_an_fp16_sized_difference_passes() -> None:
    rng = np.random.default_rng(0)
    cpu = rng.random((72, 96), dtype=np.float32)
    gpu = cpu + rng.normal(0, 2 / 255, cpu.shape).astype(np.float32)
    gpu[0, :40] += 60 / 255  # a few edge pixels far off, as FP16 moves them
    comparison = compare_alphas(gpu, cpu)
    assert comparison.ok
    assert comparison.max_levels > FAR_LEVELS
    assert "≤ 4/255" in comparison.describe()


@pytest.mark.parametrize(("change", "what"), [
    (lambda a: 1.0 - a, "mean"), (lambda a: np.zeros_like(a), "mean"),
    (lambda a: np.where(np.arange(a.size).reshape(a.shape) % 50 == 0, 1.0 - a, a), "far")])
def test_a_wrong_alpha_fails(change: Any, what: str) -> None:
    cpu = np.clip(np.random.default_rng(1).normal(0.5, 0.4, (72, 96)), 0, 1).astype(np.float32)
    comparison = compare_alphas(change(cpu).astype(np.float32), cpu)
    assert not comparison.ok
    if what == "mean":
        assert comparison.mean_levels > MEAN_TOLERANCE
    else:  # 2 % of the pixels inverted: the mean alone would let it through
        assert comparison.mean_levels <= MEAN_TOLERANCE and comparison.far_share > 0.01


def test_nan_from_the_gpu_fails_the_check() -> None:
    cpu = np.full((8, 8), 0.5, np.float32)
    gpu = cpu.copy()
    gpu[:2] = np.nan
    assert not compare_alphas(gpu, cpu).ok


def test_alphas_of_different_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"GPU chain's alpha is \(8, 8\), the CPU chain's"):
        compare_alphas(np.zeros((8, 8), np.float32), np.zeros((8, 9), np.float32))


# --- auto: passes, or falls back without losing a frame --------------------------------------

def test_auto_checks_the_gpu_chain_and_says_what_was_compared(
        gpu_backend: type[DeviceModel], clip: Path, model_path: Path, tmp_path: Path,
        host_run: list[npt.NDArray[np.uint8]]) -> None:
    report = matte_video(clip, tmp_path / "out", **_options(model_path, backend="auto"))
    notes = "\n".join(report.notes)
    assert "all-GPU chain" in notes
    assert (f"GPU chain self-check passed: frame 0 against the CPU chain ({MODEL} on cpu "
            "(onnxruntime CPUExecutionProvider)): mean |Δα| ") in notes
    assert "≤ 4/255" in notes and "of the host compositor's" in notes
    assert "frames 0-3 ran without error" in notes
    assert report.frames_out == FRAMES
    (engine,) = gpu_backend.opened
    assert engine.frames == FRAMES  # every frame ran on the "GPU"
    assert report.engine.startswith(f"{MODEL} on cuda:0 (emulated TensorRT")
    # the GPU's mattes are the CPU's within the check's own tolerance on every frame
    for got, expected in zip(_pngs(tmp_path / "out"), host_run, strict=True):
        assert compare_alphas(got[..., 3] / np.float32(255), expected[..., 3] / np.float32(255)).ok


@pytest.mark.parametrize("fault", sorted(REASONS))
def test_auto_falls_back_to_the_cpu_chain_and_loses_no_frame(
        gpu_backend: type[DeviceModel], fault: str, monkeypatch: pytest.MonkeyPatch,
        clip: Path, model_path: Path, tmp_path: Path, written: list[int],
        host_run: list[npt.NDArray[np.uint8]]) -> None:
    _fault(fault, monkeypatch)
    report = matte_video(clip, tmp_path / "out", **_options(model_path, backend="auto"))
    (note,) = [n for n in report.notes if "self-check" in n]
    assert note.startswith("GPU chain self-check failed (")
    assert f"the chain restarted on the CPU ({MODEL} on cpu" in note
    assert re.search(REASONS[fault], note)
    assert not any("all-GPU chain" in n for n in report.notes)
    assert report.engine.startswith(f"{MODEL} on cpu")
    assert written == list(range(FRAMES))  # every frame once, in order
    got = _pngs(tmp_path / "out")
    assert len(got) == FRAMES
    for a, b in zip(got, host_run, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fault", sorted(REASONS))
def test_an_explicit_gpu_backend_fails_with_the_reason(
        gpu_backend: type[DeviceModel], fault: str, monkeypatch: pytest.MonkeyPatch,
        clip: Path, model_path: Path, tmp_path: Path, written: list[int],
        capsys: pytest.CaptureFixture[str]) -> None:
    _fault(fault, monkeypatch)
    out = tmp_path / "out.webm"
    status = main(["video", str(clip), "-o", str(out), "--engine", MODEL, "--backend", "trt",
                   "--model-file",
                   str(model_path), "--temporal", "ema", "--quiet"])
    err = capsys.readouterr().err
    assert status == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("streammatte: error: GPU chain self-check failed on backend 'trt': ")
    assert re.search(REASONS[fault], line)
    assert written == []  # nothing of the rejected window reached the sink
    assert not out.exists()


def test_the_frames_api_falls_back_too(gpu_backend: type[DeviceModel],
                                       monkeypatch: pytest.MonkeyPatch, clip: Path,
                                       model_path: Path) -> None:
    from streammatte.sources.file import FileSource

    _fault("raise3", monkeypatch)
    with FileSource(clip) as source:
        frames = [p.image for p in source]
    options = _options(model_path, background="auto")
    got = list(matte_frames(frames, backend="auto", **options))
    expected = list(matte_frames(frames, backend="onnxruntime", device="cpu", **options))
    assert [r.index for r in got] == list(range(FRAMES))
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.alpha, b.alpha)


def test_a_still_falls_back_too(gpu_backend: type[DeviceModel],
                                monkeypatch: pytest.MonkeyPatch, model_path: Path) -> None:
    from media import square_frame

    _fault("wrong", monkeypatch)
    image, _ = square_frame(3, 120, 90)
    options = _options(model_path)
    got = matte_image(image, backend="auto", **options)
    expected = matte_image(image, backend="onnxruntime", device="cpu", **options)
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(GpuCheckError, match=r"on backend 'trt': frame 0 against the CPU chain"):
        matte_image(image, backend="trt", **options)


# --- the host chain around a GPU engine (the default smoothing runs on the CPU) --------------

@pytest.mark.parametrize(("fault", "temporal"), [("wrong", "adaptive"), ("raise3", "adaptive"),
                                                 ("wrong", "keyframes")])
def test_the_host_chain_around_a_gpu_engine_is_checked_and_falls_back(
        gpu_backend: type[DeviceModel], fault: str, temporal: str,
        monkeypatch: pytest.MonkeyPatch, clip: Path, model_path: Path, tmp_path: Path,
        written: list[int]) -> None:
    # here the engine's results come back at once (no double buffering), so frame 3 raising
    # after a window that ended at frame 2 would stop the run; with keyframes the motion
    # stage stays in front of the guard and the fallback's stages share its decisions
    _fault(fault, monkeypatch)
    options = _options(model_path, temporal=temporal)
    report = matte_video(clip, tmp_path / "gpu", backend="auto", **options)
    host = matte_video(clip, tmp_path / "host", backend="onnxruntime", device="cpu", **options)
    (note,) = [n for n in report.notes if "self-check" in n]
    assert note.startswith("GPU chain self-check failed (")
    assert re.search(REASONS[fault], note)
    assert not any("host chain around the GPU engine" in n for n in report.notes)
    assert written[:FRAMES] == list(range(FRAMES))
    for a, b in zip(_pngs(tmp_path / "gpu"), _pngs(tmp_path / "host"), strict=True):
        np.testing.assert_array_equal(a, b)
    assert host.frames_out == report.frames_out == FRAMES
    assert report.engine_frames == host.engine_frames


def test_the_report_says_what_the_host_stages_cost_beside_the_gpu_engine(
        gpu_backend: type[DeviceModel], clip: Path, model_path: Path, tmp_path: Path) -> None:
    default = MatteConfig().temporal  # whatever the default mode is, it is read, not assumed
    report = matte_video(clip, tmp_path / "out", **{**_options(model_path, backend="auto"),
                                                     "temporal": default})
    ms = {s.name: s.ms_per_frame for s in report.stats.stages}
    blocker, cost = [n for n in report.notes if "host" in n and "GPU engine" in n]
    assert blocker.startswith(f"host chain around the GPU engine: temporal mode {default!r}")
    motion = (f", {ms['motion']:.1f} ms/frame (motion: the flow that picks the keyframes)"
              if "motion" in ms else "")
    assert cost == (
        f"the host stages around the GPU engine took {ms['compose']:.1f} ms/frame (compose: "
        f"alpha to frame size, {default!r} smoothing, composite){motion} and "
        f"{ms['preprocess']:.1f} ms/frame (preprocess) on the CPU, against the engine's "
        f"{ms['infer']:.1f} ms/frame: the slowest holds the run to "
        f"{1000 / max(ms['preprocess'], ms.get('motion', 0), ms['infer'], ms['compose']):.3g}"
        " fps at most")
    assert any(n.startswith("GPU chain self-check passed") for n in report.notes)


# --- opening ---------------------------------------------------------------------------------

def test_a_gpu_backend_that_raises_while_opening(gpu_backend: type[DeviceModel],
                                                 monkeypatch: pytest.MonkeyPatch, clip: Path,
                                                 model_path: Path, tmp_path: Path) -> None:
    def broken(*args: Any, **kwargs: Any) -> Engine:
        raise RuntimeError("cuCtxCreate failed: CUDA_ERROR_NO_DEVICE")

    def backend_class(backend: str) -> Any:
        return broken if backend == "trt" else _real_backend_class(backend)

    monkeypatch.setattr(inference, "backend_class", backend_class)
    monkeypatch.setattr(auto, "backend_class", backend_class)
    report = matte_video(clip, tmp_path / "out", **_options(model_path, backend="auto"))
    assert report.frames_out == FRAMES
    assert (f"GPU chain self-check failed while opening (trt failed to open {MODEL}: "
            "RuntimeError: cuCtxCreate failed: CUDA_ERROR_NO_DEVICE): the run uses "
            f"{MODEL} on cpu") in report.notes
    with pytest.raises(GpuCheckError, match=rf"^backend 'trt' failed to open {MODEL}: "
                       r"RuntimeError: cuCtxCreate failed"):
        matte_video(clip, tmp_path / "out2", **_options(model_path, backend="trt"))


# --- remembered per GPU and driver -----------------------------------------------------------

@pytest.fixture
def on_gpu(gpu_backend: type[DeviceModel], monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[list[GpuIdentity]]:
    """The machine's GPU identity, as nvidia-smi would give it; change the list's item to
    change driver."""
    current = [GPU]
    monkeypatch.setattr(check_module, "gpu_identity", lambda index: current[0])
    yield current


def _run(clip: Path, out: Path, model_path: Path, models_dir: Path) -> RunReport:
    return matte_video(clip, out, **_options(model_path, backend="auto",
                                             models_dir=models_dir))


def test_a_pass_is_remembered_and_not_compared_again(on_gpu: list[GpuIdentity], clip: Path,
                                                     model_path: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    first = _run(clip, tmp_path / "a", model_path, tmp_path)
    (record,) = CheckRecords(tmp_path / "gpu-selfcheck.json").for_gpu(GPU)
    assert record.passed and record.subject.startswith(
        f"{MODEL}, emulated TensorRT, all-GPU chain, streammatte ")
    assert record.detail in "\n".join(first.notes)
    # a wrong engine now would be caught only by a new comparison: none is made
    monkeypatch.setattr(DeviceModel, "fault", "wrong")
    second = _run(clip, tmp_path / "b", model_path, tmp_path)
    assert ("GPU chain self-check: passed before on this GPU and driver, not compared again; "
            "frames 0-3 ran without error") in second.notes


def test_a_new_driver_is_checked_again(on_gpu: list[GpuIdentity], clip: Path,
                                       model_path: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _run(clip, tmp_path / "a", model_path, tmp_path)
    on_gpu[0] = dataclasses.replace(GPU, driver="555.42.02")
    monkeypatch.setattr(check_module, "_IDENTITIES", {})
    monkeypatch.setattr(DeviceModel, "fault", "wrong")
    report = _run(clip, tmp_path / "b", model_path, tmp_path)
    assert any(n.startswith("GPU chain self-check failed (frame 0") for n in report.notes)
    records = CheckRecords(tmp_path / "gpu-selfcheck.json")
    (failed,) = records.for_gpu(on_gpu[0])
    assert not failed.passed and failed.detail.startswith("frame 0 against the CPU chain")
    assert records.for_gpu(GPU)[0].passed  # the old driver's pass is kept


def test_a_failure_is_remembered_with_its_reason_and_checked_again(
        on_gpu: list[GpuIdentity], clip: Path, model_path: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DeviceModel, "fault", "raise3")
    _run(clip, tmp_path / "a", model_path, tmp_path)
    records = CheckRecords(tmp_path / "gpu-selfcheck.json")
    (failed,) = records.for_gpu(GPU)
    assert failed.detail == "RuntimeError: an illegal memory access was encountered at frame 3"
    monkeypatch.setattr(DeviceModel, "fault", None)
    report = _run(clip, tmp_path / "b", model_path, tmp_path)
    assert any(n.startswith("GPU chain self-check passed: frame 0") for n in report.notes)
    (passed,) = records.for_gpu(GPU)
    assert passed.passed


def test_an_unreadable_record_counts_as_none(tmp_path: Path) -> None:
    path = tmp_path / "gpu-selfcheck.json"
    path.write_text("{not json", encoding="utf-8")
    records = CheckRecords(path)
    assert records.for_gpu(GPU) == []
    records.store(GPU, CheckRecord.now("u2netp", True, "fine"))
    assert json.loads(path.read_text(encoding="utf-8"))[GPU.key]["driver"] == GPU.driver


def test_a_chain_on_the_cpu_is_not_checked(model_path: Path) -> None:
    with Chain(MatteConfig(engine=MODEL, backend="auto", model_file=model_path)) as chain:
        chain.stages()
        assert chain.engine.device == "cpu"
        assert not any("self-check" in n for n in chain.notes)


# --- doctor ----------------------------------------------------------------------------------

SMI = "NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB, 9.0\n"


def _smi(cmd: Any) -> str | None:
    return SMI if cmd[0] == "nvidia-smi" else None


def test_doctor_says_when_the_gpu_chain_was_checked(tmp_path: Path) -> None:
    records = CheckRecords(tmp_path / "gpu-selfcheck.json")
    records.store(GPU, CheckRecord("u2netp, TensorRT 10.3.0 fp16, all-GPU chain", True,
                                   "frame 0 against the CPU chain: mean |Δα| 0.31/255 ≤ 4/255",
                                   "2025-06-01T12:00:00+00:00"))
    records.store(GPU, CheckRecord("u2net, TensorRT 10.3.0 fp16, all-GPU chain", False,
                                   "RuntimeError: boom at frame 3", "2025-06-02T08:30:00+00:00"))
    passed, failed = sorted(check_gpu_self_check(_smi, records), key=lambda c: not c.ok)
    assert passed.ok and passed.detail == (
        "passed 2025-06-01 12:00:00 UTC: u2netp, TensorRT 10.3.0 fp16, all-GPU chain: frame 0 "
        "against the CPU chain: mean |Δα| 0.31/255 ≤ 4/255")
    assert not failed.ok and failed.detail.startswith("FAILED 2025-06-02 08:30:00 UTC: u2net")
    assert failed.detail.endswith("RuntimeError: boom at frame 3")


def test_doctor_says_a_new_driver_has_not_been_checked(tmp_path: Path) -> None:
    records = CheckRecords(tmp_path / "gpu-selfcheck.json")
    records.store(dataclasses.replace(GPU, driver="535.104.05"),
                  CheckRecord.now("u2netp, TensorRT, all-GPU chain", True, "fine"))
    (check,) = check_gpu_self_check(_smi, records)
    assert not check.ok
    assert check.detail == ("not yet on NVIDIA H100 80GB HBM3 with driver 550.54.15 (checked "
                            "under driver 535.104.05)")
    assert check.fix is not None and "--backend auto" in check.fix


def test_doctor_without_a_gpu_has_no_self_check_line(tmp_path: Path) -> None:
    assert check_gpu_self_check(lambda cmd: None, CheckRecords(tmp_path / "x.json")) == []


# --- benchmarks/gpu_check.py, run where it can be: on the emulation --------------------------

@pytest.fixture
def gpu_check(monkeypatch: pytest.MonkeyPatch) -> Any:
    """benchmarks/gpu_check.py as a module."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # its dataclass looks itself up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_check_kernel_rows_run_on_the_emulation(emulated_gpu: None, gpu_check: Any
                                                    ) -> None:
    # the script has never met a GPU: this runs its kernel checks (pycuda calls, launch
    # arguments, the twins it compares with) on the fake driver and the emulated kernels
    from cuda_emulation import fake_driver

    rows = gpu_check.check_kernels(fake_driver(), FakeContext())
    assert len(rows) == 4 + 2 + 1 + 4
    assert [r.verdict for r in rows] == ["ok"] * len(rows), rows


@pytest.mark.slow
def test_gpu_check_engine_rows_run_on_the_emulation(gpu_backend: type[DeviceModel],
                                                    gpu_check: Any, model_path: Path,
                                                    tmp_path: Path) -> None:
    video = tmp_path / "1080p.mp4"
    gpu_check._make_video(video, 5)
    engine = gpu_backend(get_spec(MODEL), model_path)
    assert "double buffering" in gpu_check.check_overlap(engine, frames=3)[0].check
    engine_only, end_to_end = gpu_check.check_fps(engine, video, 5)
    assert engine_only.check.startswith(f"{MODEL} engine-only 1080p")
    assert "5 frames" in end_to_end.check
    on_gpu, on_host = gpu_check.check_selfcheck("trt", MODEL, None, video)
    assert on_gpu.verdict == on_host.verdict == "ok"
    assert "all-GPU chain" in on_gpu.check and "self-check passed" in on_gpu.value
    assert "host chain" in on_host.check and "host stages around the GPU engine" in on_host.value
