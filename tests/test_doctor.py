"""``streammatte doctor``: parsing what the tools say, and its report on this machine."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import av
import onnxruntime
import pytest

from streammatte.cli import main
from streammatte.commands.doctor import (
    Check,
    check_features,
    check_gpu,
    check_packages,
    check_virtual_camera,
    collect_checks,
    format_checks,
    parse_cuda_version,
    parse_nvidia_smi,
)

SMI_QUERY = "NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB, 9.0\n"
SMI_HEADER = ("| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4     |\n")
NVCC = "Cuda compilation tools, release 12.4, V12.4.131\n"


def _runner(outputs: dict[str, str | None]) -> object:
    def run(cmd: Sequence[str]) -> str | None:
        key = " ".join(cmd[:2]) if len(cmd) > 1 and cmd[1].startswith("--query") else cmd[0]
        return outputs.get(key)

    return run


def test_parse_nvidia_smi_rows() -> None:
    rows = parse_nvidia_smi(SMI_QUERY + "NVIDIA L4, 550.54.15, 23034 MiB, 8.9\n")
    assert [r["name"] for r in rows] == ["NVIDIA H100 80GB HBM3", "NVIDIA L4"]
    assert rows[1]["compute_cap"] == "8.9" and rows[0]["driver"] == "550.54.15"


def test_parse_cuda_versions() -> None:
    assert parse_cuda_version(SMI_HEADER, NVCC) == ("12.4", "12.4")
    assert parse_cuda_version(None, None) == (None, None)


def test_gpu_machine_report() -> None:
    run = _runner({"nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap":
                   SMI_QUERY, "nvidia-smi": SMI_HEADER, "nvcc": NVCC})
    checks = {c.area: c for c in check_gpu(run)}  # type: ignore[arg-type]
    assert checks["GPU"].ok and "compute capability 9.0" in checks["GPU"].detail
    assert checks["driver"].detail == "550.54.15"
    assert checks["CUDA"].detail == "driver supports CUDA 12.4, nvcc 12.4"


def test_machine_without_gpu_says_so_with_the_fix() -> None:
    checks = {c.area: c for c in check_gpu(_runner({}))}  # type: ignore[arg-type]
    assert not checks["GPU"].ok
    assert "nvidia-smi not found" in checks["GPU"].detail
    assert checks["GPU"].fix is not None and "driver" in checks["GPU"].fix
    assert checks["CUDA"].status == "N/A"


def test_cuda_does_not_apply_without_a_gpu_even_with_nvcc() -> None:
    """A CUDA toolkit on a machine with no NVIDIA GPU is not "OK CUDA" beside "MISSING GPU"."""
    checks = {c.area: c for c in check_gpu(_runner({"nvcc": NVCC}))}  # type: ignore[arg-type]
    assert checks["GPU"].status == "MISSING"
    assert checks["CUDA"].status == "N/A"
    assert checks["CUDA"].detail == "does not apply without an NVIDIA GPU (nvcc 12.4 is installed)"
    assert format_checks([checks["CUDA"]]).splitlines() == [
        "N/A      CUDA  does not apply without an NVIDIA GPU (nvcc 12.4 is installed)"]


def test_gpu_packages_are_missing_with_a_gpu_and_not_applicable_without() -> None:
    try:
        import tensorrt  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt is installed here")
    with_gpu = {c.area: c for c in check_packages(has_gpu=True)}
    assert with_gpu["TensorRT"].status == "MISSING"
    assert with_gpu["TensorRT"].fix == "pip install 'streammatte[trt]'"
    without = {c.area: c for c in check_packages(has_gpu=False)}
    assert without["TensorRT"].status == "N/A"
    assert without["TensorRT"].detail.endswith(
        "needs an NVIDIA GPU (with one: pip install 'streammatte[trt]')")


def test_what_serve_and_eval_need_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # as if not installed
    checks = {c.area: c for c in check_features()}
    assert checks["aiohttp"].status == "MISSING"
    assert checks["aiohttp"].fix == "pip install 'streammatte[server]'"
    assert "streammatte serve" in checks["aiohttp"].detail
    assert {"aiortc", "matplotlib"} <= set(checks)


def test_virtual_camera_finds_a_loopback_device(tmp_path: Path) -> None:
    dev, sys_dir = tmp_path / "dev", tmp_path / "sys"
    dev.mkdir()
    (dev / "video0").touch()
    (dev / "video7").touch()
    for name, label in (("video0", "Integrated Webcam"), ("video7", "Dummy video device")):
        d = sys_dir / "class" / "video4linux" / name
        d.mkdir(parents=True)
        (d / "name").write_text(label + "\n")
    checks = {c.area: c for c in check_virtual_camera(dev, sys_dir)}
    assert checks["v4l2loopback"].ok
    assert checks["v4l2loopback"].detail == f"{dev / 'video7'} (Dummy video device)"


def test_virtual_camera_without_loopback_gives_the_modprobe_fix(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    checks = {c.area: c for c in check_virtual_camera(tmp_path / "dev", tmp_path / "sys")}
    assert not checks["v4l2loopback"].ok
    assert "modprobe v4l2loopback" in (checks["v4l2loopback"].fix or "")


def test_format_puts_the_fix_under_a_missing_line() -> None:
    text = format_checks([Check("GPU", False, "none", "install a driver"),
                          Check("PyAV", True, "av 14")])
    assert text.splitlines() == ["MISSING  GPU   none", "               fix: install a driver",
                                 "OK       PyAV  av 14"]


def test_doctor_on_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    # "OK       ONNX Runtime  onnxruntime 1.x; …": status, area, then two spaces and the detail
    lines = {line[9:].split("  ")[0].strip(): line for line in out.splitlines()
             if line.startswith(("OK ", "MISSING ", "N/A "))}
    assert f"onnxruntime {onnxruntime.__version__}" in lines["ONNX Runtime"]
    assert "CPUExecutionProvider" in lines["ONNX Runtime"]
    assert f"av {av.__version__}" in lines["PyAV"]
    has_gpu = shutil.which("nvidia-smi") is not None
    assert lines["GPU"].startswith("OK" if has_gpu else "MISSING")
    assert lines["CUDA"].startswith(("OK", "MISSING") if has_gpu else "N/A")
    try:
        import tensorrt  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except ImportError:
        assert lines["TensorRT"].startswith("MISSING" if has_gpu else "N/A")
        assert "pip install 'streammatte[trt]'" in lines["TensorRT"] or has_gpu
    assert lines["aiohttp"].startswith("OK")  # the dev install has [server] and [webrtc]
    assert "chromium" not in lines  # only the tests need it
    assert "--backend auto runs on:" in out


def test_doctor_json_is_one_record_per_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    areas = [r["area"] for r in records]
    assert {"GPU", "CUDA", "TensorRT", "pycuda", "ONNX Runtime", "PyAV", "hardware codecs",
            "aiohttp", "aiortc", "matplotlib", "pyvirtualcam", "v4l2loopback",
            "selected back-end"} <= set(areas)
    assert {r["status"] for r in records} <= {"OK", "MISSING", "N/A"}
    assert len(records) == len(collect_checks())
