"""The threaded pipeline: order, bounded memory, errors, back-pressure."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streammatte.frames import FramePacket
from streammatte.pipeline import CancelledRun, Pipeline, Stage


def _frames(n: int, produced: list[int] | None = None) -> Iterator[FramePacket]:
    for i in range(n):
        if produced is not None:
            produced.append(i)
        yield FramePacket(index=i, image=np.zeros((2, 2, 3), np.uint8), pts=i * 10,
                          time_base=None)


def test_every_frame_arrives_in_order() -> None:
    seen: list[int] = []

    def double(batch: list[FramePacket]) -> list[FramePacket]:
        return batch

    def collect(batch: list[FramePacket]) -> list[FramePacket]:
        seen.extend(p.index for p in batch)
        return batch

    stats = Pipeline(_frames(200), [Stage("a", double, batch_size=3), Stage("b", collect)],
                     max_queue_frames=2).run()
    assert seen == list(range(200))
    assert stats.frames_in == stats.frames_out == 200
    assert [s.name for s in stats.stages] == ["decode", "a", "b"]
    assert all(s.frames == 200 for s in stats.stages)


def test_frames_in_flight_are_bounded_by_the_queues() -> None:
    """A slow sink stalls the source instead of letting frames pile up in memory."""
    produced: list[int] = []
    written: list[int] = []
    worst_lead = 0

    def slow_write(batch: list[FramePacket]) -> list[FramePacket]:
        nonlocal worst_lead
        time.sleep(0.002)
        written.extend(p.index for p in batch)
        worst_lead = max(worst_lead, len(produced) - len(written))
        return batch

    stages = [Stage("a", lambda b: b), Stage("b", lambda b: b), Stage("write", slow_write)]
    Pipeline(_frames(300, produced), stages, max_queue_frames=3).run()
    # 3 queues of 3, plus one frame held by each of the 4 threads
    assert worst_lead <= 3 * 3 + 4
    assert written == list(range(300))


def test_stage_error_stops_everything_and_is_reraised() -> None:
    produced: list[int] = []
    # threads other tests left winding down (a live peer's executor) are not this run's
    before = set(threading.enumerate())

    def explode(batch: list[FramePacket]) -> list[FramePacket]:
        if batch[0].index == 7:
            raise ValueError("bad frame 7")
        return batch

    pipeline = Pipeline(_frames(10_000, produced), [Stage("explode", explode),
                                                    Stage("sink", lambda b: b)])
    with pytest.raises(ValueError, match="bad frame 7") as info:
        pipeline.run()
    assert "(in pipeline stage 'explode')" in getattr(info.value, "__notes__", [])
    assert len(produced) < 100, "the source must stop soon after the failure"
    assert set(threading.enumerate()) <= before


def test_source_error_is_reraised() -> None:
    def broken() -> Iterator[FramePacket]:
        yield from _frames(3)
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        Pipeline(broken(), [Stage("sink", lambda b: b)]).run()


def test_latest_policy_drops_and_counts() -> None:
    def slow(batch: list[FramePacket]) -> list[FramePacket]:
        time.sleep(0.005)
        return batch

    stats = Pipeline(_frames(300), [Stage("slow", slow)], max_queue_frames=1,
                     back_pressure="latest").run()
    assert stats.dropped > 0
    assert stats.frames_out + stats.dropped == 300


def test_drops_are_visible_while_the_run_goes_on() -> None:
    """A live stage sheds work by watching the drop count, and the progress line shows it:
    both must see drops before the end of the run."""
    pipeline: Pipeline
    seen_by_stage: list[int] = []
    seen_by_progress: list[int] = []

    def slow(batch: list[FramePacket]) -> list[FramePacket]:
        time.sleep(0.005)
        seen_by_stage.append(pipeline.dropped)
        return batch

    def camera() -> Iterator[FramePacket]:  # a frame every millisecond, for about 0.3 s
        for packet in _frames(300):
            time.sleep(0.001)
            yield packet

    pipeline = Pipeline(camera(), [Stage("slow", slow)], max_queue_frames=1,
                        back_pressure="latest")
    stats = pipeline.run(lambda s: seen_by_progress.append(s.dropped), progress_interval_s=0.01)
    assert seen_by_stage == sorted(seen_by_stage) and 0 < seen_by_stage[-1] <= stats.dropped
    assert any(d > 0 for d in seen_by_progress[:-1])


def test_cancel_stops_the_run() -> None:
    pipeline: Pipeline

    def cancel_at_5(batch: list[FramePacket]) -> list[FramePacket]:
        if batch[0].index == 5:
            pipeline.cancel()
        return batch

    pipeline = Pipeline(_frames(10_000), [Stage("c", cancel_at_5)])
    with pytest.raises(CancelledRun):
        pipeline.run()


def test_a_stopped_run_does_not_drain_what_is_queued() -> None:
    # Ctrl-C must not wait for every queued frame to pass through every (slow) stage
    pipeline: Pipeline
    seen: list[int] = []

    def cancel_at_5(batch: list[FramePacket]) -> list[FramePacket]:
        if batch[0].index == 5:
            pipeline.cancel()
        return batch

    def slow(batch: list[FramePacket]) -> list[FramePacket]:
        seen.append(batch[0].index)
        time.sleep(0.01)
        return batch

    pipeline = Pipeline(_frames(10_000), [Stage("c", cancel_at_5), Stage("slow", slow)],
                        max_queue_frames=50)
    with pytest.raises(CancelledRun):
        pipeline.run()
    assert all(i < 5 for i in seen)  # nothing from the cancel on reached the slow stage


def test_progress_is_reported_from_the_callers_thread() -> None:
    threads: set[str] = set()

    def on_progress(stats: object) -> None:
        threads.add(threading.current_thread().name)

    def slow(batch: list[FramePacket]) -> list[FramePacket]:
        time.sleep(0.001)
        return batch

    Pipeline(_frames(100), [Stage("s", slow)]).run(on_progress, progress_interval_s=0.01)
    assert threads == {threading.current_thread().name}


def test_a_stage_that_holds_frames_back_releases_them_at_the_end() -> None:
    """A look-ahead stage returns frame i only once it has seen frame i + 2; flush gives the
    last two. Nothing is lost and the order holds."""
    held: list[FramePacket] = []
    written: list[int] = []

    def look_ahead(batch: list[FramePacket]) -> list[FramePacket]:
        held.extend(batch)
        ready = held[:-2]
        del held[:-2]
        return ready

    def flush() -> list[FramePacket]:
        rest = list(held)
        held.clear()
        return rest

    def write(batch: list[FramePacket]) -> list[FramePacket]:
        written.extend(p.index for p in batch)
        return batch

    stats = Pipeline(_frames(50), [Stage("ahead", look_ahead, flush=flush),
                                   Stage("write", write)]).run()
    assert written == list(range(50))
    assert stats.frames_out == 50


def test_lookahead_temporal_mode_runs_through_matte_video(tmp_path: Path) -> None:
    """bidirectional answers two frames late; through matte_video every frame still comes
    out, in order, with exactly the alpha the filter gives when driven by hand."""
    from media import BrightnessEngine, imread, make_video

    from streammatte import matte_video
    from streammatte.sources.file import FileSource
    from streammatte.temporal import make_streaming

    src = tmp_path / "clip.mp4"
    make_video(src, frames=12, size=(96, 64))
    matte_video(src, tmp_path / "plain", engine=BrightnessEngine(), temporal="none")
    report = matte_video(src, tmp_path / "smooth", engine=BrightnessEngine(),
                         temporal="bidirectional")
    assert report.frames_out == 12
    stream = make_streaming("bidirectional")
    expected = []
    with FileSource(src) as source:
        for packet, png in zip(source, sorted((tmp_path / "plain").glob("*.png")), strict=True):
            alpha = imread(png)[..., 3].astype(np.float32) / 255.0  # binary: exact in uint8
            expected.extend(stream.push(alpha, packet.image))
    expected.extend(stream.flush())
    got = [imread(p)[..., 3] for p in sorted((tmp_path / "smooth").glob("*.png"))]
    assert len(got) == len(expected) == 12
    for want, have in zip(expected, got, strict=True):
        assert np.abs(np.clip(want * 255 + 0.5, 0, 255).astype(int) - have).max() <= 1
    assert any(not np.array_equal(a, b) for a, b in zip(
        got, [imread(p)[..., 3] for p in sorted((tmp_path / "plain").glob("*.png"))],
        strict=True)), "smoothing should change something on a moving square"


def test_guided_upsampling_runs_through_matte_video(tmp_path: Path) -> None:
    from media import make_tiny_onnx, make_video

    from streammatte import matte_video
    from streammatte.inference.ort import OrtEngine
    from streammatte.models.catalog import parse_spec
    from streammatte.models.store import sha256_of

    model = tmp_path / "tiny.onnx"
    make_tiny_onnx(model)
    spec = parse_spec({"name": "tiny", "licence": "MIT", "file": "tiny.onnx",
                       "sha256": sha256_of(model),
                       "input": {"name": "input.1", "size": [32, 32]}}, "tiny.toml")
    src = tmp_path / "clip.mp4"
    make_video(src, frames=2, size=(96, 64))
    with OrtEngine(spec, model, device="cpu") as engine:
        matte_video(src, tmp_path / "bilinear", engine=engine, temporal="none")
        matte_video(src, tmp_path / "guided", engine=engine, temporal="none", upsample="guided")
    from media import imread

    a = imread(next((tmp_path / "bilinear").glob("*.png")))[..., 3].astype(int)
    b = imread(next((tmp_path / "guided").glob("*.png")))[..., 3].astype(int)
    assert a.shape == b.shape == (64, 96)
    assert np.abs(a - b).max() > 10, "the guide must change the upsampled edges"


# -- cancel handles and results(): the contract matte_video and matte_frames rest on ---------

class CountingHandle:
    """A cancel handle that becomes set on its ``after``-th check."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.checks = 0

    def is_set(self) -> bool:
        self.checks += 1
        return self.checks >= self.after


def test_a_cancel_handle_is_checked_between_frames() -> None:
    produced: list[int] = []
    handle = CountingHandle(after=4)
    with pytest.raises(CancelledRun, match="cancelled"):
        Pipeline(_frames(10_000, produced), [Stage("s", lambda b: b)], cancel=handle).run()
    assert len(produced) == 3  # read three frames, stopped before the fourth


def test_cancelled_run_is_a_streammatte_error() -> None:
    from streammatte.errors import StreamMatteError

    assert issubclass(CancelledRun, StreamMatteError)


def test_results_come_back_in_order_in_the_callers_thread() -> None:
    where: set[str] = set()
    out = []
    for packet in Pipeline(_frames(50), [Stage("a", lambda b: b, batch_size=4)],
                           max_queue_frames=2).results():
        where.add(threading.current_thread().name)
        out.append(packet.index)
    assert out == list(range(50))
    assert where == {threading.current_thread().name}


def test_closing_results_early_stops_every_thread_and_reads_a_bounded_prefix() -> None:
    produced: list[int] = []
    before = set(threading.enumerate())
    results = Pipeline(_frames(1_000_000, produced), [Stage("a", lambda b: b),
                                                      Stage("b", lambda b: b)],
                       max_queue_frames=2).results()
    taken = [next(results).index for _ in range(5)]
    results.close()
    assert taken == list(range(5))
    assert set(threading.enumerate()) <= before
    # 3 queues of 2 and one frame in each of the 3 threads, beyond the 5 taken
    assert len(produced) <= 5 + 3 * 2 + 3 + 1


def test_results_reraise_a_stage_error() -> None:
    def fail_at_3(batch: list[FramePacket]) -> list[FramePacket]:
        if batch[0].index == 3:
            raise ValueError("bad frame 3")
        return batch

    got: list[int] = []
    with pytest.raises(ValueError, match="bad frame 3"):
        for packet in Pipeline(_frames(100), [Stage("f", fail_at_3)]).results():
            got.append(packet.index)
    # what was finished before the error may or may not have been handed out: never more
    assert got == list(range(len(got))) and len(got) <= 3
