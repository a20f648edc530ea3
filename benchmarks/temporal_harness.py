"""Fast experiments on temporal filters: each engine's output cached once per clip, then any
filter scored on it in seconds, exactly as ``streammatte compare`` scores it.

    python benchmarks/temporal_harness.py cache --engines u2netp,u2net,modnet
    python benchmarks/temporal_harness.py score -t none,bidirectional,keyframes
    python benchmarks/temporal_harness.py score -t keyframes --engine u2net --clips dog,soapbox

``cache`` runs the engine on every frame of every clip (the six DAVIS sequences in
../shared/data/davis by default, ``--data`` for others) and keeps its output at the model's
own resolution (``~/.cache/streammatte/harness/ENGINE/CLIP.npy``, float16): what the
pipeline's postprocessor returns before it upsamples. ``alphas()`` upsamples it to frame size
as ``streammatte compare`` does with its default (bilinear) upsampling, so ``none`` here scores
what compare scores. Cache keys include the model file's sha256; a changed model is re-run.

``score`` drives each filter through push/flush (a keyframe mode uses only its keyframes'
engine alphas), then prints, per clip, IoU and dtSSD (means over
frames, ``metrics.iou`` / ``metrics.dtssd``), the change against per-frame output, the share
of frames that ran the engine and the filter's own ms/frame.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streammatte import metrics as M
from streammatte.evaluate import find_clips, read_frame, read_mask
from streammatte.frames import Alpha, RGBImage

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis"
CACHE = Path.home() / ".cache" / "streammatte" / "harness"
CLIPS = ("parkour", "car-shadow", "blackswan", "dog", "kite-surf", "soapbox")


@dataclass(slots=True)
class ClipData:
    name: str
    frames: list[RGBImage]
    truths: list[Alpha]
    low: np.ndarray  # the engine's output at its own resolution, N×h×w float16

    def alphas(self) -> list[Alpha]:
        """The engine's alpha at frame size, per frame (bilinear, as compare's default)."""
        h, w = self.frames[0].shape[:2]
        return [np.asarray(cv2.resize(a.astype(np.float32), (w, h),
                                      interpolation=cv2.INTER_LINEAR), np.float32)
                for a in self.low]


def _model_key(engine: str, models_dir: Path | None) -> str:
    from streammatte.models.catalog import load_catalog

    catalog = load_catalog()
    if engine not in catalog:
        return engine  # a builtin: no model file
    folder = models_dir or Path.home() / ".cache" / "streammatte" / "models"
    files = sorted(folder.glob(f"{engine}.*"))
    digest = hashlib.sha256()
    for f in files:
        if f.suffix != ".sha256":
            digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


def cache_path(engine: str, clip: str) -> Path:
    return CACHE / engine / f"{clip}.npy"


def build_cache(engine_name: str, data: Path, clips: Sequence[str],
                models_dir: Path | None = None, model_file: Path | None = None) -> None:
    from streammatte.inference import open_engine
    from streammatte.postprocess import Postprocessor
    from streammatte.preprocess import Preprocessor

    key = _model_key(engine_name, models_dir) if model_file is None else \
        hashlib.sha256(model_file.read_bytes()).hexdigest()[:12]
    engine = open_engine(engine_name, models_dir=models_dir, model_file=model_file,
                         device="cpu")
    try:
        pre, post = Preprocessor(engine.input_spec), Postprocessor(engine.output_spec)
        for clip in find_clips(data):
            if clip.name not in clips:
                continue
            out = cache_path(engine_name, clip.name)
            stamp = out.with_suffix(".key")
            if out.exists() and stamp.exists() and stamp.read_text() == key:
                continue
            files = clip.frame_files()
            assert files is not None
            lows, start = [], time.perf_counter()
            engine.reset()
            for p in files:
                raw = np.array(engine.infer(pre(read_frame(p))[None])[0])
                lows.append(post(raw, None).astype(np.float16))
            out.parent.mkdir(parents=True, exist_ok=True)
            np.save(out, np.stack(lows))
            stamp.write_text(key)
            print(f"{engine_name} {clip.name}: {len(files)} frames, "
                  f"{1e3 * (time.perf_counter() - start) / len(files):.0f} ms/frame",
                  flush=True)
    finally:
        engine.close()


def load_clip(engine: str, clip: str, data: Path = DATA) -> ClipData:
    (found,) = find_clips(data / clip)
    files = found.frame_files()
    assert files is not None and found.masks is not None
    masks = found.mask_files([p.name for p in files])
    assert masks is not None
    low = np.load(cache_path(engine, clip))
    if len(low) != len(files):
        raise SystemExit(f"{cache_path(engine, clip)}: {len(low)} alphas for {len(files)} "
                         "frames: re-run `cache`")
    return ClipData(clip, [read_frame(p) for p in files], [read_mask(p) for p in masks], low)


@dataclass(slots=True)
class Score:
    iou: float
    dtssd: float
    engine_share: float
    ms: float


#: a runner: (frames, engine alphas) → (outputs, how many frames ran the engine)
Runner = Callable[[list[RGBImage], list[Alpha]], tuple[list[Alpha], int]]


def run_streaming(mode: str) -> Runner:
    """A ``temporal.make_streaming`` mode: every frame runs the engine."""
    from streammatte.temporal import make_streaming

    def run(frames: list[RGBImage], alphas: list[Alpha]) -> tuple[list[Alpha], int]:
        f = make_streaming(mode)
        out: list[Alpha] = []
        for a, fr in zip(alphas, frames, strict=True):
            out += f.push(a, fr)
        out += f.flush()
        # a keyframe mode used the alphas of its keyframes only (a zero-lag one is wrapped)
        return out, int(getattr(getattr(f, "inner", f), "keyframes", len(frames)))
    return run


def run_keyframes(preset: str, **options: object) -> Runner:
    """A keyframe preset (``keyframes``, ``keyframes-live``) with some settings replaced:
    motion step, engine alphas of keyframes only, propagation."""
    import dataclasses

    from streammatte.keyframes import FILE_PRESET, LIVE_PRESET, run_offline

    base = {"keyframes": FILE_PRESET, "keyframes-live": LIVE_PRESET}[preset]
    cfg = dataclasses.replace(base, **options)  # type: ignore[arg-type]

    def run(frames: list[RGBImage], alphas: list[Alpha]) -> tuple[list[Alpha], int]:
        return run_offline(frames, lambda i: alphas[i], cfg)
    return run


def evaluate(runner: Runner, data: ClipData, alphas: list[Alpha]) -> Score:
    start = time.perf_counter()
    out, engine_frames = runner(data.frames, alphas)
    ms = 1e3 * (time.perf_counter() - start) / len(data.frames)
    if len(out) != len(data.frames):
        raise RuntimeError(f"{len(out)} outputs for {len(data.frames)} frames")
    i, d = M.iou_and_dtssd(out, data.truths)
    return Score(i, d, engine_frames / len(data.frames), ms)


def table(results: dict[str, dict[str, Score]], clips: Sequence[str]) -> str:
    base = results.get("none")
    lines = ["| mode | clip | IoU | ΔIoU | dtSSD | ΔdtSSD | engine | ms/frame |",
             "|---|---|---|---|---|---|---|---|"]
    for mode, per in results.items():
        for clip in [*clips, "mean"]:
            if clip == "mean":
                s = Score(*(statistics.mean(getattr(per[c], f) for c in clips)
                            for f in ("iou", "dtssd", "engine_share", "ms")))
                b = (Score(*(statistics.mean(getattr(base[c], f) for c in clips)
                             for f in ("iou", "dtssd", "engine_share", "ms")))
                     if base else None)
            else:
                s, b = per[clip], base[clip] if base else None
            di = f"{s.iou - b.iou:+.4f}" if b else ""
            dd = f"{100 * (s.dtssd / b.dtssd - 1):+.1f} %" if b else ""
            lines.append(f"| {mode} | {clip} | {s.iou:.4f} | {di} | {s.dtssd:.3f} | {dd} | "
                         f"{100 * s.engine_share:.0f} % | {s.ms:.1f} |")
    return "\n".join(lines)


def parse_options(text: str) -> dict[str, object]:
    """``a=1,b=0.5,c=name,d=0.6;0.9`` → keyword options (numbers where they parse; ``;``
    makes a tuple of numbers)."""
    out: dict[str, object] = {}
    for part in filter(None, text.split(",")):
        k, v = part.split("=", 1)
        if ";" in v:
            out[k] = tuple(float(x) for x in v.split(";"))
            continue
        val: object = v
        for cast in (int, float):
            try:
                val = cast(v)
                break
            except ValueError:
                pass
        if v in ("true", "false"):
            val = v == "true"
        out[k] = val
    return out


def bounds(engine: str, clips: Sequence[str], data: Path) -> str:
    """What no temporal filter can win back: the dtSSD of outputs made from the ground truth
    itself with what a ~320 px model cannot see taken out (structures thinner than k px: a
    morphological opening), or with soft edges (blurred, σ = 1 px), against the engine's
    per-frame dtSSD on each clip."""
    lines = ["| clip | per-frame dtSSD | GT opened 3 px | 5 px | 7 px | GT blurred σ 1 px |",
             "|---|---|---|---|---|---|"]
    for clip in clips:
        d = load_clip(engine, clip, data)
        base = M.iou_and_dtssd(d.alphas(), d.truths)[1]
        cells = []
        for k in (3, 5, 7):
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
            opened = [np.asarray(cv2.morphologyEx(t, cv2.MORPH_OPEN, kernel), np.float32)
                      for t in d.truths]
            cells.append(M.iou_and_dtssd(opened, d.truths)[1])
        blurred = [np.asarray(cv2.GaussianBlur(t, (0, 0), 1.0), np.float32) for t in d.truths]
        cells.append(M.iou_and_dtssd(blurred, d.truths)[1])
        lines.append(f"| {clip} | {base:.2f} | " + " | ".join(
            f"{c:.2f} ({c / base:.0%})" for c in cells) + " |")
    return "\n".join(lines)


def sweep(engine: str, clips: Sequence[str], data: Path, preset: str, options: str,
          rules: Sequence[str], source: str) -> str:
    """One motion step (a preset with ``options`` replaced) run once per clip, then each rule
    (``max_risk=0.04``, ``max_motion=2,max_interval=4``, ``every=4`` for a fixed interval,
    ``all``) replayed on what it measured and propagated: a rule sweep at the cost of one
    flow computation. ``near=R`` (with ``far=W``, default 0) counts the unreliable pixels
    within R working px of the last keyframe's matte (α > 0.05) fully and the others at
    weight W: a rule that looks at the matte, which the shipped one does not. ``source``
    "gt" propagates the ground truth instead of the engine's alphas (how far propagation
    alone is from the truth)."""
    import dataclasses

    from streammatte.keyframes import FILE_PRESET, LIVE_PRESET, KeyframeRule, MotionStep, Propagator

    base = dataclasses.replace({"keyframes": FILE_PRESET, "keyframes-live": LIVE_PRESET}[preset],
                               **parse_options(options))  # type: ignore[arg-type]
    lines = ["| rule | clip | engine | ΔIoU | ΔdtSSD |", "|---|---|---|---|---|"]
    for clip in clips:
        d = load_clip(engine, clip, data)
        alphas = d.alphas() if source == "engine" else d.truths
        iou0, dt0 = M.iou_and_dtssd(d.alphas(), d.truths)
        step = MotionStep(dataclasses.replace(base, max_interval=10**9, max_risk=math.inf,
                                              max_motion=math.inf))
        motions = [step(f) for f in d.frames]
        for text in rules:
            opts = parse_options("" if text == "all" else text)
            every = int(opts.pop("every", 1 if text == "all" else 0))  # type: ignore[call-overload]
            near = int(opts.pop("near", 0))  # type: ignore[call-overload]
            far = float(opts.pop("far", 0.0))  # type: ignore[arg-type]
            cfg = dataclasses.replace(base, **opts)  # type: ignore[arg-type]
            rule = KeyframeRule(cfg)
            prop, out, keys = Propagator(cfg), [], 0
            region: np.ndarray | None = None  # near the last keyframe's matte
            for i, (frame, m) in enumerate(zip(d.frames, motions, strict=True)):
                if m.to_prev is None:
                    rule.restart()
                    key = True
                elif every:
                    key = i % every == 0
                else:
                    unreliable = m.unreliable
                    if region is not None:
                        bad = m.to_prev.confidence < cfg.risk_threshold
                        inside = np.count_nonzero(bad & region)
                        unreliable = (inside + far * (np.count_nonzero(bad) - inside)) / bad.size
                    key = bool(rule(unreliable, m.motion))
                if key and near:
                    h, w = m.grey.shape
                    fg = cv2.resize(alphas[i], (w, h), interpolation=cv2.INTER_AREA) > 0.05
                    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * near + 1,) * 2)
                    region = cv2.dilate(fg.astype(np.uint8), disk).astype(bool)
                keys += key
                out += prop.push(frame, dataclasses.replace(m, keyframe=key),
                                 alphas[i] if key else None)
            out += prop.flush()
            i1, dt1 = M.iou_and_dtssd(out, d.truths)
            lines.append(f"| {text} | {clip} | {keys / len(out):.0%} | {i1 - iou0:+.4f} | "
                         f"{100 * (dt1 / dt0 - 1):+.1f} % |")
            print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def keyframe_share(preset: str, source: Path, limit: int | None = None) -> tuple[int, int]:
    """(keyframes, frames) the motion step of a preset (``keyframes``, ``keyframes-live``)
    picks on a clip folder or a video; the engine is not needed for that."""
    from streammatte.evaluate import iter_frames
    from streammatte.keyframes import FILE_PRESET, LIVE_PRESET, MotionStep

    step = MotionStep({"keyframes": FILE_PRESET, "keyframes-live": LIVE_PRESET}[preset])
    keys = frames = 0
    for clip in find_clips(source):
        step.reset()
        for _, frame in iter_frames(clip, limit):
            keys += step(frame).keyframe
            frames += 1
    return keys, frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="run engines once over the clips and keep their output")
    c.add_argument("--engines", default="u2netp")
    c.add_argument("--data", type=Path, default=DATA)
    c.add_argument("--clips", default=",".join(CLIPS))
    c.add_argument("--models-dir", type=Path)
    s = sub.add_parser("score", help="score temporal modes on the cached output")
    s.add_argument("-t", "--modes", default="none,bidirectional,keyframes",
                   help="temporal modes, or 'keyframes:opt=v,...' (a keyframe preset with "
                        "settings replaced), separated by ',' or by '|' when options are given")
    s.add_argument("--engine", default="u2netp")
    s.add_argument("--data", type=Path, default=DATA)
    s.add_argument("--clips", default=",".join(CLIPS))
    b = sub.add_parser("bounds", help="dtSSD of ground truth without thin parts / blurred")
    b.add_argument("--engine", default="u2netp")
    b.add_argument("--data", type=Path, default=DATA)
    b.add_argument("--clips", default=",".join(CLIPS))
    w = sub.add_parser("sweep", help="keyframe rules replayed on one motion step per clip")
    w.add_argument("--engine", default="u2netp")
    w.add_argument("--data", type=Path, default=DATA)
    w.add_argument("--clips", default=",".join(CLIPS))
    w.add_argument("--preset", default="keyframes", choices=("keyframes", "keyframes-live"))
    w.add_argument("--options", default="", help="settings replaced in the preset, a=1,b=2")
    w.add_argument("--rules", default="all|max_risk=0.04|max_risk=0.06|every=4",
                   help="'|'-separated: all, every=N, or settings such as max_risk=0.04")
    w.add_argument("--source", default="engine", choices=("engine", "gt"))
    k = sub.add_parser("share", help="share of frames a preset's motion step runs the engine on")
    k.add_argument("sources", nargs="+", type=Path, help="DAVIS sequences, frame folders, videos")
    k.add_argument("--presets", default="keyframes,keyframes-live")
    k.add_argument("--limit", type=int)
    args = parser.parse_args()
    if args.command == "sweep":
        print(sweep(args.engine, args.clips.split(","), args.data, args.preset, args.options,
                    args.rules.split("|"), args.source))
        return 0
    if args.command == "bounds":
        print(bounds(args.engine, args.clips.split(","), args.data))
        return 0
    if args.command == "share":
        print("| clip | " + " | ".join(args.presets.split(",")) + " |")
        print("|---|" + "---|" * len(args.presets.split(",")))
        for src in args.sources:
            cells = []
            for preset in args.presets.split(","):
                keys, frames = keyframe_share(preset, src, args.limit)
                cells.append(f"{keys}/{frames} ({keys / frames:.0%})")
            print(f"| {src.name} | " + " | ".join(cells) + " |", flush=True)
        return 0
    clips = args.clips.split(",")
    if args.command == "cache":
        for engine in args.engines.split(","):
            build_cache(engine, args.data, clips, args.models_dir)
        return 0
    modes = ([m for m in args.modes.split("|") if m] if "|" in args.modes or ":" in args.modes
             else args.modes.split(","))
    results: dict[str, dict[str, Score]] = {}
    for clip in clips:
        data = load_clip(args.engine, clip, args.data)
        alphas = data.alphas()
        for mode in modes:
            name, _, opts = mode.partition(":")
            runner = (run_keyframes(name, **parse_options(opts)) if opts
                      else run_streaming(name))
            results.setdefault(mode, {})[clip] = evaluate(runner, data, alphas)
            print(f"{mode} {clip}: {results[mode][clip]}", file=sys.stderr, flush=True)
    print(f"engine {args.engine}, {sum(1 for _ in clips)} clips\n")
    print(table(results, clips))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
