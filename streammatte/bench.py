"""The benchmark behind the README's speed table: engine-only vs end-to-end, in one run.

Machines are shared and noisy, so every figure that matters is a ratio measured in the same
process, minutes apart at most: end-to-end fps over engine-only fps, and peak memory of a run
over the same clip played once vs several times (memory must stay flat in video length).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .chain import Chain
from .config import DEFAULT_ENGINE, MatteConfig
from .frames import FramePacket
from .inference import Engine
from .pipeline import Pipeline, PipelineStats
from .sinks.file import FileSink
from .sinks.formats import FORMATS
from .sources.file import FileSource
from .temporal import DEFAULT_FILE_MODE


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; 0 where unavailable)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class RssSampler:
    """Samples RSS on a background thread; ``peak`` is the highest value seen while running."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sm-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss_bytes())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.peak = current_rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_bytes())


def looped_frames(path: Path, frames: int, loops: int) -> Iterator[FramePacket]:
    """The first ``frames`` frames of ``path``, played ``loops`` times with increasing
    timestamps, as one longer video."""
    offset = 0
    index = 0
    for _ in range(loops):
        last_pts = 0
        with FileSource(path) as source:
            for i, packet in enumerate(source):
                if i >= frames:
                    break
                last_pts = packet.pts or 0
                packet.pts = (packet.pts or 0) + offset
                packet.index = index
                index += 1
                yield packet
            step = round(1 / (source.frame_rate * source.time_base)) if source.frame_rate else 1
        offset += last_pts + step


@dataclass(slots=True)
class BenchResult:
    clip: str
    engine: str
    temporal: str
    frames: int
    rounds: int
    engine_fps: float
    end_to_end_fps: float
    stages: PipelineStats
    rss_by_length: dict[int, int] = field(default_factory=dict)
    #: end-to-end fps with no temporal stage, when ``temporal`` is another mode: the pipeline's
    #: own overhead, apart from what the smoothing costs
    plain_fps: float | None = None
    rembg_fps: float | None = None
    rembg_note: str | None = None

    @property
    def ratio(self) -> float:
        return self.end_to_end_fps / self.engine_fps if self.engine_fps else 0.0


def measure_engine_only(chain: Chain, images: list[np.ndarray]) -> float:
    """fps of ``engine.infer`` alone on frames the chain has preprocessed (after one
    warm-up)."""
    engine = chain.engine
    samples = [chain.matter.preprocess(image) for image in images]
    engine.infer(samples[0][None])
    started = time.perf_counter()
    for sample in samples:
        engine.infer(sample[None])
    return len(samples) / (time.perf_counter() - started)


def run_end_to_end(clip: Path, engine: Engine, frames: int, loops: int, out_dir: Path,
                   temporal: str = DEFAULT_FILE_MODE) -> tuple[PipelineStats, int]:
    """Decode → … → H.264 encode of the clip's first ``frames`` frames ``loops`` times;
    returns the stats and the peak RSS during the run."""
    with FileSource(clip) as probe:
        rate = probe.frame_rate
    config = MatteConfig(engine=engine.name, temporal=temporal, background="blur")
    out = out_dir / f"bench-{loops}.mp4"
    with RssSampler() as rss, Chain(config, engine=engine, output="rgb") as chain, \
            FileSink(out, FORMATS["h264"], frame_rate=rate, overwrite=True) as sink:
        stats = Pipeline(looped_frames(clip, frames, loops), chain.stages(sink.write)).run()
    return stats, rss.peak


def measure_rembg(images: list[np.ndarray], model_file: Path, model: str
                  ) -> tuple[float | None, str]:
    """fps of rembg.remove() per frame with the same ONNX file, as a rembg user runs video."""
    try:
        from PIL import Image
        from rembg import new_session, remove
    except ImportError:
        return None, "rembg not installed (pip install 'streammatte[bench]')"
    # rembg looks for <U2NET_HOME>/<model>.onnx and only downloads when it is missing
    os.environ["U2NET_HOME"] = str(model_file.parent)
    session = new_session(model)
    pictures = [Image.fromarray(image) for image in images]
    remove(pictures[0], session=session)
    started = time.perf_counter()
    for picture in pictures:
        remove(picture, session=session)
    return len(pictures) / (time.perf_counter() - started), f"rembg remove() with {model_file}"


def run_benchmark(
    clip: Path,
    *,
    engine_name: str = DEFAULT_ENGINE,
    temporal: str = DEFAULT_FILE_MODE,
    frames: int = 40,
    lengths: tuple[int, ...] = (1, 3),
    rounds: int = 2,
    with_rembg: bool = True,
    models_dir: Path | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> BenchResult:
    """Each speed is measured ``rounds`` times, the measurements interleaved (engine, rembg,
    end to end, …) so a burst of load elsewhere hits them all alike; the median is kept. The
    memory runs (one per entry of ``lengths``) come after."""
    config = MatteConfig(engine=engine_name, models_dir=models_dir, device="cpu",
                         temporal="none")
    with Chain(config) as chain:
        engine = chain.engine
        with FileSource(clip) as source:
            images = [p.image for _, p in zip(range(frames), source, strict=False)]
        count = len(images)
        rembg_model = None
        if with_rembg and engine_name in ("u2netp", "u2net"):
            from .inference import resolve_model
            from .models.catalog import get_spec

            rembg_model = resolve_model(get_spec(engine_name), models_dir=models_dir)
        speeds: dict[str, list[float]] = {"engine": [], "e2e": [], "plain": [], "rembg": []}
        stats: PipelineStats | None = None
        rembg_note = None
        with tempfile.TemporaryDirectory(prefix="streammatte-bench-") as tmp:
            for round_no in range(1, rounds + 1):
                log(f"round {round_no}/{rounds}: engine only, {count} frames")
                speeds["engine"].append(measure_engine_only(chain, images))
                if rembg_model is not None:
                    log(f"round {round_no}/{rounds}: rembg remove() per frame")
                    fps, rembg_note = measure_rembg(images, rembg_model, engine_name)
                    if fps is not None:
                        speeds["rembg"].append(fps)
                log(f"round {round_no}/{rounds}: end to end ({temporal})")
                run_stats, _ = run_end_to_end(clip, engine, count, 1, Path(tmp), temporal)
                speeds["e2e"].append(run_stats.fps)
                stats = stats or run_stats
                if temporal != "none":
                    log(f"round {round_no}/{rounds}: end to end (temporal none)")
                    speeds["plain"].append(
                        run_end_to_end(clip, engine, count, 1, Path(tmp), "none")[0].fps)
            del images  # the memory rows should show the pipeline, not this list
            rss: dict[int, int] = {}
            for loops in lengths:
                log(f"memory: end to end over {count * loops} frames")
                rss[count * loops] = run_end_to_end(clip, engine, count, loops, Path(tmp),
                                                    temporal)[1]
        assert stats is not None
        return BenchResult(
            clip=clip.name, engine=engine.describe(), temporal=temporal, frames=count,
            rounds=rounds, engine_fps=statistics.median(speeds["engine"]),
            end_to_end_fps=statistics.median(speeds["e2e"]), stages=stats, rss_by_length=rss,
            plain_fps=statistics.median(speeds["plain"]) if speeds["plain"] else None,
            rembg_fps=statistics.median(speeds["rembg"]) if speeds["rembg"] else None,
            rembg_note=rembg_note if rembg_model is not None else None,
        )


def format_table(result: BenchResult) -> str:
    lines = [
        f"clip: {result.clip}, {result.frames} frames; engine: {result.engine}; "
        f"temporal: {result.temporal}; speeds are medians of {result.rounds} interleaved rounds",
        "",
        "| measure | value |",
        "|---|---|",
        f"| engine-only fps | {result.engine_fps:.2f} |",
        f"| end-to-end fps (decode → matte → blur composite → H.264) | "
        f"{result.end_to_end_fps:.2f} |",
        f"| end-to-end / engine-only | {result.ratio:.2f} |",
    ]
    if result.plain_fps is not None:
        lines.append(f"| end-to-end fps, temporal none | {result.plain_fps:.2f} |")
        lines.append(f"| end-to-end / engine-only, temporal none | "
                     f"{result.plain_fps / result.engine_fps:.2f} |")
    for stage in result.stages.stages:
        lines.append(f"| {stage.name} ms/frame (busy time in its own thread, round 1) | "
                     f"{stage.ms_per_frame:.1f} |")
    for length, peak in sorted(result.rss_by_length.items()):
        lines.append(f"| peak RSS, {length}-frame run | {peak / 2**20:.0f} MiB |")
    if result.rembg_fps is not None:
        lines.append(f"| rembg remove() per frame, same model file, fps | {result.rembg_fps:.2f} |")
        lines.append(f"| streammatte end-to-end / rembg | "
                     f"{result.end_to_end_fps / result.rembg_fps:.2f} |")
    elif result.rembg_note:
        lines.append(f"| rembg comparison | {result.rembg_note} |")
    return "\n".join(lines)


# -- whole process against the rembg loop --------------------------------------------------------

#: the yardstick's script, run by path so that its process imports nothing of streammatte
LOOP_SCRIPT = Path(__file__).with_name("bench_loop.py")


@dataclass(slots=True)
class WholeRun:
    """One mode's whole-process runs: wall seconds per round, the engine's share of frames."""

    mode: str
    seconds: list[float] = field(default_factory=list)
    engine_frames: int = 0
    frames: int = 0
    iou: float | None = None
    dtssd: float | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)


@dataclass(slots=True)
class WholeResult:
    clip: str
    size: tuple[int, int]
    frames: int
    engine: str
    rounds: int
    loop: WholeRun
    runs: list[WholeRun]
    #: per-frame output (temporal none) on the ground truth, when the clip has it
    baseline: WholeRun | None = None


def prepare_clip(clip: Path, dst: Path, frames: int, size: tuple[int, int] | None) -> tuple[
        int, tuple[int, int]]:
    """The first ``frames`` frames of ``clip`` (a video, or a folder of frames such as a DAVIS
    sequence's) as an H.264 MP4 (CRF 12), scaled to ``size`` when given: the one input every
    timed run decodes. Returns (frames written, size)."""
    import av
    import cv2

    from .evaluate import find_clips, iter_frames

    (found,) = find_clips(clip)[:1]
    written, out_size = 0, (0, 0)
    with av.open(str(dst), "w") as container:
        stream = None
        for _, image in iter_frames(found, frames):
            if size is not None and (image.shape[1], image.shape[0]) != size:
                image = np.ascontiguousarray(cv2.resize(image, size,
                                                        interpolation=cv2.INTER_AREA))
            if stream is None:
                # 4:2:0 wants even sizes: a last odd row or column is cropped
                out_size = (image.shape[1] // 2 * 2, image.shape[0] // 2 * 2)
                w, h = out_size
                stream = container.add_stream("libx264", rate=25)
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                stream.options = {"crf": "12"}
            image = np.ascontiguousarray(image[:out_size[1], :out_size[0]])
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
            written += 1
        if stream is not None:
            for packet in stream.encode(None):
                container.mux(packet)
    return written, out_size


def _timed(argv: list[str]) -> float:
    import subprocess

    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): "
                           f"{done.stderr.strip()[-2000:]}")
    return elapsed


def run_whole_process(
    clip: Path,
    *,
    engine_name: str = DEFAULT_ENGINE,
    modes: tuple[str, ...] = (DEFAULT_FILE_MODE, "none"),
    frames: int = 90,
    size: tuple[int, int] | None = None,
    rounds: int = 3,
    models_dir: Path | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> WholeResult:
    """Wall time of whole processes on the same input, ``rounds`` interleaved rounds: the
    rembg loop (``bench_loop.py``, same model file) against ``streammatte video`` in each of
    ``modes``, white background, libx264 CRF 18. The engine's share of frames comes from each
    run's report; IoU and dtSSD (``evaluate``, the frames at the clip's own size) when
    ``clip`` is a folder with ground-truth masks."""
    import json
    import sys

    from .evaluate import EvalSpec, evaluate_engine, find_clips
    from .inference import resolve_model
    from .models.catalog import get_spec

    model = resolve_model(get_spec(engine_name), models_dir=models_dir)
    loop = WholeRun("rembg loop")
    runs = [WholeRun(m) for m in modes]
    with tempfile.TemporaryDirectory(prefix="streammatte-bench-") as tmp:
        src = Path(tmp) / "input.mp4"
        count, out_size = prepare_clip(clip, src, frames, size)
        base = [sys.executable, "-m", "streammatte", "video", str(src), "--engine", engine_name,
                "--model-file", str(model), "--background", "white", "--crf", "18",
                "--overwrite", "--quiet"]
        for round_no in range(1, rounds + 1):
            log(f"round {round_no}/{rounds}: rembg loop")
            loop.seconds.append(_timed([sys.executable, str(LOOP_SCRIPT), str(src),
                                        str(Path(tmp) / "loop.mp4"), "--model", str(model)]))
            for run in runs:
                log(f"round {round_no}/{rounds}: streammatte --temporal {run.mode}")
                report = Path(tmp) / "report.json"
                run.seconds.append(_timed([*base, "-o", str(Path(tmp) / "out.mp4"), "--temporal",
                                           run.mode, "--report", str(report)]))
                (entry,) = json.loads(report.read_text())["runs"]
                run.engine_frames, run.frames = entry["engine_frames"], entry["frames_in"]
    loop.frames = loop.engine_frames = count
    result = WholeResult(clip=clip.name, size=out_size, frames=count, engine=engine_name,
                         rounds=rounds, loop=loop, runs=runs)
    clips = find_clips(clip) if clip.is_dir() else []
    if clips and clips[0].masks is not None:
        log("quality: every mode on the clip's own frames against its masks")
        wanted = tuple(dict.fromkeys(("none", *modes)))
        spec = EvalSpec(engine=engine_name, modes=wanted, max_frames=frames,
                        models_dir=models_dir, slow_metrics=False)
        scores = {r.mode: r.means() for r in evaluate_engine(spec, clips[:1])}
        for run in runs:
            run.iou, run.dtssd = scores[run.mode]["iou"], scores[run.mode]["dtssd"]
        result.baseline = WholeRun("none", iou=scores["none"]["iou"],
                                   dtssd=scores["none"]["dtssd"])
    return result


def format_whole(result: WholeResult) -> str:
    """The table ``streammatte bench`` prints: wall times, ratios to the rembg loop, the
    engine's share of frames, and quality where the clip has ground truth."""
    w, h = result.size
    lines = [
        f"clip: {result.clip}, {result.frames} frames at {w}×{h}; engine: {result.engine}; "
        f"whole processes, wall time, medians of {result.rounds} interleaved rounds; "
        "white background, libx264 CRF 18",
        "",
        "| run | wall s | vs the rembg loop | engine ran on | IoU | ΔIoU | dtSSD | ΔdtSSD |",
        "|---|---|---|---|---|---|---|---|",
        f"| rembg loop (decode → same ONNX per frame → white → CRF 18) | "
        f"{result.loop.median_s:.1f} | 1.00× | 100 % | | | | |",
    ]
    base = result.baseline
    for run in result.runs:
        share = run.engine_frames / run.frames if run.frames else 0.0
        quality = "| | | |"
        if run.iou is not None and run.dtssd is not None and base is not None:
            assert base.iou is not None and base.dtssd is not None
            quality = (f"{run.iou:.4f} | {run.iou - base.iou:+.4f} | {run.dtssd:.3f} | "
                       f"{100 * (run.dtssd / base.dtssd - 1):+.1f} % |")
        lines.append(f"| streammatte --temporal {run.mode} | {run.median_s:.1f} | "
                     f"{result.loop.median_s / run.median_s:.2f}× | {share:.0%} | {quality}")
    return "\n".join(lines)
