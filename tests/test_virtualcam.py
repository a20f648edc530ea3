"""The virtual-camera sink, the live sources and ``streammatte live``."""

from __future__ import annotations

import importlib.util
import itertools
import re
import sys
from pathlib import Path
from typing import Any, ClassVar

import av
import numpy as np
import pytest
from media import CostlySmoothing, make_video, square_frame

from streammatte.cli import main
from streammatte.errors import SinkError, SourceError
from streammatte.frames import FramePacket
from streammatte.sinks.virtualcam import VirtualCameraSink, rgb_to_i420, rgb_to_nv12
from streammatte.sources.camera import CameraSource, LoopedFileSource
from streammatte.temporal import TEMPORAL_FILTERS

pyvirtualcam = pytest.importorskip("pyvirtualcam", reason="pyvirtualcam ([vcam] extra) missing")


def bt601_reference(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The textbook BT.601 limited-range conversion, 2×2 block-averaged chroma, in float64."""
    x = rgb.astype(np.float64)
    h, w = rgb.shape[:2]
    y = 16 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255
    a = x.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    u = 128 + (-37.797 * a[..., 0] - 74.203 * a[..., 1] + 112.0 * a[..., 2]) / 255
    v = 128 + (112.0 * a[..., 0] - 93.786 * a[..., 1] - 18.214 * a[..., 2]) / 255
    return y, u, v


def test_i420_matches_the_bt601_formula() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = rgb_to_i420(rgb)
    y, u, v = bt601_reference(rgb)
    n, q = 48 * 64, 24 * 32
    assert out.shape == (n * 3 // 2,)
    assert np.abs(out[:n].reshape(48, 64) - y).max() <= 0.51
    assert np.abs(out[n:n + q].reshape(24, 32) - u).max() <= 0.51
    assert np.abs(out[n + q:].reshape(24, 32) - v).max() <= 0.51


def test_i420_and_nv12_agree_with_ffmpeg() -> None:
    # FFmpeg's swscale sites chroma slightly differently: compare on camera-like content
    rgb = square_frame(7, 128, 96)[0]
    for fmt, ours in (("yuv420p", rgb_to_i420(rgb)), ("nv12", rgb_to_nv12(rgb))):
        theirs = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=fmt)
        ref = theirs.to_ndarray().ravel().astype(int)
        n = 128 * 96
        assert np.abs(ours[:n] - ref[:n]).max() <= 1, fmt
        assert np.abs(ours[n:] - ref[n:]).mean() < 1.5, fmt
    # NV12 is I420's chroma interleaved
    i420, nv12 = rgb_to_i420(rgb), rgb_to_nv12(rgb)
    q = 64 * 48
    assert np.array_equal(nv12[n::2], i420[n:n + q])
    assert np.array_equal(nv12[n + 1::2], i420[n + q:])


def test_odd_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="even sides"):
        rgb_to_i420(np.zeros((5, 4, 3), np.uint8))


class RecordingBackend:
    """A pyvirtualcam backend that keeps what it is sent (and takes only I420)."""

    sent: ClassVar[list[np.ndarray]] = []
    fourcc: ClassVar[int] = 0

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int,
                 device: str | None, **kw: Any) -> None:
        from pyvirtualcam.util import (  # type: ignore[import-untyped,unused-ignore]
            encode_fourcc,
        )

        if fourcc != encode_fourcc(pyvirtualcam.PixelFormat.I420.value):
            raise RuntimeError("only I420")
        RecordingBackend.fourcc = fourcc
        self._device = device or "/dev/video-test"

    def send(self, frame: np.ndarray) -> None:
        RecordingBackend.sent.append(frame.copy())

    def close(self) -> None:
        pass

    def device(self) -> str:
        return self._device

    def native_fourcc(self) -> int | None:
        return RecordingBackend.fourcc


@pytest.fixture()
def recording_backend() -> Any:
    RecordingBackend.sent = []
    pyvirtualcam.register_backend("recording", RecordingBackend)
    yield RecordingBackend
    pyvirtualcam.camera.BACKENDS.pop("recording", None)


def test_sink_sends_i420_through_pyvirtualcam(recording_backend: Any) -> None:
    rgb = square_frame(3, 64, 48)[0]
    with VirtualCameraSink(64, 48, 30, backend="recording") as sink:
        assert sink.pixel_format == "I420" and sink.device == "/dev/video-test"
        sink.write(FramePacket(index=0, image=rgb, pts=0, time_base=None, output=rgb))
        with pytest.raises(SinkError, match=r"unexpected frame shape: \(24, 32\) != \(48, 64\)"):
            small = rgb[:24, :32]
            sink.write(FramePacket(index=1, image=small, pts=1, time_base=None, output=small))
    assert len(recording_backend.sent) == 1
    assert np.array_equal(recording_backend.sent[0], rgb_to_i420(rgb))


def test_missing_backend_says_what_to_load() -> None:
    if sys.platform != "linux":
        pytest.skip("the message names the Linux fix")
    if list(Path("/dev").glob("video*")):
        pytest.skip("this machine has video devices; the no-backend path cannot be shown")
    with pytest.raises(SinkError, match=r"modprobe v4l2loopback exclusive_caps=1"):
        VirtualCameraSink(64, 48, 30)


def test_missing_pyvirtualcam_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)
    with pytest.raises(SinkError, match=r"pip install 'streammatte\[vcam\]'"):
        VirtualCameraSink(64, 48, 30)


def test_looped_file_keeps_timestamps_growing(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=6, fps=10)
    with LoopedFileSource(clip, loops=3, realtime=False) as source:
        packets = list(source)
    assert [p.index for p in packets] == list(range(18))
    pts = [p.pts if p.pts is not None else -1 for p in packets]
    assert all(b > a >= 0 for a, b in itertools.pairwise(pts))
    step = pts[1] - pts[0]
    assert pts[6] - pts[5] == step and pts[12] - pts[11] == step  # no gap at the seams
    first, seventh = packets[0].image, packets[6].image
    assert np.array_equal(first, seventh)


def test_missing_camera_is_named() -> None:
    if sys.platform != "linux":
        pytest.skip("device paths are Linux's")
    with pytest.raises(SourceError, match=r"camera /dev/video99: no such device"):
        CameraSource(99)


def test_live_command_file_to_virtual_camera(tmp_path: Path, recording_backend: Any) -> None:
    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=10, fps=20, size=(64, 48))
    status = main(["live", "--file", str(clip), "--engine", "mog2", "--background", "#0000ff",
                   "--vcam-backend", "recording", "--duration-s", "1.5", "--quiet"])
    assert status == 0
    sent = recording_backend.sent
    assert len(sent) >= 10, f"1.5 s of a 20 fps clip should reach the camera, got {len(sent)}"
    assert all(frame.shape == (64 * 48 * 3 // 2,) for frame in sent)


@pytest.mark.parametrize("keep", [False, True])
def test_live_command_sheds_smoothing_it_has_no_time_for(
        keep: bool, tmp_path: Path, recording_backend: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(TEMPORAL_FILTERS, "flow", CostlySmoothing)  # 60 ms; frames every 33
    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=30, fps=30, size=(64, 48))
    status = main(["live", "--file", str(clip), "--engine", "mog2", "--temporal", "flow",
                   "--vcam-backend", "recording", "--duration-s", "3.5",
                   *(["--keep-smoothing"] if keep else [])])
    err = capsys.readouterr().err
    assert status == 0
    dropped = int(re.search(r"dropped (\d+) of", err).group(1))  # type: ignore[union-attr]
    assert dropped > 10, err
    if keep:
        assert "smoothing" not in err, err
    else:
        assert "smoothing flow → adaptive: frames are being dropped" in err
        assert "smoothing ended at adaptive (flow was shed to keep up" in err


@pytest.mark.parametrize("keep", [False, True])
def test_live_keyframes_skip_the_engine_on_a_still_scene(
        keep: bool, tmp_path: Path, recording_backend: Any, pull_model: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # with load shedding on (the default) as with --keep-smoothing: the shedder's keyframe
    # rung decides before the engine, as keyframes-live does on its own
    from streammatte.inference.ort import OrtEngine

    selfie = pull_model("mediapipe-selfie")  # the fast people model (MOG2 sees every frame)
    calls: list[int] = []
    infer = OrtEngine.infer

    def counted(self: OrtEngine, batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return infer(self, batch)

    monkeypatch.setattr(OrtEngine, "infer", counted)
    clip = tmp_path / "still.mp4"
    still = square_frame(0, 160, 120)[0]
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(still, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    status = main(["live", "--file", str(clip), "--engine", "mediapipe-selfie", "--model-file",
                   str(selfie), "--temporal", "keyframes-live", "--vcam-backend", "recording",
                   "--duration-s", "3", "--quiet", *(["--keep-smoothing"] if keep else [])])
    assert status == 0
    sent = len(recording_backend.sent)
    assert sent >= 15, f"3 s of a 10 fps clip should reach the camera, got {sent}"
    # the first frame, then every 8th (LIVE_PRESET.max_interval): the engine runs ~1 in 8
    assert 1 <= sum(calls) <= sent // 4, f"the engine ran on {sum(calls)} of {sent} frames"


def test_live_command_without_a_backend_is_one_line(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    if sys.platform != "linux" or list(Path("/dev").glob("video*")):
        pytest.skip("needs a Linux machine with no video devices")
    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=4)
    status = main(["live", "--file", str(clip), "--engine", "mog2", "--quiet"])
    err = capsys.readouterr().err
    assert status == 2
    assert "modprobe v4l2loopback exclusive_caps=1" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_live_backend_trt_without_tensorrt_fails_with_the_extra_to_install(
        tmp_path: Path, recording_backend: Any, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=4)
    status = main(["live", "--file", str(clip), "--backend", "trt", "--vcam-backend",
                   "recording", "--duration-s", "1", "--quiet"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("streammatte: error: the TensorRT backend needs the tensorrt package")
    assert "pip install 'streammatte[trt]'" in err
    assert recording_backend.sent == []  # nothing ran on ONNX Runtime instead


def test_live_input_size_reaches_the_engine(tmp_path: Path, recording_backend: Any,
                                            pull_model: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from streammatte.inference.ort import OrtEngine

    modnet = pull_model("modnet")  # a free input size (the catalog's: short side 512)
    shapes: list[tuple[int, ...]] = []
    infer = OrtEngine.infer

    def spy(self: OrtEngine, batch: np.ndarray) -> np.ndarray:
        shapes.append(batch.shape)
        return infer(self, batch)

    monkeypatch.setattr(OrtEngine, "infer", spy)
    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=10, fps=20, size=(96, 64))
    status = main(["live", "--file", str(clip), "--engine", "modnet", "--model-file",
                   str(modnet), "--input-size", "128x96", "--vcam-backend", "recording",
                   "--duration-s", "1.5", "--quiet"])
    assert status == 0
    assert shapes and set(shapes) == {(1, 3, 96, 128)}
    assert recording_backend.sent
