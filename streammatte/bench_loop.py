"""The yardstick of ``streammatte bench``: the loop a rembg user writes for video, as its own
process: PyAV decode → the same ONNX file per frame through ONNX Runtime, exactly as
``rembg.remove`` runs U²-Net (LANCZOS resize to the model's size, max-scaling and ImageNet
normalisation, min/max rescaling of the prediction, LANCZOS back to frame size, cut-out) →
composite over white → libx264 CRF 18.

    python -m streammatte.bench_loop IN.mp4 OUT.mp4 --model ~/.cache/streammatte/models/u2netp.onnx

It imports nothing from streammatte (only av, numpy, Pillow, onnxruntime), so its time is what
that loop costs, not what this project's code costs. rembg itself is not needed: the steps
are rembg 2.0's ``U2netSession.predict`` and ``naive_cutout``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def run_loop(src: Path, dst: Path, model: Path, crf: int = 18) -> int:
    """Matte ``src`` into ``dst`` frame by frame as the rembg loop does; returns the frames
    written."""
    import av
    import onnxruntime as ort
    from PIL import Image

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    size = (int(feed.shape[3]), int(feed.shape[2]))  # NCHW: (width, height)
    mean, std = np.array(MEAN), np.array(STD)
    frames = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream("libx264", rate=vin.average_rate or 25)
        vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, "yuv420p"
        vout.options = {"crf": str(crf)}
        white: Image.Image | None = None
        for frame in inp.decode(vin):
            img = frame.to_image().convert("RGB")
            small = np.array(img.resize(size, Image.Resampling.LANCZOS), np.float64)
            small /= max(float(small.max()), 1e-6)
            x = ((small - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
            pred = session.run(None, {feed.name: x})[0][:, 0, :, :]
            lo, hi = float(pred.min()), float(pred.max())
            pred = np.squeeze((pred - lo) / max(hi - lo, 1e-12))
            mask = Image.fromarray((pred * 255).astype(np.uint8), mode="L").resize(
                img.size, Image.Resampling.LANCZOS)
            cutout = Image.composite(img.convert("RGBA"),
                                     Image.new("RGBA", img.size, 0), mask)
            if white is None:
                white = Image.new("RGBA", img.size, (255, 255, 255, 255))
            composite = np.asarray(Image.alpha_composite(white, cutout).convert("RGB"))
            for packet in vout.encode(av.VideoFrame.from_ndarray(composite, format="rgb24")):
                out.mux(packet)
            frames += 1
        for packet in vout.encode(None):
            out.mux(packet)
    return frames


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streammatte.bench_loop",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--model", type=Path, required=True, help="the U²-Net ONNX file")
    parser.add_argument("--crf", type=int, default=18)
    args = parser.parse_args(argv)
    count = run_loop(args.input, args.output, args.model, args.crf)
    print(f"{count} frames", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
