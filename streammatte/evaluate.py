"""Evaluation harness: engines × temporal modes on clips with (or without) ground truth.

Input layouts (``find_clips``):

- a *sequence* folder holding ``frames/`` (images) and ``masks/`` (ground truth, one per frame,
  matched by file stem), as in DAVIS;
- a *dataset* folder whose sub-folders are sequences;
- a folder of frames, or a video file, with the ground truth given separately (``gt``), or none:
  then only the flicker index and speed are measured.

Each engine runs once per clip; every temporal mode is applied to the same engine output, so
modes are compared on identical alphas. The engine's steps and each mode's temporal filter
come from the chain files use (``streammatte.chain.Chain``), so the scores are those of the
alphas ``streammatte video`` writes. Speed is split into the engine's ms/frame (preprocess,
inference, postprocess, upsampling) and each temporal mode's own ms/frame. Peak memory is the
peak resident set size of a worker process that ran that engine alone (``isolate=True``), or
of the calling process otherwise.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import csv
import io
import json
import math
import multiprocessing
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from . import metrics as M
from .errors import ConfigError, SourceError
from .frames import Alpha, RGBImage
from .progress import ProgressLine
from .refine import UPSAMPLERS, Upsampler
from .temporal import LookaheadFilter, temporal_modes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


# -- reading clips --------------------------------------------------------------------------

def list_images(folder: Path, what: str = "frames") -> list[Path]:
    """Image files of ``folder`` sorted by name; hidden files are ignored, anything else that
    is not an image is an error naming it."""
    if not folder.is_dir():
        raise SourceError(f"{folder}: not a folder of {what}")
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    for p in files:
        if p.is_dir() or p.suffix.lower() not in IMAGE_SUFFIXES:
            raise SourceError(f"{p}: not an image file; a {what} folder should hold only images "
                              f"({', '.join(IMAGE_SUFFIXES)})")
    if not files:
        raise SourceError(f"{folder}: empty folder, expected {what} as image files")
    return files


def read_frame(path: Path) -> RGBImage:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SourceError(f"{path}: not a readable image (expected PNG, JPEG, WebP, BMP or TIFF)")
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def read_mask(path: Path) -> Alpha:
    """A ground-truth mask or alpha as float32 in [0, 1]: grey 8/16-bit as is, RGBA by its
    alpha channel, colour (palette-style) masks as foreground wherever non-black."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise SourceError(f"{path}: not a readable mask image (expected PNG, JPEG, TIFF…)")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., 3]
    elif img.ndim == 3:
        img = (img.max(axis=2) > 0).astype(np.uint8) * 255
    return M.as_alpha(np.asarray(img))


@dataclass(frozen=True, slots=True)
class Clip:
    """One clip to evaluate: frames from ``frames`` (a folder or a video), optional masks."""

    name: str
    frames: Path
    masks: Path | None = None

    def frame_files(self) -> list[Path] | None:
        return None if self.frames.is_file() else list_images(self.frames, "frames")

    def frame_total(self, limit: int | None) -> int | None:
        """How many frames ``iter_frames`` will give, where that is known in advance."""
        files = self.frame_files()
        if files is not None:
            total: int | None = len(files)
        else:
            from .sources.file import FileSource

            with FileSource(self.frames) as source:
                total = source.frame_count
        return total if limit is None or total is None else min(total, limit)

    def mask_files(self, frame_names: Sequence[str]) -> list[Path] | None:
        """Masks paired with frames by stem; a missing or extra mask is an error naming it."""
        if self.masks is None:
            return None
        masks = list_images(self.masks, "ground-truth masks")
        if self.frames.is_file():  # a video: masks pair with frames by order
            return masks
        by_stem = {p.stem: p for p in masks}
        paired = []
        for name in frame_names:
            stem = Path(name).stem
            if stem not in by_stem:
                raise SourceError(f"{self.frames / name}: no ground-truth mask {stem}.* in "
                                  f"{self.masks}")
            paired.append(by_stem.pop(stem))
        if by_stem:
            first = sorted(by_stem.values())[0]
            raise SourceError(f"{first}: ground-truth mask without a frame in {self.frames}")
        return paired


def find_clips(path: Path, gt: Path | None = None) -> list[Clip]:
    """The clips under ``path`` (see the module docstring for the layouts)."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise SourceError(f"{path}: not a video file or a folder of frames")
        return [Clip(path.stem, path, gt)]
    if (path / "frames").is_dir():
        masks = gt if gt is not None else (path / "masks" if (path / "masks").is_dir() else None)
        return [Clip(path.name, path / "frames", masks)]
    subs = sorted(p for p in path.iterdir() if p.is_dir() and (p / "frames").is_dir())
    if subs:
        if gt is not None:
            raise ConfigError(f"{path} holds several sequences with their own masks/: "
                              "give --gt only with a single frame folder or video")
        return [Clip(p.name, p / "frames", p / "masks" if (p / "masks").is_dir() else None)
                for p in subs]
    return [Clip(path.name, path, gt)]


def iter_frames(clip: Clip, limit: int | None) -> Iterator[tuple[str, RGBImage]]:
    """(name, RGB frame) of the clip in order, at most ``limit``."""
    files = clip.frame_files()
    if files is not None:
        for p in files[:limit]:
            yield p.name, read_frame(p)
        return
    from .sources.file import FileSource

    with FileSource(clip.frames) as source:
        for i, packet in enumerate(source):
            if limit is not None and i >= limit:
                break
            yield f"{clip.frames.name}#{i}", packet.image


# -- running ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EvalSpec:
    """What to run: one engine on some clips under several temporal modes."""

    engine: str
    modes: tuple[str, ...] = ("none",)
    upsample: Upsampler = "bilinear"
    max_frames: int | None = None
    models_dir: Path | None = None
    model_file: Path | None = None
    device: str = "cpu"
    slow_metrics: bool = True
    #: GrabCut's first box, (x, y, width, height) in frame pixels, instead of the centred one;
    #: the same box starts every clip
    grabcut_box: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        if self.grabcut_box is not None and self.engine != "grabcut":
            raise ConfigError(f"a GrabCut box was given, but the engine is {self.engine!r}")
        known = temporal_modes()
        for m in self.modes:
            if m not in known:
                raise ConfigError(f"unknown temporal mode {m!r} (choose from: {', '.join(known)})")
        if not self.modes:
            raise ConfigError("at least one temporal mode is needed")
        if self.upsample not in UPSAMPLERS:
            raise ConfigError(f"unknown upsampler {self.upsample!r} "
                              f"(choose from: {', '.join(UPSAMPLERS)})")
        if self.max_frames is not None and self.max_frames < 2:
            raise ConfigError(f"max_frames should be >= 2 (dtSSD needs pairs), "
                              f"got {self.max_frames}")


@dataclass(slots=True)
class ClipResult:
    """One engine × mode on one clip: per-frame scores and speed."""

    clip: str
    engine: str
    mode: str
    upsample: str
    frames: int
    engine_ms: float
    temporal_ms: float
    peak_rss_mb: float
    flicker: float
    has_gt: bool
    per_frame: list[dict[str, float | None]] = field(default_factory=list)
    flicker_per_frame: list[float] = field(default_factory=list)

    def means(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.has_gt:
            for name in M.METRIC_UNITS:
                vals = [v for f in self.per_frame if (v := f.get(name)) is not None
                        and not math.isnan(v)]
                out[name] = float(np.mean(vals)) if vals else math.nan
        out["flicker"] = self.flicker
        return out


class _ModeRunner:
    """One temporal mode fed frame by frame; scores outputs as they come out (possibly late)."""

    def __init__(self, mode: str, stream: LookaheadFilter, slow_metrics: bool) -> None:
        self.mode = mode
        self.filter = stream
        self.slow = slow_metrics
        self.pending: collections.deque[tuple[RGBImage, Alpha | None]] = collections.deque()
        self.prev: tuple[Alpha, Alpha] | None = None
        self.flicker = M.FlickerAccumulator()
        self.scores: list[dict[str, float | None]] = []
        self.busy_s = 0.0

    def push(self, alpha: Alpha, frame: RGBImage, truth: Alpha | None) -> None:
        self.pending.append((frame, truth))
        start = time.perf_counter()
        outs = self.filter.push(alpha, frame)
        self.busy_s += time.perf_counter() - start
        self._take(outs)

    def finish(self) -> None:
        start = time.perf_counter()
        outs = self.filter.flush()
        self.busy_s += time.perf_counter() - start
        self._take(outs)
        if self.pending:
            raise RuntimeError(f"temporal mode {self.mode!r} left {len(self.pending)} frame(s) "
                               "unanswered at the end of the stream")

    def _take(self, outs: list[Alpha]) -> None:
        for out in outs:
            frame, truth = self.pending.popleft()
            self.flicker.add(out, frame)
            if truth is not None:
                s = M.score_frame(out, truth, self.prev, slow_metrics=self.slow)
                self.scores.append(asdict(s))
                self.prev = (out, truth)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


#: called as a clip starts and after each of its frames: (clip name, frames done in this clip,
#: the clip's total if known)
FrameCallback = Callable[[str, int, int | None], None]


class ClipProgress:
    """A progress line per clip on stderr (``40/100 frames of parkour  40%  4.1 fps  ETA …``),
    as a FrameCallback: in place on a terminal, every few seconds elsewhere; ``enabled=False``
    shows nothing."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream
        self.enabled = enabled
        self._clip: str | None = None
        self._line: ProgressLine | None = None

    def __call__(self, clip: str, done: int, total: int | None) -> None:
        if clip != self._clip or self._line is None:
            self.finish()
            self._clip = clip
            self._line = ProgressLine(total, label=f"frames of {clip}", stream=self.stream,
                                      enabled=self.enabled)
        self._line.update(done)

    def finish(self) -> None:
        if self._line is not None:
            self._line.finish()
        self._line = None


def evaluate_engine(spec: EvalSpec, clips: Sequence[Clip],
                    on_frame: FrameCallback | None = None) -> list[ClipResult]:
    """Run ``spec.engine`` over ``clips`` once, every temporal mode on its output."""
    from .chain import Chain
    from .config import MatteConfig
    from .inference import Engine
    from .inference.grabcut import GrabCutEngine

    config = MatteConfig(engine=spec.engine, model_file=spec.model_file,
                         models_dir=spec.models_dir, device=spec.device,
                         upsample=spec.upsample, temporal="none")
    given: Engine | None = (GrabCutEngine(box=spec.grabcut_box)
                            if spec.grabcut_box is not None else None)
    results = []
    with contextlib.ExitStack() as closing:
        if given is not None:
            closing.callback(given.close)
        chain = closing.enter_context(Chain(config, engine=given))
        engine = chain.engine
        # one chain per mode over the same engine: their temporal streams are what files run
        chains = {m: Chain(config.with_options(temporal=m), engine=engine) for m in spec.modes}
        for clip in clips:
            engine.reset()
            runners = [_ModeRunner(m, c.temporal_stream(), spec.slow_metrics)
                       for m, c in chains.items()]
            names: list[str] = []
            frame_files = clip.frame_files()
            mask_files = clip.mask_files([p.name for p in frame_files] if frame_files else [])
            if mask_files is not None and frame_files is not None:
                mask_files = mask_files[:spec.max_frames]
            engine_s = 0.0
            total = clip.frame_total(spec.max_frames) if on_frame is not None else None
            if on_frame is not None:  # the clip has started (its rate counts from here)
                on_frame(clip.name, 0, total)
            for i, (name, frame) in enumerate(iter_frames(clip, spec.max_frames)):
                names.append(name)
                truth = None
                if mask_files is not None:
                    if i >= len(mask_files):
                        raise SourceError(f"{clip.frames}: frame {name} has no ground-truth "
                                          f"mask ({len(mask_files)} mask(s) in {clip.masks})")
                    truth = read_mask(mask_files[i])
                    if truth.shape != frame.shape[:2]:
                        raise SourceError(
                            f"{mask_files[i]}: ground truth is {truth.shape[1]}×{truth.shape[0]}"
                            f" but frame {name} is {frame.shape[1]}×{frame.shape[0]}")
                start = time.perf_counter()
                alpha = chain.matter.alpha(frame)
                engine_s += time.perf_counter() - start
                for r in runners:
                    r.push(alpha, frame, truth)
                if on_frame is not None:
                    on_frame(clip.name, i + 1, total)
            if not names:
                raise SourceError(f"{clip.frames}: no frames could be read")
            if (mask_files is not None and frame_files is None and spec.max_frames is None
                    and len(mask_files) > len(names)):
                raise SourceError(f"{mask_files[len(names)]}: ground-truth mask without a frame "
                                  f"({len(mask_files)} masks, {len(names)} frames in "
                                  f"{clip.frames})")
            for r in runners:
                r.finish()
                results.append(ClipResult(
                    clip=clip.name, engine=spec.engine, mode=r.mode, upsample=spec.upsample,
                    frames=len(names), engine_ms=1e3 * engine_s / len(names),
                    temporal_ms=1e3 * r.busy_s / len(names), peak_rss_mb=0.0,
                    flicker=r.flicker.value, has_gt=mask_files is not None,
                    per_frame=r.scores, flicker_per_frame=r.flicker.per_frame))
    peak = _peak_rss_mb()
    for res in results:
        res.peak_rss_mb = peak
    return results


def _evaluate_with_progress(spec: EvalSpec, clips: Sequence[Clip],
                            progress: bool) -> list[ClipResult]:
    """One engine's run, with its progress lines drawn where it runs (a worker process
    inherits stderr, so the lines need no channel back)."""
    bar = ClipProgress() if progress else None
    try:
        return evaluate_engine(spec, clips, bar)
    finally:
        if bar is not None:
            bar.finish()


def compare(specs: Sequence[EvalSpec], clips: Sequence[Clip], *, isolate: bool = True,
            on_engine: Callable[[EvalSpec], None] | None = None,
            progress: bool = False) -> list[ClipResult]:
    """Every spec on every clip. ``isolate`` runs each engine in a fresh process, so its peak
    memory is its own and one engine's threads do not slow the next; ``progress`` draws a
    line per clip on a terminal."""
    results: list[ClipResult] = []
    for spec in specs:
        if on_engine is not None:
            on_engine(spec)
        if isolate:
            ctx = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
                results += pool.submit(_evaluate_with_progress, spec, clips, progress).result()
        else:
            results += _evaluate_with_progress(spec, clips, progress)
    return results


# -- reports --------------------------------------------------------------------------------

SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("iou", "IoU"), ("f_score", "F (β²=0.3)"), ("edge_acc", "edge acc"), ("mad", "MAD ×1e3"),
    ("mse", "MSE ×1e3"), ("grad", "Grad ÷1e3"), ("conn", "Conn ÷1e3"),
    ("boundary_mad", "bMAD ×1e3"), ("dtssd", "dtSSD ×1e2"), ("flicker", "flicker ×1e3"),
)


@dataclass(slots=True)
class Row:
    engine: str
    mode: str
    upsample: str
    clip: str  # a clip's name, or "mean" over clips
    frames: int
    values: dict[str, float]
    engine_ms: float
    temporal_ms: float
    peak_rss_mb: float

    @property
    def ms_per_frame(self) -> float:
        return self.engine_ms + self.temporal_ms


def summarize(results: Sequence[ClipResult]) -> tuple[list[Row], list[Row]]:
    """(rows per engine × mode averaged over clips — each clip weighs the same —, rows per
    clip)."""
    per_clip = [Row(r.engine, r.mode, r.upsample, r.clip, r.frames, r.means(), r.engine_ms,
                    r.temporal_ms, r.peak_rss_mb) for r in results]
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for row in per_clip:
        groups.setdefault((row.engine, row.mode, row.upsample), []).append(row)
    summary = []
    for (engine, mode, up), rows in groups.items():
        keys = rows[0].values.keys()
        values = {k: float(np.mean([r.values[k] for r in rows])) for k in keys}
        frames = sum(r.frames for r in rows)
        # speed weighted by frames: a long clip's timing counts for more
        eng = sum(r.engine_ms * r.frames for r in rows) / frames
        tmp = sum(r.temporal_ms * r.frames for r in rows) / frames
        summary.append(Row(engine, mode, up, "mean", frames, values, eng, tmp,
                           max(r.peak_rss_mb for r in rows)))
    return summary, per_clip


def _fmt(v: float, digits: int = 3) -> str:
    return "–" if math.isnan(v) else f"{v:.{digits}f}"


def markdown_table(rows: Sequence[Row], *, with_clip: bool = False) -> str:
    present = [(k, t) for k, t in SUMMARY_COLUMNS if any(k in r.values for r in rows)]
    head = ["engine", "temporal", "upsample"] + (["clip"] if with_clip else []) + ["frames"]
    head += [t for _, t in present] + ["ms/frame (engine + temporal)", "peak RSS MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.engine, r.mode, r.upsample] + ([r.clip] if with_clip else []) + [str(r.frames)]
        cells += [_fmt(r.values.get(k, math.nan), 4 if k in ("iou", "f_score", "edge_acc")
                       else 2) for k, _ in present]
        cells += [f"{r.ms_per_frame:.1f} ({r.engine_ms:.1f} + {r.temporal_ms:.1f})",
                  f"{r.peak_rss_mb:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def csv_text(rows: Sequence[Row]) -> str:
    keys = [k for k, _ in SUMMARY_COLUMNS]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["engine", "temporal", "upsample", "clip", "frames", *keys, "engine_ms",
                "temporal_ms", "ms_per_frame", "peak_rss_mb"])
    for r in rows:
        w.writerow([r.engine, r.mode, r.upsample, r.clip, r.frames,
                    *[f"{r.values.get(k, math.nan):.6g}" for k in keys],
                    f"{r.engine_ms:.3f}", f"{r.temporal_ms:.3f}", f"{r.ms_per_frame:.3f}",
                    f"{r.peak_rss_mb:.1f}"])
    return buf.getvalue()


def json_text(results: Sequence[ClipResult], summary: Sequence[Row], command: str) -> str:
    def clean(v: object) -> object:
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    doc = {
        "command": command,
        "metrics": M.METRIC_UNITS,
        "summary": [clean(asdict(r)) for r in summary],
        "clips": [clean(asdict(r)) for r in results],
    }
    return json.dumps(doc, indent=1, ensure_ascii=False)


def write_plots(results: Sequence[ClipResult], summary: Sequence[Row], out_dir: Path,
                prefix: str = "") -> list[Path]:
    """PNG plots: per-frame IoU, flicker over time, speed vs quality. Needs matplotlib
    (``pip install 'streammatte[eval]'``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        from .errors import EngineUnavailableError

        raise EngineUnavailableError(
            "plots need matplotlib: pip install 'streammatte[eval]' (or pass --no-plots)"
        ) from exc
    written = []
    clips = sorted({r.clip for r in results})
    for what, key, label in (("iou", "iou", "IoU"), ("dtssd", "dtssd", "dtSSD ×1e2"),
                             ("flicker", None, "flicker ×1e3 (mean |Δα| on still pixels)")):
        if key is not None and not any(r.has_gt for r in results):
            continue
        fig, axes = plt.subplots(len(clips), 1, figsize=(9, 2.6 * len(clips)), squeeze=False)
        for ax, clip in zip(axes[:, 0], clips, strict=True):
            for r in results:
                if r.clip != clip:
                    continue
                if key is None:
                    ys = r.flicker_per_frame
                    xs = list(range(1, len(ys) + 1))
                else:
                    pts = [(i, f[key]) for i, f in enumerate(r.per_frame) if f[key] is not None]
                    xs, ys = [p[0] for p in pts], [float(p[1] or 0.0) for p in pts]
                ax.plot(xs, ys, label=f"{r.engine} / {r.mode}", linewidth=1)
            ax.set_title(clip, fontsize=9)
            ax.set_ylabel(label, fontsize=8)
        axes[-1, 0].set_xlabel("frame")
        axes[0, 0].legend(fontsize=7, ncol=3)
        fig.tight_layout()
        path = out_dir / f"{prefix}{what}_per_frame.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    if any("iou" in r.values for r in summary):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for row in summary:
            ax.scatter(row.ms_per_frame, row.values["iou"], s=30)
            ax.annotate(f"{row.engine}/{row.mode}", (row.ms_per_frame, row.values["iou"]),
                        fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("ms/frame (log)")
        ax.set_ylabel("mean IoU")
        ax.set_title("speed vs quality")
        fig.tight_layout()
        path = out_dir / f"{prefix}speed_vs_quality.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def write_report(results: Sequence[ClipResult], out_dir: Path, *, command: str,
                 title: str, notes: Sequence[str] = (), plots: bool = True,
                 stem: str = "report") -> list[Path]:
    """``stem``.md (tables, the command, notes), .csv, .json and the plots into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary, per_clip = summarize(results)
    written = []
    figs = write_plots(results, summary, out_dir, f"{stem}_") if plots else []
    md = [f"# {title}", "", "Produced by:", "", "```", command, "```", "",
          "## Mean over clips (each clip weighs the same)", "", markdown_table(summary), "",
          "## Per clip", "", markdown_table(per_clip, with_clip=True), ""]
    if notes:
        md += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    md += ["## Metric definitions", "",
           "See `streammatte/metrics.py`. IoU and F-score on masks thresholded at 0.5; "
           "edge acc = boundary F-measure of Sobel edges within ±2 px; MAD, MSE, Grad, Conn, "
           "dtSSD at RobustVideoMatting's scales; bMAD = MAD in a 10 px band around the true "
           "boundary; flicker = mean |Δα| where the frame did not change (no ground truth "
           "needed). ms/frame = engine (pre/post-processing, inference, upsampling) + "
           "temporal mode; peak RSS of the process that ran the engine.", ""]
    if figs:
        md += ["## Plots", "", *[f"![{p.stem}]({p.name})" for p in figs], ""]
    paths = {"md": out_dir / f"{stem}.md", "csv": out_dir / f"{stem}.csv",
             "json": out_dir / f"{stem}.json"}
    paths["md"].write_text("\n".join(md), encoding="utf-8")
    paths["csv"].write_text(csv_text([*summary, *per_clip]), encoding="utf-8")
    paths["json"].write_text(json_text(results, summary, command), encoding="utf-8")
    written += list(paths.values()) + figs
    return written
