"""ONNX Runtime on the CPU: INT8 (QDQ, static, calibrated on frames) variants of a catalog model
and session settings, measured.

    python benchmarks/ort_cpu.py build --engine u2netp            # INT8 variants into --out
    python benchmarks/ort_cpu.py speed --engine u2netp            # ms/inference, interleaved
    python benchmarks/ort_cpu.py quality --engine u2netp          # IoU on DAVIS vs fp32
    python benchmarks/ort_cpu.py settings --engine u2netp         # threads, optimisation, arena
    python benchmarks/ort_cpu.py overlap --engine u2netp          # engine and motion step at once

``build`` calibrates on frames that are not in the evaluation (``../shared/data/media``:
vtest.avi and tree.avi, every ``--every``-th frame) and writes one model per variant to ``--out``
(default /tmp/streammatte-int8). ``speed`` times each variant and the fp32 model in
interleaved rounds (median ms per inference, batch 1, ORT CPU, ``--threads``). ``quality``
runs each variant over the six DAVIS sequences and prints, per sequence, the IoU of its
per-frame output against the ground truth next to the fp32 model's (cached by
temporal_harness.py), and the mean absolute difference between the two alphas.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streammatte.evaluate import find_clips, read_frame
from streammatte.frames import RGBImage

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "media"
DAVIS = MEDIA.parent / "davis"
CLIPS = ("parkour", "car-shadow", "blackswan", "dog", "kite-surf", "soapbox")
OUT = Path("/tmp/streammatte-int8")

#: variant name → quantize_static keyword options
VARIANTS: dict[str, dict[str, object]] = {
    "qdq-u8s8-pc": {"per_channel": True, "activation": "QUInt8", "weight": "QInt8"},
    "qdq-u8s8-pc-rr": {"per_channel": True, "activation": "QUInt8", "weight": "QInt8",
                       "reduce_range": True},
    "qdq-s8s8-pc": {"per_channel": True, "activation": "QInt8", "weight": "QInt8"},
    "qdq-u8u8": {"per_channel": False, "activation": "QUInt8", "weight": "QUInt8"},
    # the side outputs' 1-channel convolutions (their logits) stay float
    "qdq-u8s8-pc-nohead": {"per_channel": True, "activation": "QUInt8", "weight": "QInt8",
                           "exclude_heads": True},
    # ranges from a histogram, outliers clipped (the decoder's concatenations mix 0–48 and
    # 0–5 ranges under one scale with MinMax)
    "qdq-u8s8-pc-pct": {"per_channel": True, "activation": "QUInt8", "weight": "QInt8",
                        "calibration": "Percentile"},
    "qdq-u8s8-pc-ent": {"per_channel": True, "activation": "QUInt8", "weight": "QInt8",
                        "calibration": "Entropy"},
    # only the convolutions (where the time goes); the rest stays float
    "qdq-u8s8-pc-conv": {"per_channel": True, "activation": "QUInt8", "weight": "QInt8",
                         "ops": ["Conv"]},
    "qdq-u8s8-conv": {"per_channel": False, "activation": "QUInt8", "weight": "QInt8",
                      "ops": ["Conv"]},
}


def calibration_frames(every: int) -> list[RGBImage]:
    from streammatte.sources.file import FileSource

    frames: list[RGBImage] = []
    for name in ("vtest.avi", "tree.avi"):
        with FileSource(MEDIA / name) as source:
            for i, packet in enumerate(source):
                if i % every == 0:
                    frames.append(packet.image)
    return frames


def model_path(engine: str) -> Path:
    return Path.home() / ".cache" / "streammatte" / "models" / f"{engine}.onnx"


def build(engine: str, out: Path, variants: list[str], every: int) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from streammatte.inference import open_engine
    from streammatte.preprocess import Preprocessor

    eng = open_engine(engine, device="cpu")
    pre = Preprocessor(eng.input_spec)
    input_name = eng.input_spec.name or next(iter(eng.inputs))
    eng.close()
    samples = [pre(f)[None] for f in calibration_frames(every)]
    print(f"{len(samples)} calibration frames", flush=True)

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter(samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            s = next(self._it, None)
            return None if s is None else {input_name: s}

    out.mkdir(parents=True, exist_ok=True)
    prepped = out / f"{engine}-prep.onnx"
    import onnx
    from onnx import version_converter

    # per-channel DequantizeLinear (its axis attribute) needs opset 13; the models ship opset 11
    model = onnx.load(str(model_path(engine)))
    if model.opset_import[0].version < 13:
        model = version_converter.convert_version(model, 13)
    upgraded = out / f"{engine}-opset13.onnx"
    onnx.save(model, str(upgraded))
    quant_pre_process(str(upgraded), str(prepped), skip_symbolic_shape=True)
    inits = {i.name: i for i in model.graph.initializer}
    heads = [n.name for n in onnx.load(str(prepped)).graph.node
             if n.op_type == "Conv" and n.input[1] in inits and inits[n.input[1]].dims[0] == 1]
    for name in variants:
        opts = VARIANTS[name]
        start = time.perf_counter()
        quantize_static(str(prepped), str(out / f"{engine}-{name}.onnx"), Reader(),
                        quant_format=QuantFormat.QDQ,
                        per_channel=bool(opts["per_channel"]),
                        reduce_range=bool(opts.get("reduce_range", False)),
                        activation_type=getattr(QuantType, str(opts["activation"])),
                        weight_type=getattr(QuantType, str(opts["weight"])),
                        op_types_to_quantize=opts.get("ops"),
                        nodes_to_exclude=heads if opts.get("exclude_heads") else None,
                        calibrate_method=getattr(CalibrationMethod,
                                                 str(opts.get("calibration", "MinMax"))),
                        extra_options={"CalibPercentile": 99.99})
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)


def session(path: Path, threads: int, opt: str = "all", arena: bool = True,
            spinning: bool = False) -> object:
    """A CPU session; the defaults are OrtEngine's (all optimisations, no spinning)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[opt]
    so.enable_cpu_mem_arena = arena
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def speed(engine: str, out: Path, variants: list[str], threads: int, rounds: int,
          runs: int) -> None:
    files = {"fp32": model_path(engine)} | {v: out / f"{engine}-{v}.onnx" for v in variants}
    sessions = {k: session(p, threads) for k, p in files.items()}
    medians = _interleaved(sessions, rounds, runs)
    base = medians["fp32"]
    print(f"{engine}, {threads} thread(s), median of {rounds} interleaved rounds of {runs}\n")
    print("| variant | ms/inference | vs fp32 |\n|---|---|---|")
    for k, m in medians.items():
        print(f"| {k} | {m:.1f} | {m / base:.2f} |")


def _interleaved(sessions: dict[str, object], rounds: int, runs: int) -> dict[str, float]:
    """Median ms per inference of each session, rounds interleaved (one input, batch 1)."""
    first = next(iter(sessions.values()))
    inp = first.get_inputs()[0]  # type: ignore[attr-defined]
    shape = [1 if not isinstance(d, int) else d for d in inp.shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        s.run(None, {inp.name: x})  # type: ignore[attr-defined]
    for _ in range(rounds):
        for k, s in sessions.items():
            start = time.perf_counter()
            for _ in range(runs):
                s.run(None, {inp.name: x})  # type: ignore[attr-defined]
            times[k].append(1e3 * (time.perf_counter() - start) / runs)
    return {k: statistics.median(v) for k, v in times.items()}


def settings(engine: str, out: Path, variant: str | None, rounds: int, runs: int) -> None:
    path = model_path(engine) if variant is None else out / f"{engine}-{variant}.onnx"
    grid: dict[str, dict[str, object]] = {
        "2 threads, all, arena, no spin (OrtEngine)": {"threads": 2},
        "1 thread": {"threads": 1},
        "2 threads, spinning": {"threads": 2, "spinning": True},
        "2 threads, no arena": {"threads": 2, "arena": False},
        "2 threads, basic optimisation": {"threads": 2, "opt": "basic"},
        "2 threads, extended optimisation": {"threads": 2, "opt": "extended"},
        "2 threads, no optimisation": {"threads": 2, "opt": "disable"},
    }
    sessions = {k: session(path, **v) for k, v in grid.items()}  # type: ignore[arg-type]
    med = _interleaved(sessions, rounds, runs)
    base = next(iter(med.values()))
    print(f"{path.name}, median of {rounds} interleaved rounds of {runs}\n")
    print("| session | ms/inference | vs OrtEngine's |\n|---|---|---|")
    for k, m in med.items():
        print(f"| {k} | {m:.1f} | {m / base:.2f} |")


def overlap(engine: str, rounds: int, frames: int) -> None:
    """The engine and the keyframe motion step in two threads at once, as a chain runs them on
    2 cores: wall time for ``frames`` of each, ORT with 1 or 2 intra-op threads, interleaved."""
    import threading

    import cv2

    from streammatte.evaluate import list_images
    from streammatte.keyframes import FILE_PRESET, MotionStep

    files = list_images(DAVIS / "car-shadow" / "frames")[:frames]
    images = [np.asarray(cv2.resize(read_frame(f), (960, 540)), np.uint8) for f in files]
    sessions = {n: session(model_path(engine), n) for n in (1, 2)}
    inp = sessions[1].get_inputs()[0]  # type: ignore[attr-defined]
    x = np.random.default_rng(0).standard_normal(
        [1 if not isinstance(d, int) else d for d in inp.shape]).astype(np.float32)

    def infer(s: object) -> None:
        for _ in images:
            s.run(None, {inp.name: x})  # type: ignore[attr-defined]

    def motion() -> None:
        step = MotionStep(FILE_PRESET)
        for image in images:
            step(image)

    times: dict[str, list[float]] = {}
    for _ in range(rounds):
        for n, s in sessions.items():
            for name, with_motion in ((f"engine alone, {n} thread(s)", False),
                                      (f"engine ({n} thread(s)) + motion step", True)):
                threads = [threading.Thread(target=infer, args=(s,))]
                if with_motion:
                    threads.append(threading.Thread(target=motion))
                start = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                times.setdefault(name, []).append(1e3 * (time.perf_counter() - start)
                                                  / len(images))
        start = time.perf_counter()
        motion()
        times.setdefault("motion step alone", []).append(
            1e3 * (time.perf_counter() - start) / len(images))
    print(f"{engine}, 960×540 car-shadow, {len(images)} frames, median of {rounds} rounds\n")
    print("| run | ms/frame |\n|---|---|")
    for k, v in times.items():
        print(f"| {k} | {statistics.median(v):.1f} |")


def quality(engine: str, out: Path, variants: list[str]) -> None:
    import cv2

    from streammatte import metrics as M
    from streammatte.evaluate import read_mask
    from streammatte.inference.ort import OrtEngine
    from streammatte.models.catalog import load_catalog
    from streammatte.postprocess import Postprocessor
    from streammatte.preprocess import Preprocessor

    spec = load_catalog()[engine]
    # the variants are not the catalog's file: opened without the checksum check
    engines = {"fp32": OrtEngine(spec, model_path(engine), device="cpu")} | {
        v: OrtEngine(spec, out / f"{engine}-{v}.onnx", device="cpu") for v in variants}
    pre, post = Preprocessor(spec.input), Postprocessor(spec.output)
    rows = []
    for clip_name in CLIPS:
        (clip,) = find_clips(DAVIS / clip_name)
        files = clip.frame_files()
        masks = clip.mask_files([p.name for p in files or []])
        assert files is not None and masks is not None
        ious: dict[str, list[float]] = {k: [] for k in engines}
        diffs: dict[str, list[float]] = {k: [] for k in engines}
        for f, mask in zip(files, masks, strict=True):
            frame, truth = read_frame(f), read_mask(mask)
            size = (frame.shape[1], frame.shape[0])
            x = pre(frame)[None]
            lows = {k: post(np.array(e.infer(x)[0]), None) for k, e in engines.items()}
            for k, low in lows.items():
                ious[k].append(M.iou(cv2.resize(low, size, interpolation=cv2.INTER_LINEAR),
                                     truth))
                diffs[k].append(float(np.abs(low - lows["fp32"]).mean()))
        base = float(np.mean(ious["fp32"]))
        for v in variants:
            rows.append((v, clip_name, base, float(np.mean(ious[v])), float(np.mean(diffs[v]))))
            print(rows[-1], file=sys.stderr, flush=True)
    for e in engines.values():
        e.close()
    print("| variant | clip | IoU fp32 | IoU int8 | ΔIoU | mean |Δα| |\n|---|---|---|---|---|---|")
    for v, c, r, q, d in rows:
        print(f"| {v} | {c} | {r:.4f} | {q:.4f} | {q - r:+.4f} | {d:.4f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command",
                        choices=("build", "speed", "quality", "settings", "overlap"))
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--every", type=int, default=25, help="calibrate on every N-th frame")
    parser.add_argument("--engine", default="u2netp")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    variants = args.variants.split(",")
    if args.command == "build":
        build(args.engine, args.out, variants, args.every)
    elif args.command == "speed":
        speed(args.engine, args.out, variants, args.threads, args.rounds, args.runs)
    elif args.command == "overlap":
        overlap(args.engine, args.rounds, args.frames)
    elif args.command == "settings":
        settings(args.engine, args.out, None if args.variants == "fp32" else variants[0],
                 args.rounds, args.runs)
    else:
        quality(args.engine, args.out, variants)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
