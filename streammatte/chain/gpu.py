"""The all-GPU chain as pipeline stages: decode → [upload, preprocess, engine, alpha, EMA,
composite, download on one CUDA stream] → encode.

``Chain.stages`` takes this chain when its engine runs on device buffers (``backend="trt"`` or
``"onnxruntime-cuda"``: a :class:`~streammatte.cuda.runtime.DeviceEngine`) and everything asked
of the run has a GPU kernel; otherwise it keeps the host chain and says why in the run's notes
(``gpu_chain_blocker``), so a GPU user is never left guessing which path ran. The GPU stage
holds up to ``slots`` batches in flight (double buffering: frame N+1 uploads while frame N is
computed) and releases them in order, the last ones at end of stream through ``Stage.flush``.
The device runtime and kernels live below, in ``streammatte.cuda``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import numpy as np

from ..compose import Background, OutputMode, fit_cover, read_image_rgb
from ..cuda.runtime import CompositeMode, DeviceEngine, GpuMatter
from ..frames import FramePacket
from ..inference.base import Engine
from ..pipeline import Stage
from ..temporal import FixedEma, SceneCutDetector
from .host import encode_stage

#: temporal modes with a GPU kernel, and the EMA weight each one runs with (None: no smoothing)
GPU_TEMPORAL: dict[str, float | None] = {"none": None, "ema": FixedEma().new_weight}

#: background kinds the composite kernel draws (blur and video backgrounds are host-only)
GPU_BACKGROUNDS = ("transparent", "colour", "image")


def runs_on_device_buffers(engine: Engine) -> bool:
    """True for engines that can run on device pointers on their own CUDA stream."""
    return isinstance(engine, DeviceEngine)


def gpu_chain_blocker(engine: Engine, *, temporal: str, own_temporal: bool,
                      background: Background, output: OutputMode | None, upsample: str,
                      rembg_compat: bool, want_alpha: bool) -> str | None:
    """Why a run on a device-buffer engine cannot take the all-GPU chain, or None if it can."""
    if own_temporal:
        return "the caller's own temporal filter (live load shedding) runs on the CPU"
    if output is None or want_alpha:
        return ("the run needs the alpha itself, which the GPU chain keeps on the device (it "
                "hands back only the composite or the matte)")
    if temporal.lower() not in GPU_TEMPORAL:
        return (f"temporal mode {temporal!r} runs on the CPU (the GPU chain has "
                f"{', '.join(GPU_TEMPORAL)}; pass --temporal ema to stay on the GPU)")
    if background.kind not in GPU_BACKGROUNDS:
        return (f"a {background.kind} background is composed on the CPU (the GPU chain draws "
                "transparent, colour and image backgrounds)")
    if upsample != "bilinear":
        return f"{upsample} upsampling runs on the CPU"
    if rembg_compat:
        return "--rembg-compat (Lanczos resize, per-image max) runs on the CPU"
    if engine.input_spec.layout not in ("nchw", "nhwc"):
        return f"input layout {engine.input_spec.layout!r} has no GPU preprocess kernel"
    return None


def composite_mode(output: OutputMode, background: Background) -> CompositeMode:
    """The kernel's composite mode for a host ``Compositor`` mode and background."""
    if output == "rgba" and background.is_transparent:
        return "cutout"
    return output


def _model_size(engine: Any, batch: int) -> tuple[int, int]:
    """(width, height) of the model input, from the engine's own input shape."""
    shape = engine.input_shape(batch)
    if engine.input_spec.layout == "nchw":
        _, _, h, w = shape
    else:
        _, h, w, _ = shape
    return int(w), int(h)


def gpu_stages(engine: Engine, *, temporal: str, background: Background, output: OutputMode,
               batch_size: int, write: Callable[[FramePacket], None] | None,
               capture_alpha: int = 0) -> tuple[list[Stage], Callable[[], None]]:
    """The GPU stage (it fills ``packet.output``) and the writer when there is one, and a
    ``close`` that frees the GPU buffers.

    The GpuMatter is made on the first batch, once the frame size is known. The first
    ``capture_alpha`` frames also get ``packet.alpha``, downloaded from the device (the
    self-check reads it).
    """
    device: Any = engine
    batch = max(1, min(batch_size, engine.max_batch))
    ema_weight = GPU_TEMPORAL[temporal.lower()]
    cuts = SceneCutDetector()
    waiting: collections.deque[FramePacket] = collections.deque()
    holder: list[GpuMatter] = []

    def matter_for(frame: np.ndarray) -> GpuMatter:
        if not holder:
            h, w = frame.shape[:2]
            image = None
            if background.kind == "image":
                assert background.path is not None
                image = fit_cover(read_image_rgb(background.path), (w, h))
            holder.append(GpuMatter(
                device, frame_size=(w, h), input_size=_model_size(device, batch),
                mean=engine.input_spec.mean, std=engine.input_spec.std,
                layout=engine.input_spec.layout, channel=engine.output_spec.channel,
                sigmoid=engine.output_spec.activation == "sigmoid",
                mode=composite_mode(output, background), colour=background.colour,
                background_image=image, ema_weight=ema_weight, batch=batch))
            holder[0].capture_alpha(capture_alpha)
        return holder[0]

    def release(outputs: list[np.ndarray]) -> list[FramePacket]:
        done = []
        for image in outputs:
            packet = waiting.popleft()
            packet.output = image
            if holder and holder[0].alphas:
                packet.alpha = holder[0].alphas.popleft()
            done.append(packet)
        return done

    def run_on_gpu(packets: list[FramePacket]) -> list[FramePacket]:
        matter = matter_for(packets[0].image)
        # the EMA never averages across a scene cut, as on the host
        if ema_weight is not None and any([cuts(p.image) for p in packets]):
            matter.reset()
        waiting.extend(packets)
        return release(matter.submit([p.image for p in packets]))

    def flush() -> list[FramePacket]:
        return release(holder[0].flush()) if holder else []

    def close() -> None:
        for matter in holder:
            matter.close()

    stages = [Stage("gpu", run_on_gpu, batch_size=batch, flush=flush)]
    if write is not None:
        stages.append(encode_stage(write))
    return stages, close
