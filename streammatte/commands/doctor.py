"""``streammatte doctor``: what this machine can run, and how to fix what is missing.

GPU and driver, CUDA, TensorRT, pycuda, ONNX Runtime and its providers, PyAV and the hardware
codecs in its FFmpeg, what serve, eval and live need (aiohttp, aiortc, matplotlib, the virtual
camera), and the back-end ``--backend auto`` would pick. Without an NVIDIA GPU the GPU-only
parts say N/A: they do not apply. Missing optional parts are reported, not failures: the exit
status is 0 unless something the core needs is broken.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..cuda.selfcheck import CheckRecords
from .common import SubParsers

TRT_HINT = "pip install 'streammatte[trt]'"
VCAM_HINT = "pip install 'streammatte[vcam]'"
#: optional packages a command needs: (module, what needs it, extra that installs it)
FEATURE_PACKAGES: tuple[tuple[str, str, str], ...] = (
    ("aiohttp", "streammatte serve: the web page and HTTP API", "server"),
    ("aiortc", "the live page of streammatte serve: WebRTC", "webrtc"),
    ("matplotlib", "the plots of streammatte eval and compare", "eval"),
)
HW_CODECS: tuple[str, ...] = (
    "h264_nvenc", "hevc_nvenc", "av1_nvenc", "h264_cuvid", "hevc_cuvid", "av1_cuvid",
    "h264_vaapi", "hevc_vaapi", "h264_qsv", "hevc_qsv", "h264_v4l2m2m", "h264_videotoolbox",
)

#: runs a command and returns its stdout, or None when it is missing or fails
Runner = Callable[[Sequence[str]], "str | None"]


@dataclass(frozen=True, slots=True)
class Check:
    area: str
    ok: bool
    detail: str
    fix: str | None = None
    #: False for what the core pipeline needs: a failure there makes the exit status 1
    optional: bool = True
    #: False where the check does not apply to this machine (CUDA without an NVIDIA GPU)
    applies: bool = True

    @property
    def status(self) -> str:
        return "N/A" if not self.applies else "OK" if self.ok else "MISSING"


def not_applicable(area: str, detail: str) -> Check:
    """A GPU-only part on a machine without an NVIDIA GPU."""
    return Check(area, False, detail, applies=False)


def run_command(cmd: Sequence[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def parse_nvidia_smi(csv_text: str) -> list[dict[str, str]]:
    """Rows of ``nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap
    --format=csv,noheader``."""
    rows = []
    for line in csv_text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 4:
            rows.append({"name": parts[0], "driver": parts[1], "memory": parts[2],
                         "compute_cap": parts[3]})
    return rows


def parse_cuda_version(smi_text: str | None, nvcc_text: str | None) -> tuple[str | None,
                                                                             str | None]:
    """(highest CUDA the driver supports, nvcc's toolkit release)."""
    driver = toolkit = None
    if smi_text and (m := re.search(r"CUDA Version:\s*([\d.]+)", smi_text)):
        driver = m.group(1)
    if nvcc_text and (m := re.search(r"release ([\d.]+)", nvcc_text)):
        toolkit = m.group(1)
    return driver, toolkit


def check_gpu(run: Runner = run_command) -> list[Check]:
    query = run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                 "--format=csv,noheader"])
    gpus = parse_nvidia_smi(query) if query else []
    if not gpus:
        why = "nvidia-smi not found or failed" if query is None else "nvidia-smi lists no GPU"
        checks = [Check("GPU", False, f"no NVIDIA GPU ({why}); the CPU engines still work",
                        "install an NVIDIA GPU driver (nvidia-smi must list the GPU)")]
    else:
        checks = [Check("GPU", True, f"{g['name']}, {g['memory']}, compute capability "
                        f"{g['compute_cap']}") for g in gpus]
        checks.append(Check("driver", True, gpus[0]["driver"]))
    driver_cuda, toolkit = parse_cuda_version(run(["nvidia-smi"]), run(["nvcc", "--version"]))
    if not gpus:
        found = f" (nvcc {toolkit} is installed)" if toolkit else ""
        checks.append(not_applicable("CUDA", f"does not apply without an NVIDIA GPU{found}"))
    elif driver_cuda or toolkit:
        parts = [f"driver supports CUDA {driver_cuda}" if driver_cuda else None,
                 f"nvcc {toolkit}" if toolkit else "no nvcc (pycuda compiles kernels with it)"]
        checks.append(Check("CUDA", True, ", ".join(p for p in parts if p),
                            None if toolkit else "install the CUDA toolkit (nvcc) for the "
                            "GPU pre/post-processing kernels"))
    else:
        checks.append(Check("CUDA", False, "no CUDA driver or toolkit found",
                            "install the NVIDIA driver and CUDA 12 toolkit"))
    return checks


def _import(name: str) -> tuple[object | None, str | None]:
    try:
        return importlib.import_module(name), None
    except ImportError as exc:
        return None, str(exc)
    except OSError as exc:  # installed, but its shared libraries do not load
        return None, f"installed but does not load: {exc}"


def _missing(area: str, detail: str, fix: str, has_gpu: bool) -> Check:
    """A GPU-only part that is not installed: missing with its fix, or N/A without a GPU."""
    if has_gpu:
        return Check(area, False, detail, fix)
    return not_applicable(area, f"{detail}; needs an NVIDIA GPU (with one: {fix})")


def check_packages(has_gpu: bool = True) -> list[Check]:
    checks = []
    trt, err = _import("tensorrt")
    checks.append(Check("TensorRT", True, f"tensorrt {getattr(trt, '__version__', '?')}")
                  if trt is not None else
                  _missing("TensorRT", f"not installed ({err})", TRT_HINT, has_gpu))
    pycuda, err = _import("pycuda")
    if pycuda is None:
        checks.append(_missing("pycuda", f"not installed ({err})", TRT_HINT, has_gpu))
    else:
        checks.append(Check("pycuda", True, f"pycuda {getattr(pycuda, 'VERSION_TEXT', '?')}"))
    import onnxruntime as ort

    providers = ort.get_available_providers()
    checks.append(Check("ONNX Runtime", True, f"onnxruntime {ort.__version__}; providers: "
                        f"{', '.join(providers)}", optional=False))
    if "CUDAExecutionProvider" in providers:
        checks.append(Check("ONNX Runtime CUDA", True, "CUDAExecutionProvider available"))
    else:
        checks.append(_missing("ONNX Runtime CUDA", "no CUDAExecutionProvider",
                               "pip install onnxruntime-gpu in place of onnxruntime", has_gpu))
    return checks


def check_features() -> list[Check]:
    """The optional packages that serve, its live page and eval's plots import."""
    checks = []
    for module_name, needed_by, extra in FEATURE_PACKAGES:
        module, err = _import(module_name)
        if module is None:
            checks.append(Check(module_name, False, f"not installed ({err}); needed by "
                                f"{needed_by}", f"pip install 'streammatte[{extra}]'"))
        else:
            checks.append(Check(module_name, True, f"{module_name} "
                                f"{getattr(module, '__version__', '?')}, for {needed_by}"))
    return checks


def check_pyav() -> list[Check]:
    import av

    available = set(av.codecs_available)
    hw = [c for c in HW_CODECS if c in available]
    checks = [Check("PyAV", True, f"av {av.__version__} (FFmpeg "
                    f"{'.'.join(map(str, av.library_versions.get('libavcodec', ())))} "
                    "libavcodec)", optional=False)]
    if hw:
        checks.append(Check("hardware codecs", True, f"in this FFmpeg build: {', '.join(hw)} "
                            "(a codec also needs its device and driver to run)"))
    else:
        checks.append(Check("hardware codecs", False,
                            f"none of {', '.join(HW_CODECS[:4])}, … in this FFmpeg build",
                            "PyAV's wheels build FFmpeg without NVENC/CUVID; encode on the CPU "
                            "(libx264) or build PyAV against an FFmpeg with --enable-nvenc"))
    return checks


def check_virtual_camera(dev_dir: Path = Path("/dev"), sys_dir: Path = Path("/sys")
                         ) -> list[Check]:
    checks = []
    vcam, err = _import("pyvirtualcam")
    if vcam is None:
        checks.append(Check("pyvirtualcam", False, f"not installed ({err})", VCAM_HINT))
    else:
        checks.append(Check("pyvirtualcam", True,
                            f"pyvirtualcam {getattr(vcam, '__version__', '?')}"))
    if platform.system() != "Linux" and sys_dir == Path("/sys"):
        return checks
    devices = sorted(dev_dir.glob("video*"))
    loopbacks = []
    for device in devices:
        name_file = sys_dir / "class" / "video4linux" / device.name / "name"
        try:
            label = name_file.read_text(encoding="utf-8").strip()
        except OSError:
            label = ""
        # v4l2loopback names its devices "Dummy video device" unless given a card_label
        if "loopback" in label.lower() or "dummy" in label.lower() or label == "streammatte":
            loopbacks.append(f"{device} ({label})")
    module_loaded = (sys_dir / "module" / "v4l2loopback").is_dir()
    if loopbacks:
        checks.append(Check("v4l2loopback", True, ", ".join(loopbacks)))
    elif module_loaded:
        checks.append(Check("v4l2loopback", True, "module loaded; devices: " + (
            ", ".join(str(d) for d in devices) or "none")))
    else:
        found = ", ".join(str(d) for d in devices) or "no /dev/video* devices"
        checks.append(Check("v4l2loopback", False, f"no loopback device ({found})",
                            "sudo apt install v4l2loopback-dkms && sudo modprobe v4l2loopback "
                            "devices=1 exclusive_caps=1 card_label=streammatte"))
    return checks


def check_selection() -> Check:
    from ..cuda.select import probe_runtime, select_backend

    try:
        selection = select_backend("auto", probe_runtime())
    except Exception as exc:  # report, never crash the doctor
        return Check("selected back-end", False, f"selection failed: {exc}")
    detail = f"--backend auto runs on: {selection.backend} ({selection.device})"
    if selection.skipped:
        detail += f"; not used: {selection.note()}"
    return Check("selected back-end", True, detail)


def check_gpu_self_check(run: Runner = run_command, records: CheckRecords | None = None
                         ) -> list[Check]:
    """Whether the GPU chain was self-checked on each GPU under its driver, when, and how it
    went (from the record the runs keep beside the model cache); nothing without a GPU."""
    from ..chain.check import default_records
    from ..cuda.selfcheck import GpuIdentity

    records = records if records is not None else default_records(None)
    query = run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                 "--format=csv,noheader"])
    checks = []
    for gpu in parse_nvidia_smi(query) if query else []:
        identity = GpuIdentity(gpu["name"], gpu["driver"])
        done = records.for_gpu(identity)
        checks += [Check("GPU self-check", r.passed, r.describe()) for r in done]
        if not done:
            before = records.drivers_checked(gpu["name"])
            checks.append(Check("GPU self-check", False, f"not yet on {gpu['name']} with driver "
                                f"{gpu['driver']}" + (f" (checked under driver "
                                                      f"{', '.join(before)})" if before else ""),
                                "the first run with --backend auto, trt or onnxruntime-cuda "
                                "checks it against the CPU"))
    return checks


def collect_checks(run: Runner = run_command) -> list[Check]:
    gpu = check_gpu(run)
    has_gpu = any(c.area == "GPU" and c.ok for c in gpu)
    return [
        Check("python", True, f"{sys.version.split()[0]} on {platform.platform()}",
              optional=False),
        *gpu, *check_packages(has_gpu), *check_pyav(), *check_features(),
        *check_virtual_camera(), check_selection(), *check_gpu_self_check(run),
    ]


def format_checks(checks: Sequence[Check]) -> str:
    width = max(len(c.area) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.status:<8} {c.area:<{width}}  {c.detail}")
        if c.fix and not c.ok and c.applies:
            lines.append(f"{'':<8} {'':<{width}}  fix: {c.fix}")
    return "\n".join(lines)


def add_parser(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("doctor", help="what this machine can run, and how to fix "
                                   "what is missing", description=__doc__)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    checks = collect_checks()
    if args.json:
        print(json.dumps([{**asdict(c), "status": c.status} for c in checks], indent=1))
    else:
        print(format_checks(checks))
    return 1 if any(not c.ok and c.applies and not c.optional for c in checks) else 0
