"""Threads joined by bounded queues: where streammatte runs a chain's stages concurrently.

A source feeds a chain of stages; each stage runs in its own thread, takes a batch of frames
from the queue before it and passes them on. PyAV, OpenCV and ONNX Runtime release the GIL
while they work, so decode, inference and encode overlap on separate cores.

Threads: this module owns every thread that runs frames through a chain, for files, the
frames API (``results()``) and ``streammatte live``; ``run()`` / ``results()`` start them and
join them before they return. The other threads in streammatte never run a chain's stages
concurrently: the server hands blocking calls to asyncio executors (one worker per live peer,
in which that peer's frames go through ``Chain.alpha`` one at a time; a pool whose workers
each call ``matte_video`` for a job or ``matte_image`` for a picture; ``asyncio.to_thread``
for probing and file removal), and the benchmark samples memory on a thread of its own.

Back-pressure: ``block`` (files) never drops a frame, a full queue stalls the producer;
``latest`` (live) keeps only the newest frames in front of the first stage and counts the
ones it drops. Memory is bounded by the queue sizes, however long the input.

Cancellation: a ``cancel`` handle (a ``threading.Event``, or any object with ``is_set()``)
is checked between frames; once set, every thread stops and the run raises CancelledRun.

An exception in any stage stops every thread and is re-raised in the caller, the stage's name
attached as a note.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from .errors import CancelledRun
from .frames import FramePacket

StageFn = Callable[[list[FramePacket]], list[FramePacket]]
BackPressure = Literal["block", "latest"]


class CancelHandle(Protocol):
    """What ``cancel=`` takes: set once the run should stop. ``threading.Event`` is one."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Stage:
    """A named step over a batch of frames; ``batch_size`` > 1 gathers frames first.

    A stage may hold frames back (a look-ahead filter, double-buffered GPU work) and return
    fewer than it was given; ``flush`` is then called once at the end of the stream and must
    return every frame still held, in order.
    """

    name: str
    fn: StageFn
    batch_size: int = 1
    flush: Callable[[], list[FramePacket]] | None = None


@dataclass(slots=True)
class StageStats:
    name: str
    frames: int = 0
    busy_s: float = 0.0

    @property
    def ms_per_frame(self) -> float:
        return 1000.0 * self.busy_s / self.frames if self.frames else 0.0


@dataclass(slots=True)
class PipelineStats:
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    elapsed_s: float = 0.0
    stages: list[StageStats] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames_out / self.elapsed_s if self.elapsed_s > 0 else 0.0


class _Stopped(Exception):
    """Raised inside a worker when another worker failed or the run was cancelled."""


_END = object()

# how long a cancelled run waits for its workers to finish the batch in hand
_STOP_GRACE_S = 60.0


class _Channel:
    """A bounded FIFO between two threads that gives up when the run is stopped."""

    def __init__(self, capacity: int, policy: BackPressure, stop: threading.Event) -> None:
        self._items: collections.deque[object] = collections.deque()
        self._capacity = capacity
        self._policy = policy
        self._stop = stop
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item: object) -> None:
        with self._cond:
            if self._stop.is_set():  # a stopped run hands nothing further downstream
                raise _Stopped
            if self._policy == "latest" and item is not _END:
                while len(self._items) >= self._capacity:
                    self._items.popleft()
                    self.dropped += 1
            else:
                while len(self._items) >= self._capacity and item is not _END:
                    if self._stop.is_set():
                        raise _Stopped
                    self._cond.wait(0.1)
            self._items.append(item)
            self._cond.notify_all()

    def get(self) -> object:
        with self._cond:
            # checked before the queue: a stopped run must not drain what is already queued,
            # or Ctrl-C would wait for every frame in flight to pass through every stage
            while not self._stop.is_set() and not self._items:
                self._cond.wait(0.1)
            if self._stop.is_set():
                raise _Stopped
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class Pipeline:
    """Runs ``source`` through ``stages``; the last stage is normally the sink's writer."""

    def __init__(
        self,
        source: Iterable[FramePacket],
        stages: Sequence[Stage],
        *,
        max_queue_frames: int = 4,
        back_pressure: BackPressure = "block",
        cancel: CancelHandle | None = None,
    ) -> None:
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        if max_queue_frames < 1:
            raise ValueError(f"max_queue_frames should be >= 1, got {max_queue_frames}")
        self.source = source
        self.stages = list(stages)
        self.max_queue_frames = max_queue_frames
        self.back_pressure = back_pressure
        self._cancel = cancel
        self.stats = PipelineStats(stages=[StageStats("decode")] +
                                   [StageStats(s.name) for s in self.stages])
        self._stop = threading.Event()
        self._errors: list[tuple[str, BaseException]] = []
        self._lock = threading.Lock()
        self._source_channel: _Channel | None = None

    @property
    def dropped(self) -> int:
        """Frames the source has dropped so far (``latest`` back-pressure), read live from any
        thread: a stage can watch it to shed work while the run is falling behind."""
        channel = self._source_channel
        return channel.dropped if channel is not None else self.stats.dropped

    def cancel(self) -> None:
        """Ask every thread to stop; ``run()`` / ``results()`` then raise CancelledRun."""
        self._stop.set()

    def _cancelled(self) -> bool:
        if self._cancel is not None and self._cancel.is_set():
            self._stop.set()
        return self._stop.is_set()

    def _fail(self, stage: str, exc: BaseException) -> None:
        with self._lock:
            self._errors.append((stage, exc))
        self._stop.set()

    def _read(self, out: _Channel) -> None:
        stats = self.stats.stages[0]
        try:
            iterator = iter(self.source)
            while not self._cancelled():
                start = time.perf_counter()
                try:
                    packet = next(iterator)
                except StopIteration:
                    break
                stats.busy_s += time.perf_counter() - start
                stats.frames += 1
                self.stats.frames_in += 1
                out.put(packet)
            out.put(_END)
        except _Stopped:
            pass
        except BaseException as exc:
            self._fail("decode", exc)

    def _work(self, stage: Stage, stats: StageStats, inbox: _Channel, out: _Channel | None
              ) -> None:
        try:
            ended = False
            while not ended:
                batch: list[FramePacket] = []
                while len(batch) < stage.batch_size:
                    item = inbox.get()
                    if item is _END:
                        ended = True
                        break
                    assert isinstance(item, FramePacket)
                    batch.append(item)
                results: list[FramePacket] = []
                start = time.perf_counter()
                if batch:
                    results = stage.fn(batch)
                    stats.frames += len(batch)
                if ended and stage.flush is not None:
                    results = [*results, *stage.flush()]
                stats.busy_s += time.perf_counter() - start
                for packet in results:
                    if out is not None:
                        out.put(packet)
                    else:
                        self.stats.frames_out += 1
            if out is not None:
                out.put(_END)
        except _Stopped:
            pass
        except BaseException as exc:
            self._fail(stage.name, exc)

    def _prepare(self, last: _Channel | None
                 ) -> tuple[list[threading.Thread], list[_Channel]]:
        """The reader and one thread per stage, not started; the last stage hands its frames
        to ``last`` (``results()``) or counts them (``run()``, where the last stage writes)."""
        channels = [
            _Channel(self.max_queue_frames, self.back_pressure if i == 0 else "block", self._stop)
            for i in range(len(self.stages))
        ]
        self._source_channel = channels[0]
        threads = [threading.Thread(target=self._read, args=(channels[0],), name="sm-decode",
                                    daemon=True)]
        for i, stage in enumerate(self.stages):
            out = channels[i + 1] if i + 1 < len(channels) else last
            threads.append(threading.Thread(
                target=self._work, args=(stage, self.stats.stages[i + 1], channels[i], out),
                name=f"sm-{stage.name}", daemon=True))
        return threads, channels

    def _halt(self, threads: list[threading.Thread], channels: list[_Channel]) -> None:
        """Stop the workers and wait for them before unwinding."""
        self._stop.set()
        for channel in channels:
            channel.wake()
        # Each worker stops at its next queue operation, so this waits out at most one
        # batch per stage. The wait matters: a daemon thread still inside native code
        # (OpenCV, ONNX Runtime) when the interpreter exits aborts the whole process.
        deadline = time.monotonic() + _STOP_GRACE_S
        for thread in threads:
            if thread.ident is not None:  # a signal can land while they are being started
                thread.join(max(0.0, deadline - time.monotonic()))

    def _outcome(self) -> PipelineStats:
        if self._errors:
            stage_name, exc = self._errors[0]
            if hasattr(exc, "add_note"):
                exc.add_note(f"(in pipeline stage {stage_name!r})")
            raise exc
        if self._stop.is_set():
            raise CancelledRun("the run was cancelled")
        return self.stats

    def run(self, on_progress: Callable[[PipelineStats], None] | None = None,
            progress_interval_s: float = 0.25) -> PipelineStats:
        """Run to the end; re-raise the first stage error (its cause chained) in the caller."""
        started = time.perf_counter()
        threads, channels = self._prepare(None)
        try:
            # started inside the try: Ctrl-C or SIGTERM can land in Thread.start()'s wait,
            # and the threads already running must still be stopped before unwinding
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads):
                for thread in threads:
                    thread.join(progress_interval_s / len(threads))
                self.stats.elapsed_s = time.perf_counter() - started
                self.stats.dropped = channels[0].dropped
                if self._cancelled():
                    for channel in channels:
                        channel.wake()
                if on_progress is not None:
                    on_progress(self.stats)
        except BaseException:
            # Ctrl-C lands here, in the main thread: stop the workers before unwinding
            self._halt(threads, channels)
            raise
        self.stats.elapsed_s = time.perf_counter() - started
        self.stats.dropped = channels[0].dropped
        return self._outcome()

    def results(self) -> Generator[FramePacket, None, None]:
        """Run, yielding what the last stage returns, in order, in the caller's thread.

        At most ``max_queue_frames`` finished frames wait for the caller, so a slow consumer
        stalls the stages rather than growing memory. Closing the generator early (``close()``,
        ``break`` out of a ``with contextlib.closing(...)``) stops and joins every thread.
        A stage error is re-raised here; a cancelled run raises CancelledRun.
        """
        started = time.perf_counter()
        out = _Channel(self.max_queue_frames, "block", self._stop)
        threads, channels = self._prepare(out)
        finished = False
        try:
            for thread in threads:
                thread.start()
            while True:
                try:
                    item = out.get()
                except _Stopped:
                    break
                if item is _END:
                    finished = True
                    break
                assert isinstance(item, FramePacket)
                self.stats.frames_out += 1
                self.stats.elapsed_s = time.perf_counter() - started
                self.stats.dropped = channels[0].dropped
                yield item
        finally:
            if not finished:
                self._halt(threads, [*channels, out])
        for thread in threads:
            thread.join()
        self.stats.elapsed_s = time.perf_counter() - started
        self.stats.dropped = channels[0].dropped
        self._outcome()


__all__ = ["BackPressure", "CancelHandle", "CancelledRun", "Pipeline", "PipelineStats", "Stage",
           "StageFn", "StageStats"]
