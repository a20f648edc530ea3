"""``streammatte doctor``: parsing what the tools say, and its report on this machine."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import av
import onnxruntime
import pytest

from streammatte.cli import main
from streammatte.commands.doctor import (
    Check,
    check_gpu,
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
    assert not checks["CUDA"].ok


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
             if line.startswith(("OK ", "MISSING "))}
    assert f"onnxruntime {onnxruntime.__version__}" in lines["ONNX Runtime"]
    assert "CPUExecutionProvider" in lines["ONNX Runtime"]
    assert f"av {av.__version__}" in lines["PyAV"]
    has_gpu = shutil.which("nvidia-smi") is not None
    assert lines["GPU"].startswith("OK" if has_gpu else "MISSING")
    try:
        import tensorrt  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except ImportError:
        assert lines["TensorRT"].startswith("MISSING")
        assert "fix: pip install 'streammatte[trt]'" in out
    assert "--backend auto runs on:" in out


def test_doctor_json_is_one_record_per_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    areas = [r["area"] for r in records]
    assert {"GPU", "TensorRT", "pycuda", "ONNX Runtime", "PyAV", "hardware codecs",
            "pyvirtualcam", "v4l2loopback", "chromium", "selected back-end"} <= set(areas)
    assert len(records) == len(collect_checks())
