"""The GPU chain's self-check, its pure parts: how a GPU alpha is compared with the CPU
chain's, the tolerance, and the record of past checks per GPU and driver.

The check itself runs in the chain (``streammatte.chain.check``); ``streammatte doctor`` reads
the record. Nothing here imports pycuda.

The tolerance is statistical, not a maximum, because a working GPU moves single pixels a long
way: u2netp with FP16 weights and activations (TensorRT's default precision, emulated on the
CPU) differs from FP32 by up to 61/255 at some edge pixels of 40 DAVIS frames, while its mean
difference stays at or under 2.15/255 and at most 0.31 % of the pixels are off by more than
32/255 (MODNet and u2net stay closer; ``benchmarks/selfcheck_tolerance.py``, docs/gpu.md has
the table). An inverted, empty or mirrored matte is far outside the bounds on most frames;
subtle faults (a one-pixel shift, RGB read as BGR on some frames) can stay inside them: the
check guards against a GPU chain that is broken, not against every difference.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

#: mean |Δα| allowed between the GPU chain's first frame and the CPU chain's, in levels of 255
MEAN_TOLERANCE = 4.0
#: a pixel whose α differs by more than this many levels counts as far off ...
FAR_LEVELS = 32
#: ... and at most this share of the frame's pixels may be far off
FAR_SHARE_TOLERANCE = 0.01
#: the composite kernel against the host compositor over the same alpha, in levels
COMPOSITE_TOLERANCE = 1

#: the file beside the model cache that remembers the checks
RECORD_FILE = "gpu-selfcheck.json"


@dataclass(frozen=True, slots=True)
class AlphaComparison:
    """One frame's alpha from the GPU chain against the CPU chain's, in levels of 255."""

    mean_levels: float
    far_share: float
    max_levels: float

    @property
    def ok(self) -> bool:
        return self.mean_levels <= MEAN_TOLERANCE and self.far_share <= FAR_SHARE_TOLERANCE

    def describe(self) -> str:
        mean = "≤" if self.mean_levels <= MEAN_TOLERANCE else ">"
        far = "≤" if self.far_share <= FAR_SHARE_TOLERANCE else ">"
        return (f"mean |Δα| {self.mean_levels:.2f}/255 {mean} {MEAN_TOLERANCE:g}/255, "
                f"{100 * self.far_share:.2f} % of pixels off by more than {FAR_LEVELS}/255 "
                f"{far} {100 * FAR_SHARE_TOLERANCE:g} % (max |Δα| {self.max_levels:.0f}/255)")


def compare_alphas(gpu: npt.NDArray[np.float32], cpu: npt.NDArray[np.float32]
                   ) -> AlphaComparison:
    """The GPU chain's alpha against the CPU chain's for the same frame (H×W, 0..1)."""
    if gpu.shape != cpu.shape:
        raise ValueError(f"the GPU chain's alpha is {gpu.shape}, the CPU chain's {cpu.shape}")
    diff = np.abs(gpu.astype(np.float32) - cpu.astype(np.float32)) * 255.0
    # NaN from a broken engine must fail the check, not vanish from the mean
    diff = np.nan_to_num(diff, nan=255.0, posinf=255.0, neginf=255.0)
    return AlphaComparison(mean_levels=float(diff.mean()),
                           far_share=float((diff > FAR_LEVELS).mean()),
                           max_levels=float(diff.max()))


def output_difference(gpu: npt.NDArray[np.uint8], host: npt.NDArray[np.uint8]) -> int:
    """Largest difference, in levels, between two 8-bit outputs of the same shape."""
    if gpu.shape != host.shape:
        raise ValueError(f"the GPU chain's output is {gpu.shape}, the host's {host.shape}")
    return int(np.abs(gpu.astype(np.int16) - host.astype(np.int16)).max(initial=0))


@dataclass(frozen=True, slots=True)
class GpuIdentity:
    """A GPU as ``nvidia-smi`` names it, and the driver it runs under: what a check is
    remembered by (a new driver is checked again)."""

    name: str
    driver: str

    @property
    def key(self) -> str:
        return f"{self.name} | driver {self.driver}"


def gpu_identity(index: int = 0) -> GpuIdentity | None:
    """GPU ``index`` of this machine with its driver version, from ``nvidia-smi`` (what
    ``streammatte doctor`` reads too); None where it is missing or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version", "--format=csv,noheader",
                              f"--id={index}"], capture_output=True, text=True, timeout=20,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("nvidia-smi failed (%s): the GPU self-check is not remembered", exc)
        return None
    name, _, driver = out.strip().partition("\n")[0].rpartition(",")
    return GpuIdentity(name.strip(), driver.strip()) if name.strip() else None


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """One self-check of one chain on one GPU and driver."""

    #: what ran: model, back-end, which chain, streammatte version
    subject: str
    passed: bool
    #: the comparison, or why it failed
    detail: str
    #: when, ISO 8601 in UTC
    when: str

    @classmethod
    def now(cls, subject: str, passed: bool, detail: str) -> CheckRecord:
        return cls(subject, passed, detail,
                   datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def describe(self) -> str:
        when = self.when.replace("T", " ").replace("+00:00", " UTC")
        verdict = "passed" if self.passed else "FAILED"
        return f"{verdict} {when}: {self.subject}: {self.detail}"


class CheckRecords:
    """The self-checks done on this machine, per GPU and driver, in a small JSON file.

    A passed check lets later runs of the same subject skip the comparison; a failed one is
    kept, with its reason, for ``streammatte doctor``, and the next run checks again (a
    failure may have been passing: another program holding the GPU's memory). A file that
    cannot be read counts as empty; one that cannot be written is logged, never fatal.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable (%s); starting a new one", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def for_gpu(self, gpu: GpuIdentity) -> list[CheckRecord]:
        """The checks done on this GPU under this driver, newest first."""
        entry = self._load().get(gpu.key, {})
        records = []
        for subject, fields in (entry.get("checks") or {}).items():
            with contextlib.suppress(TypeError, KeyError):
                records.append(CheckRecord(subject, bool(fields["passed"]),
                                           str(fields["detail"]), str(fields["when"])))
        return sorted(records, key=lambda r: r.when, reverse=True)

    def find(self, gpu: GpuIdentity, subject: str) -> CheckRecord | None:
        return next((r for r in self.for_gpu(gpu) if r.subject == subject), None)

    def drivers_checked(self, gpu_name: str) -> list[str]:
        """Drivers this GPU was checked under (to say a new driver has not been)."""
        return sorted({str(v.get("driver")) for v in self._load().values()
                       if isinstance(v, dict) and v.get("gpu") == gpu_name})

    def store(self, gpu: GpuIdentity, record: CheckRecord) -> None:
        data = self._load()
        entry = data.setdefault(gpu.key, {"gpu": gpu.name, "driver": gpu.driver, "checks": {}})
        fields = asdict(record)
        del fields["subject"]
        entry.setdefault("checks", {})[record.subject] = fields
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(data, f, indent=1)
                os.replace(tmp, self.path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        except OSError as exc:
            log.warning("%s: cannot remember the GPU self-check (%s)", self.path, exc)
