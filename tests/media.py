"""Generated test media: small videos with a known matte, tiny ONNX models, fake engines."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from streammatte.inference.base import Engine
from streammatte.models.catalog import InputSpec, OutputSpec


def imread(path: Path, flags: int = -1) -> np.ndarray:
    """cv2.imread that fails loudly (flags default: IMREAD_UNCHANGED)."""
    import cv2

    image = cv2.imread(str(path), flags)
    assert image is not None, f"{path}: unreadable image"
    return np.asarray(image)


def square_frame(index: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A bright square moving right over a dark textured background: (RGB frame, true alpha)."""
    yy, xx = np.mgrid[0:height, 0:width]
    background = ((xx * 3 + yy * 5) % 64 + 16).astype(np.uint8)
    frame = np.dstack([background, background // 2, background]).astype(np.uint8)
    side = max(4, min(width, height) // 3)
    x0 = (index * 3) % max(1, width - side)
    y0 = (height - side) // 2
    alpha = np.zeros((height, width), np.float32)
    alpha[y0:y0 + side, x0:x0 + side] = 1.0
    frame[alpha > 0] = (230, 230, 230)
    return frame, alpha


def write_tone(container: Any, audio_stream: Any, duration: Fraction) -> None:
    """A 440 Hz mono tone of ``duration`` seconds into ``audio_stream``, flushed."""
    rate = audio_stream.codec_context.sample_rate
    total = int(duration * rate)
    samples_per_frame = audio_stream.codec_context.frame_size or 1024
    fmt = audio_stream.codec_context.codec.audio_formats[0].name
    t = 0
    while t < total:
        n = min(samples_per_frame, total - t)
        tone = 0.3 * np.sin(2 * np.pi * 440 * (np.arange(t, t + n) / rate))
        if fmt.startswith("s16"):
            data = (tone * 32767).astype(np.int16)[None, :]
        else:
            data = tone.astype(np.float32)[None, :]
        aframe = av.AudioFrame.from_ndarray(data, format=fmt.rstrip("p") + (
            "p" if fmt.endswith("p") else ""), layout="mono")
        aframe.sample_rate = rate
        aframe.pts = t
        aframe.time_base = Fraction(1, rate)
        for packet in audio_stream.encode(aframe):
            container.mux(packet)
        t += n
    for packet in audio_stream.encode(None):
        container.mux(packet)


def make_video(
    path: Path,
    *,
    frames: int = 12,
    size: tuple[int, int] = (64, 48),
    fps: int = 10,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio: str | None = None,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    rotation: int | None = None,
    gop: int | None = None,
) -> list[np.ndarray]:
    """Write a video of moving squares; returns the true alpha of each frame.

    ``audio``: None, or an encoder name ("aac", "pcm_s16le", "libopus", "mp3") for a 440 Hz
    tone as long as the video. ``pts`` (in ``time_base``) makes variable frame rate. ``gop``:
    a keyframe every ``gop`` frames (the encoder's default otherwise).
    """
    width, height = size
    tb = time_base or Fraction(1, fps)
    alphas = []
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt
        if gop is not None:
            stream.codec_context.gop_size = gop
        stream.codec_context.time_base = tb
        stream.time_base = tb
        if rotation is not None:
            stream.set_display_rotation(rotation)
        audio_stream = None
        if audio:
            audio_stream = container.add_stream(audio, rate=48000 if audio == "libopus" else 44100)
            audio_stream.layout = "mono"
        for i in range(frames):
            image, alpha = square_frame(i, width, height)
            alphas.append(alpha)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = pts[i] if pts is not None else i
            frame.time_base = tb
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if audio_stream is not None:
            duration = (pts[-1] + 1) * tb if pts else Fraction(frames, fps)
            write_tone(container, audio_stream, duration)
    return alphas


def cut_before_packet(src: Path, dst: Path, n: int) -> None:
    """``src`` cut at the start of its ``n``-th video packet (in file order)."""
    with av.open(str(src)) as container:
        positions = sorted(p.pos for p in container.demux(video=0) if p.size and p.pos)
    dst.write_bytes(src.read_bytes()[: positions[n]])


def cut_mkv_eight_of_ten(folder: Path) -> Path:
    """A 10-frame MPEG-4 Matroska clip at 10 fps, a keyframe every 3, cut after its 8th frame."""
    whole = folder / "whole.mkv"
    make_video(whole, frames=10, size=(96, 64), codec="mpeg4", gop=3)
    cut = folder / "cut.mkv"
    cut_before_packet(whole, cut, 8)
    return cut


def make_tiny_onnx(path: Path, *, input_name: str = "input.1", size: tuple[int, int] = (32, 32),
                   outputs: int = 1, batch: int | str = 1, channels_last: bool = False) -> None:
    """An ONNX graph shaped like a matting model: alpha = sigmoid(8·(mean over RGB − 0.5)).

    With the catalog's u2net normalisation off (mean 0, std 1), bright pixels come out as
    foreground, which makes the expected alpha of ``square_frame`` easy to predict.
    """
    import onnx
    from onnx import TensorProto, helper

    w, h = size
    shape_in = [batch, h, w, 3] if channels_last else [batch, 3, h, w]
    axis = 3 if channels_last else 1
    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=1),
        helper.make_node("Sub", ["m", "half"], ["c"]),
        helper.make_node("Mul", ["c", "gain"], ["g"]),
        helper.make_node("Sigmoid", ["g"], ["out0"]),
    ]
    nodes[0].input[0] = input_name
    out_names = ["out0"]
    for k in range(1, outputs):
        nodes.append(helper.make_node("Identity", ["out0"], [f"out{k}"]))
        out_names.append(f"out{k}")
    shape_out = [batch, h, w, 1] if channels_last else [batch, 1, h, w]
    graph = helper.make_graph(
        nodes, "tiny_matte",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape_in)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape_out) for n in out_names],
        initializer=[
            helper.make_tensor("axes", TensorProto.INT64, [1], [axis]),
            helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
            helper.make_tensor("gain", TensorProto.FLOAT, [], [8.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


class BrightnessEngine(Engine):
    """A fake engine (the test double the real ones are checked against): alpha = brightness
    > 0.5, computed on the frame itself, so compose and encode can be tested exactly."""

    name = "brightness"
    device = "cpu"
    provider = "test double"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.input_spec = InputSpec(name=None, size=None, layout="nhwc", dtype="uint8")
        self.output_spec = OutputSpec()
        self.max_batch = 64
        self.delay_s = delay_s
        self.calls = 0

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import time

        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        alpha: np.ndarray = (batch.mean(axis=3) > 127).astype(np.float32)
        return alpha


class CostlySmoothing:
    """The load of a smoothing mode too costly for the machine (``cost_s`` a frame, more than
    the camera leaves between frames); the alpha passes through. Tests put it in place of a
    real mode to drive the live load shedding."""

    cost_s = 0.06

    def __call__(self, alpha: np.ndarray, frame: np.ndarray) -> np.ndarray:
        time.sleep(self.cost_s)
        return alpha

    def reset(self) -> None:
        pass


def davis_clip(shared_data: Path, dst: Path, frames: int, gop: int | None = None,
               audio: str | None = None) -> Path:
    """The first ``frames`` frames of DAVIS parkour (real footage) at half size (428×240) as
    an H.264 MP4, 25 fps (``gop``: a keyframe every ``gop`` frames; ``audio``: an encoder
    for a tone as long as the video, as ``make_video``)."""
    import cv2

    files = sorted((shared_data / "davis" / "parkour" / "frames").glob("*.jpg"))[:frames]
    with av.open(str(dst), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 428, 240, "yuv420p"
        # the same bytes on every machine: x264's output depends on its thread count, which
        # follows the CPUs the process may use (ray.init changed it once); and near-source
        # quality, as the default CRF 23 moved u2netp's matte of frame 5 from 0.84 to 0.40 IoU
        stream.codec_context.thread_count = 1
        stream.options = {"crf": "18"}
        if gop is not None:
            stream.codec_context.gop_size = gop
        tone = container.add_stream(audio, rate=44100) if audio else None
        if tone is not None:
            tone.layout = "mono"
        for i, path in enumerate(files):
            bgr = cv2.resize(imread(path, cv2.IMREAD_COLOR), (428, 240),
                             interpolation=cv2.INTER_AREA)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb, np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if tone is not None:
            write_tone(container, tone, Fraction(len(files), 25))
    return dst
