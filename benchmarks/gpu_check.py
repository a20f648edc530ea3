"""Verify and measure the GPU path on a machine with an NVIDIA GPU. Prints a markdown table.

    python benchmarks/gpu_check.py --models-dir /tmp/smc                # everything
    python benchmarks/gpu_check.py --only kernels                        # kernels vs numpy twins
    python benchmarks/gpu_check.py --only copies --only overlap --backend onnxruntime-cuda

Checks, in order:

- ``kernels``: every CUDA kernel (compiled by pycuda) against its numpy twin in
  streammatte.cuda.reference; alpha max abs diff must be <= 1/255, composites bit-exact.
- ``copies``: host→device and device→host GB/s from pinned vs pageable memory (64 MiB).
- ``overlap``: GpuMatter frames/s on 1080p with double buffering (upload stream) vs one stream.
- ``fps``: engine-only fps (``enqueue`` in a loop) vs end-to-end fps (decode a 1080p video →
  GPU chain → encode, through ``matte_video`` itself) for u2netp and u2net; the issue's
  target is end-to-end/engine >= 0.9.
- ``selfcheck``: the GPU chain's self-check as users get it (``matte_video`` with
  ``--backend`` named, 30 frames of 1080p), on the all-GPU chain and on the host chain around
  the GPU engine (the default temporal mode), with what it compared and, for the host chain,
  what the host stages cost against the engine.

Needs pycuda and either TensorRT (``--backend trt``) or onnxruntime-gpu
(``--backend onnxruntime-cuda``). Nothing here is run by CI.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streammatte.cuda import kernels as K
from streammatte.cuda import reference as ref
from streammatte.errors import StreamMatteError

ALPHA_TOL = 1.0 / 255.0
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class Row:
    check: str
    value: str
    verdict: str


def _gpu() -> tuple[Any, Any]:
    from streammatte.cuda.runtime import CudaContext, import_pycuda

    return import_pycuda(), CudaContext(0)


def check_kernels(cuda: Any, ctx: Any) -> list[Row]:
    from streammatte.cuda.runtime import compile_kernels

    rows: list[Row] = []
    k = compile_kernels(ctx)
    rng = np.random.default_rng(0)
    with ctx.active():
        stream = cuda.Stream()

        def run(name: str, launch: K.Launch, *args: Any) -> None:
            k[name].prepared_async_call(launch.grid, launch.block, stream, *args)
            stream.synchronize()

        for (w, h), (dw, dh) in (((1920, 1080), (320, 320)), ((64, 48), (320, 320))):
            frames = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
            for dtype, suffix in (("float32", "f32"), ("float16", "f16")):
                out = np.zeros((2, 3, dh, dw), dtype)
                d_in, d_out = cuda.to_device(frames), cuda.mem_alloc(out.nbytes)
                s = (1.0 / (255.0 * np.asarray(STD, np.float32))).astype(np.float32)
                o = -np.asarray(MEAN, np.float32) / np.asarray(STD, np.float32)
                run(f"sm_preprocess_{suffix}", K.launch_2d(dw, dh, 2), d_in, w, h, 3 * w, 3,
                    h * w * 3, d_out, dw, dh, 3 * dw * dh, 1, 1, *map(float, s), *map(float, o))
                cuda.memcpy_dtoh(out, d_out)
                expected = ref.preprocess(frames, (dw, dh), mean=MEAN, std=STD,
                                          dtype=dtype)  # type: ignore[arg-type]
                diff = float(np.abs(out.astype(np.float32) - expected.astype(np.float32)).max())
                one_level = 1.0 / (255.0 * min(STD)) + (1e-2 if dtype == "float16" else 1e-5)
                rows.append(Row(f"preprocess {suffix} {w}×{h}→{dw}×{dh}", f"max diff {diff:.2e}",
                                "ok" if diff <= one_level else "FAIL"))
        raw = rng.normal(0.4, 2.0, (2, 1, 320, 320)).astype(np.float32)
        for sigmoid in (0, 1):
            alpha = np.zeros((2, 1080, 1920), np.float32)
            d_raw, d_alpha = cuda.to_device(raw), cuda.mem_alloc(alpha.nbytes)
            run("sm_alpha_f32", K.launch_2d(1920, 1080, 2), d_raw, 320, 320, 320 * 320,
                sigmoid, d_alpha, 1920, 1080, 1920 * 1080)
            cuda.memcpy_dtoh(alpha, d_alpha)
            expected_alpha = ref.alpha_resize(raw[:, 0], (1920, 1080), sigmoid=bool(sigmoid))
            diff = float(np.abs(alpha - expected_alpha).max())
            rows.append(Row(f"alpha upsample 320²→1080p sigmoid={sigmoid}",
                            f"max diff {diff:.2e}", "ok" if diff <= ALPHA_TOL else "FAIL"))
        seq = rng.random((3, 1080 * 1920), dtype=np.float32)
        d_state = cuda.mem_alloc(seq[0].nbytes)
        state = None
        worst = 0.0
        for i, a in enumerate(seq):
            d_a = cuda.to_device(a)
            run("sm_ema", K.launch_1d(a.size), d_state, d_a, 0.4, int(i == 0), a.size)
            got = cuda.from_device(d_a, a.shape, np.float32)
            state = ref.ema(state, a, 0.4)
            worst = max(worst, float(np.abs(got - state).max()))
        rows.append(Row("temporal EMA (3 frames)", f"max diff {worst:.2e}",
                        "ok" if worst == 0.0 else "FAIL"))
        frames = rng.integers(0, 256, (2, 1080, 1920, 3), dtype=np.uint8)
        bg = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
        alphas = rng.random((2, 1080, 1920), dtype=np.float32)
        for mode, channels in K.COMPOSITE_CHANNELS.items():
            out8 = np.zeros((2, 1080, 1920, channels), np.uint8)
            d_out8 = cuda.mem_alloc(out8.nbytes)
            run("sm_composite", K.launch_2d(1920, 1080, 2), cuda.to_device(frames),
                cuda.to_device(alphas), cuda.to_device(bg), 1, 0, 177, 64, d_out8, 1920, 1080,
                K.COMPOSITE_MODES[mode], 1080 * 1920 * 3, 1080 * 1920, 1080 * 1920 * channels)
            cuda.memcpy_dtoh(out8, d_out8)
            expected8 = ref.composite(frames, alphas, mode=mode, background=bg)  # type: ignore[arg-type]
            mismatched = int((out8.reshape(expected8.shape) != expected8).sum())
            rows.append(Row(f"composite {mode} 1080p", f"{mismatched} values differ",
                            "ok" if mismatched == 0 else "FAIL"))
    return rows


def _gbps(cuda: Any, stream: Any, host: np.ndarray, device: Any, upload: bool,
          repeats: int = 20) -> float:
    copy = cuda.memcpy_htod_async if upload else cuda.memcpy_dtoh_async
    args: Callable[[], tuple[Any, Any]] = (lambda: (device, host)) if upload else (
        lambda: (host, device))
    copy(*args(), stream)
    stream.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        copy(*args(), stream)
    stream.synchronize()
    return repeats * host.nbytes / (time.perf_counter() - start) / 1e9


def check_copies(cuda: Any, ctx: Any) -> list[Row]:
    nbytes = 64 << 20
    rows = []
    with ctx.active():
        stream = cuda.Stream()
        device = cuda.mem_alloc(nbytes)
        pinned = cuda.pagelocked_empty(nbytes, np.uint8)
        pageable = np.empty(nbytes, np.uint8)
        for upload in (True, False):
            direction = "H2D" if upload else "D2H"
            fast = _gbps(cuda, stream, pinned, device, upload)
            # pycuda stages a pageable async copy synchronously: what a naive loop would get
            slow = _gbps(cuda, stream, pageable, device, upload)
            rows.append(Row(f"{direction} 64 MiB pinned vs pageable",
                            f"{fast:.1f} vs {slow:.1f} GB/s ({fast / slow:.1f}×)", "measured"))
    return rows


def _open_engine(backend: str, name: str, models_dir: Path | None, batch: int) -> Any:
    from streammatte.inference import open_engine

    if backend == "trt":
        from streammatte.inference import resolve_model
        from streammatte.inference.trt import TrtEngine
        from streammatte.models.catalog import get_spec

        spec = get_spec(name)
        return TrtEngine(spec, resolve_model(spec, models_dir=models_dir), batch=batch)
    return open_engine(name, models_dir=models_dir, backend=backend)


def _matter(engine: Any, overlap: bool, batch: int = 1) -> Any:
    from streammatte.cuda.runtime import GpuMatter

    spec = engine.input_spec
    return GpuMatter(engine, frame_size=(1920, 1080), input_size=spec.size, mean=spec.mean,
                     std=spec.std, layout=spec.layout, mode="rgb", colour=(0, 177, 64),
                     ema_weight=0.4, batch=batch, overlap=overlap)


def check_overlap(engine: Any, frames: int = 200) -> list[Row]:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8) for _ in range(4)]
    fps = {}
    for overlap in (False, True):
        with _matter(engine, overlap) as matter:
            for image in images:
                matter.process([image])
            start = time.perf_counter()
            done = 0
            for i in range(frames):
                done += len(matter.submit([images[i % len(images)]]))
            done += len(matter.flush())
            fps[overlap] = done / (time.perf_counter() - start)
    gain = fps[True] / fps[False]
    return [Row(f"double buffering, {engine.name} 1080p ({engine.provider})",
                f"{fps[False]:.1f} → {fps[True]:.1f} fps ({gain:.2f}×)", "measured")]


def _make_video(path: Path, frames: int) -> None:
    import av

    rng = np.random.default_rng(2)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        stream.time_base = Fraction(1, 30)
        base = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 8 * i, axis=1), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def check_fps(engine: Any, video: Path, frames: int) -> list[Row]:
    from streammatte.api import matte_video
    from streammatte.cuda.runtime import alloc_device

    with engine.context.active():
        d_in = alloc_device(engine.context, int(np.prod(engine.input_shape(1))) * 4, "bench")
        d_out = alloc_device(engine.context, int(np.prod(engine.output_shape(1))) * 4, "bench")
        for _ in range(10):
            engine.enqueue(d_in, d_out, 1)
        engine.stream.synchronize()
        start = time.perf_counter()
        for _ in range(frames):
            engine.enqueue(d_in, d_out, 1)
        engine.stream.synchronize()
        engine_fps = frames / (time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        # the product path: matte_video takes the all-GPU chain for a device-buffer engine
        report = matte_video(video, Path(tmp) / "out.mp4", engine=engine, temporal="ema",
                             background="#00b140")
    if not any("all-GPU chain" in note for note in report.notes):
        raise SystemExit(f"matte_video did not take the GPU chain: {report.notes}")
    stats = report.stats
    ratio = stats.fps / engine_fps
    return [Row(f"{engine.name} engine-only 1080p ({engine.provider})", f"{engine_fps:.1f} fps",
                "measured"),
            Row(f"{engine.name} end-to-end 1080p decode→GPU→x264 ({stats.frames_out} frames)",
                f"{stats.fps:.1f} fps = {ratio:.2f} of engine-only",
                "ok" if ratio >= 0.9 else "below 0.9 target")]


def check_selfcheck(backend: str, name: str, models_dir: Path | None, video: Path
                    ) -> list[Row]:
    """The product path's self-check on this GPU: ``matte_video`` with ``backend`` named
    (so a failure raises instead of falling back), once on the all-GPU chain (``--temporal
    ema``) and once on the host chain around the GPU engine (the default temporal mode), with
    the run notes: what was compared, and what the host stages cost beside the engine. The
    record goes to a temporary cache, so the comparison is always made."""
    from streammatte.api import matte_video
    from streammatte.config import MatteConfig
    from streammatte.errors import GpuCheckError
    from streammatte.inference import resolve_model
    from streammatte.models.catalog import get_spec

    model = resolve_model(get_spec(name), models_dir=models_dir)
    rows = []
    for temporal in ("ema", MatteConfig().temporal):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                report = matte_video(video, Path(tmp) / "out.mp4", engine=name,
                                     model_file=model, models_dir=Path(tmp), backend=backend,
                                     temporal=temporal, background="#00b140")
            except GpuCheckError as exc:
                rows.append(Row(f"{name} self-check, --temporal {temporal}", str(exc), "FAIL"))
                continue
        notes = [n for n in report.notes if "self-check" in n or "host stages" in n]
        chain = "all-GPU chain" if any("all-GPU chain" in n for n in report.notes) else (
            "host chain")
        rows.append(Row(f"{name} self-check, --temporal {temporal} ({chain}, "
                        f"{report.frames_out} frames, {report.fps:.1f} fps)",
                        " / ".join(notes), "ok" if report.frames_out else "FAIL"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append",
                        choices=["kernels", "copies", "overlap", "fps", "selfcheck"])
    parser.add_argument("--backend", default="trt", choices=["trt", "onnxruntime-cuda"])
    parser.add_argument("--models", default="u2netp,u2net")
    parser.add_argument("--models-dir", type=Path)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    only = set(args.only or ["kernels", "copies", "overlap", "fps", "selfcheck"])
    try:
        cuda, ctx = _gpu()
    except StreamMatteError as exc:
        print(f"gpu_check: cannot run here: {exc}", file=sys.stderr)
        return 2
    rows = [Row("device", f"{ctx.name} (sm_{ctx.compute_capability[0]}"
                f"{ctx.compute_capability[1]}, {ctx.total_memory >> 30} GiB)", "")]
    if "kernels" in only:
        rows += check_kernels(cuda, ctx)
    if "copies" in only:
        rows += check_copies(cuda, ctx)
    if only & {"overlap", "fps", "selfcheck"}:
        with tempfile.TemporaryDirectory() as tmp:
            video = Path(tmp) / "1080p.mp4"
            short = Path(tmp) / "1080p-short.mp4"
            if "fps" in only:
                _make_video(video, args.frames)
            if "selfcheck" in only:
                _make_video(short, 30)
            for name in args.models.split(","):
                if only & {"overlap", "fps"}:
                    engine = _open_engine(args.backend, name, args.models_dir, 1)
                    try:
                        if "overlap" in only:
                            rows += check_overlap(engine)
                        if "fps" in only:
                            rows += check_fps(engine, video, args.frames)
                    finally:
                        engine.close()
                if "selfcheck" in only:
                    rows += check_selfcheck(args.backend, name, args.models_dir, short)
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=1))
    else:
        print("| check | value | verdict |\n|---|---|---|")
        for r in rows:
            print(f"| {r.check} | {r.value} | {r.verdict} |")
    return 1 if any(r.verdict == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
