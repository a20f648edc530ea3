"""A virtual camera as a sink, through pyvirtualcam: v4l2loopback on Linux, the OBS Virtual
Camera on Windows and macOS. Any app that picks a webcam (OBS, Zoom, a browser) sees the output.

Frames are converted here, once, to the planar YUV the backend takes natively (I420 on
v4l2loopback, NV12 on OBS), with BT.601 limited-range coefficients as webcams use; the
backend then copies them without converting again.
"""

from __future__ import annotations

import platform
from types import TracebackType
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from ..errors import ConfigError, SinkError
from ..frames import FramePacket

# BT.601, limited range (16–235 luma, 16–240 chroma): what webcams and v4l2 consumers expect
_Y = np.array([[65.481, 128.553, 24.966, 16.0 * 255]], np.float32) / 255.0
_UV = np.array([[-37.797, -74.203, 112.0, 128.0 * 255],
                [112.0, -93.786, -18.214, 128.0 * 255]], np.float32) / 255.0

#: pixel formats we send, preferred first, per pyvirtualcam backend
PREFERRED_FORMATS: dict[str, tuple[str, ...]] = {
    "v4l2loopback": ("I420", "NV12", "RGB"),
    "obs": ("NV12", "I420", "RGB"),
    "unitycapture": ("RGB",),
}


def _planes(rgb: npt.NDArray[np.uint8]) -> tuple[np.ndarray, np.ndarray]:
    h, w = rgb.shape[:2]
    if rgb.ndim != 3 or rgb.shape[2] != 3 or h % 2 or w % 2:
        raise ValueError(f"expected an H×W×3 RGB frame with even sides, got {rgb.shape}")
    y = cv2.transform(rgb.astype(np.float32), _Y)
    # each chroma sample is the mean of its 2×2 block (INTER_AREA at exactly half size)
    half = cv2.resize(rgb.astype(np.float32), (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    uv = cv2.transform(half, _UV)
    return (np.clip(y + 0.5, 0, 255).astype(np.uint8).reshape(h, w),
            np.clip(uv + 0.5, 0, 255).astype(np.uint8).reshape(h // 2, w // 2, 2))


def rgb_to_i420(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """H×W×3 RGB → flat I420 (Y plane, then U, then V), BT.601 limited range."""
    y, uv = _planes(rgb)
    out: npt.NDArray[np.uint8] = np.concatenate(
        [y.ravel(), uv[..., 0].ravel(), uv[..., 1].ravel()])
    return out


def rgb_to_nv12(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """H×W×3 RGB → flat NV12 (Y plane, then interleaved U/V), BT.601 limited range."""
    y, uv = _planes(rgb)
    out: npt.NDArray[np.uint8] = np.concatenate([y.ravel(), uv.ravel()])
    return out


CONVERTERS = {"I420": rgb_to_i420, "NV12": rgb_to_nv12}


def no_backend_message(detail: str) -> str:
    system = platform.system()
    if system == "Linux":
        fix = ("load the v4l2loopback kernel module: sudo modprobe v4l2loopback "
               "exclusive_caps=1 card_label=streammatte (package v4l2loopback-dkms)")
    elif system in ("Windows", "Darwin"):
        fix = "install OBS Studio (28 or later) and start its Virtual Camera once"
    else:
        fix = f"pyvirtualcam has no virtual-camera backend for {system}"
    return f"no virtual camera available: {fix}" + (f" [{detail}]" if detail else "")


class VirtualCameraSink:
    """Sends composed frames (``FramePacket.output``, RGB) to a virtual camera.

    ``backend``/``device`` pick one (None: the first that works). A frame whose size differs
    from the camera's is refused with both sizes named. Raises SinkError with the fix when no
    backend can be opened, and when pyvirtualcam itself is missing.
    """

    def __init__(self, width: int, height: int, fps: float, *, device: str | None = None,
                 backend: str | None = None, pixel_format: str = "auto") -> None:
        if width % 2 or height % 2:
            raise ConfigError(f"virtual camera size {width}×{height}: both sides must be even")
        try:
            import pyvirtualcam  # type: ignore[import-untyped,unused-ignore]
        except ImportError as exc:
            raise SinkError("the virtual camera needs pyvirtualcam: "
                            "pip install 'streammatte[vcam]'") from exc
        self.width, self.height, self.fps = width, height, fps
        names = [backend] if backend else list(pyvirtualcam.camera.BACKENDS)
        if backend and backend not in pyvirtualcam.camera.BACKENDS:
            raise ConfigError(f"virtual camera backend {backend!r}: not available here "
                              f"(available: {', '.join(pyvirtualcam.camera.BACKENDS) or 'none'})")
        if not names:
            raise SinkError(no_backend_message(""))
        errors = []
        self._camera: Any = None
        for name in names:
            formats = (PREFERRED_FORMATS.get(name, ("I420", "NV12", "RGB"))
                       if pixel_format == "auto" else (pixel_format.upper(),))
            for fmt in formats:
                try:
                    self._camera = pyvirtualcam.Camera(
                        width, height, fps, fmt=pyvirtualcam.PixelFormat[fmt], device=device,
                        backend=name)
                except KeyError:
                    raise ConfigError(f"pixel format {pixel_format!r}: expected auto, I420, "
                                      "NV12 or RGB") from None
                except (RuntimeError, ValueError, OSError) as exc:
                    errors.append(f"{name}/{fmt}: {str(exc).strip()}")
                    continue
                self.backend, self.pixel_format = name, fmt
                break
            if self._camera is not None:
                break
        if self._camera is None:
            raise SinkError(no_backend_message("; ".join(errors)))
        self.device: str = self._camera.device
        self._convert = CONVERTERS.get(self.pixel_format)
        self.frames_written = 0

    def write(self, packet: FramePacket) -> None:
        if self._camera is None:
            raise SinkError("virtual camera is closed")
        frame = packet.output if packet.output is not None else packet.image
        if frame.shape[:2] != (self.height, self.width):
            raise SinkError(f"unexpected frame shape: {frame.shape[:2]} != "
                            f"{(self.height, self.width)} (the virtual camera's size)")
        if frame.ndim == 3 and frame.shape[2] == 4:
            frame = np.ascontiguousarray(frame[..., :3])
        data = self._convert(frame) if self._convert is not None else frame
        self._camera.send(data)
        self.frames_written += 1

    def close(self) -> None:
        if self._camera is not None:
            self._camera.close()
            self._camera = None

    def __enter__(self) -> VirtualCameraSink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
