"""Where the GPU self-check's tolerance comes from: how far a working FP16 GPU moves the alpha,
and how far broken chains move it, on real frames. Runs on the CPU. Prints a markdown table.

    python benchmarks/selfcheck_tolerance.py                      # u2netp, every 10th frame
    python benchmarks/selfcheck_tolerance.py --models u2netp,modnet,u2net --step 10

"fp16" is the model converted to FP16 weights and activations (ONNX Runtime's
``convert_float_to_float16``, inputs and outputs kept FP32) run on ONNX Runtime's CPU provider,
which inserts casts around the ops it has no FP16 kernel for: every activation is rounded to
FP16 between ops, as a TensorRT FP16 engine stores them, though TensorRT fuses some ops and
picks its own kernels, so a real GPU can differ from this. The faults are what a broken GPU
chain could plausibly do: channels in BGR order, no mean/std normalisation, an inverted or
empty or mirrored matte, a matte shifted by one or two pixels.

For each variant, against the FP32 model's alpha on the same frame: the median and worst mean
|Δα|, the worst share of pixels off by more than 32/255, the worst single pixel, and how many
frames pass the self-check's tolerance (streammatte.cuda.selfcheck).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streammatte.chain import Matter
from streammatte.cuda.selfcheck import FAR_LEVELS, compare_alphas
from streammatte.inference.ort import OrtEngine
from streammatte.models.catalog import get_spec
from streammatte.models.store import ModelStore

SEQUENCES = ("parkour", "dog", "car-shadow", "blackswan", "kite-surf", "soapbox")


def fp16_copy(model: Path, work: Path) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out = work / f"{model.stem}-fp16.onnx"
    onnx.save(convert_float_to_float16(onnx.load(str(model)), keep_io_types=True), str(out))
    return out


def variants(fp32: Matter, fp16: Matter
             ) -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """Each variant's alpha from (frame, the FP32 model's alpha of it)."""
    spec = fp32.engine.input_spec
    mean = np.asarray(spec.mean, np.float32)[:, None, None]
    std = np.asarray(spec.std, np.float32)[:, None, None]

    def unnormalised(img: np.ndarray, _: np.ndarray) -> np.ndarray:
        x = fp32.preprocess(img)
        raw = fp32.infer([(x * std + mean).astype(np.float32)])[0]
        return fp32.to_alpha(raw, img)

    return {
        "fp16 (a working GPU)": lambda img, _: fp16.alpha(img),
        "BGR order": lambda img, _: fp32.alpha(np.ascontiguousarray(img[..., ::-1])),
        "no normalisation": unnormalised,
        "inverted": lambda _, a: 1.0 - a,
        "empty": lambda _, a: np.zeros_like(a),
        "mirrored": lambda _, a: np.ascontiguousarray(a[:, ::-1]),
        "shifted 1 px": lambda _, a: np.roll(a, 1, axis=1),
        "shifted 2 px": lambda _, a: np.roll(a, 2, axis=(0, 1)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="u2netp")
    parser.add_argument("--davis", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared/data/davis")
    parser.add_argument("--step", type=int, default=10, help="every Nth frame of each sequence")
    args = parser.parse_args()
    frames = [f for seq in SEQUENCES
              for f in sorted((args.davis / seq / "frames").glob("*.jpg"))[::args.step]]
    if not frames:
        print(f"no DAVIS frames under {args.davis}", file=sys.stderr)
        return 2
    print(f"{len(frames)} DAVIS frames (every {args.step}th of {', '.join(SEQUENCES)}), native "
          "854×480\n")
    print(f"| model | variant | mean \\|Δα\\| median / worst | worst share > {FAR_LEVELS}/255 "
          "| worst pixel | frames passing |\n|---|---|---|---|---|---|")
    for name in args.models.split(","):
        spec = get_spec(name)
        path = ModelStore().ensure(spec)
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = Matter(OrtEngine(spec, path, device="cpu"))
            fp16 = Matter(OrtEngine(spec, fp16_copy(path, Path(tmp)), device="cpu"))
            results: dict[str, list[tuple[float, float, float, bool]]] = {}
            for file in frames:
                bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise SystemExit(f"{file}: cannot read")
                img = np.ascontiguousarray(bgr[..., ::-1], np.uint8)
                reference = fp32.alpha(img)
                for label, run in variants(fp32, fp16).items():
                    c = compare_alphas(run(img, reference).astype(np.float32), reference)
                    results.setdefault(label, []).append(
                        (c.mean_levels, c.far_share, c.max_levels, c.ok))
        for label, rows in results.items():
            means = [r[0] for r in rows]
            print(f"| {name} | {label} | {np.median(means):.2f} / {max(means):.2f} | "
                  f"{100 * max(r[1] for r in rows):.2f} % | {max(r[2] for r in rows):.0f} | "
                  f"{sum(r[3] for r in rows)} of {len(rows)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
