"""The host chain as pipeline stages: preprocess → infer → alpha (temporal, compose) → write.

Every stage is a plain function over a batch of FramePackets (``pipeline.Stage``), so a
caller can insert one anywhere in the list: a stage before ``preprocess`` that decides a
frame needs no engine run sets ``packet.run_engine = False`` and gives it its ``alpha``;
``preprocess`` and ``infer`` then pass it through untouched.

A keyframe mode (``keyframes.KeyframeSmoother``, also behind live load shedding) is such a
case: its ``KeyframeGate`` gives the ``motion`` stage, which computes the flow to the previous
frame and lets the engine run on keyframes only; the alpha stage then hands the propagator the
engine's alpha on keyframes and nothing between them.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..compose import Compositor
from ..frames import Alpha, FramePacket
from ..mask import MaskStep
from ..pipeline import Stage
from ..temporal import DecidesEngine, EngineDecision, LookaheadFilter
from .matter import Matter


@dataclass(slots=True)
class EngineCount:
    """Frames that reached the alpha stage with the engine's output: one run's count."""

    frames: int = 0


class KeyframeGate:
    """A mode that skips the engine (``temporal.DecidesEngine``: a keyframe mode, or live
    load shedding over one) at both ends of the host chain: ``stage()``, the ``motion``
    stage that goes before ``preprocess`` and decides which frames the engine runs on, and
    ``push``, which the alpha stage calls with each frame in the same order. One per run;
    the host stages a GPU self-check falls back to share it with the ones they replace.

    ``every_frame``: the engine still runs on every frame (a stateful engine such as MOG2
    learns from each one) and the mode gets the keyframes' alphas only, the output
    ``streammatte compare`` scores for the mode."""

    def __init__(self, smoother: DecidesEngine[Any], *, every_frame: bool = False) -> None:
        self.smoother = smoother
        self.every_frame = every_frame
        # what ``motion`` said of each frame, in frame order, until the alpha stage takes it
        self._decisions: collections.deque[EngineDecision] = collections.deque()

    def stage(self) -> Stage:
        def motion(batch: list[FramePacket]) -> list[FramePacket]:
            for p in batch:
                decision = self.smoother.decide(p.image)
                p.run_engine = decision.keyframe or self.every_frame
                self._decisions.append(decision)
            return batch

        return Stage("motion", motion)

    def push(self, packet: FramePacket, alpha: Alpha | None) -> list[Alpha]:
        decision = self._decisions.popleft()
        return self.smoother.push_decided(packet.image, decision,
                                          alpha if decision.keyframe else None)


def host_stages(matter: Matter, stream: LookaheadFilter, compositor: Compositor | None,
                write: Callable[[FramePacket], None] | None, batch_size: int,
                mask: MaskStep | None = None, *, gate: KeyframeGate | None = None,
                count: EngineCount | None = None) -> list[Stage]:
    """``preprocess`` → ``infer`` (``batch_size`` frames a call) → ``alpha`` (to frame size,
    the temporal ``stream``, the ``mask`` controls, then ``compositor`` into
    ``packet.output`` when there is one) → ``encode`` (``write`` each packet, when there is
    a writer). With a ``gate`` (its ``stream``'s), the alpha stage takes its frames through
    it, and the caller puts ``gate.stage()`` first. ``count`` counts the frames that ran the
    engine."""

    def preprocess(batch: list[FramePacket]) -> list[FramePacket]:
        for p in batch:
            if p.run_engine:
                p.model_input = matter.preprocess(p.image)
        return batch

    def infer(batch: list[FramePacket]) -> list[FramePacket]:
        runs = [p for p in batch if p.run_engine]
        if runs:
            outputs = matter.infer([p.model_input for p in runs if p.model_input is not None])
            for p, raw in zip(runs, outputs, strict=True):
                p.raw_output = raw
                p.model_input = None
        return batch

    # A look-ahead temporal filter answers a few frames late: packets wait here, in order,
    # until their smoothed alpha comes back, and the end-of-stream flush releases the rest.
    waiting: collections.deque[FramePacket] = collections.deque()

    def finish(alphas: list[Alpha]) -> list[FramePacket]:
        done = []
        for alpha in alphas:
            p = waiting.popleft()
            if mask is not None and mask.active:
                alpha = mask.alpha(alpha)
                p.foreground = mask.foreground(p.image, alpha)
            p.alpha = alpha
            if compositor is not None:
                p.output = compositor(p.image, alpha, p.foreground)
            done.append(p)
        return done

    def to_alpha(batch: list[FramePacket]) -> list[FramePacket]:
        ready: list[FramePacket] = []
        for p in batch:
            alpha: Alpha | None = p.alpha
            if p.raw_output is not None:
                alpha = matter.to_alpha(p.raw_output, p.image)
                p.raw_output = None
                if count is not None:
                    count.frames += 1
            waiting.append(p)
            if gate is not None:
                ready.extend(finish(gate.push(p, alpha)))
                continue
            if alpha is None:
                raise RuntimeError(f"frame {p.index} skipped the engine, but no stage before "
                                   "the alpha stage gave it an alpha")
            ready.extend(finish(stream.push(alpha, p.image)))
        return ready

    def flush() -> list[FramePacket]:
        return finish(stream.flush())

    stages = [
        Stage("preprocess", preprocess),
        Stage("infer", infer, batch_size=batch_size),
        # "compose": the name the bench table and its readers know this stage by
        Stage("compose", to_alpha, flush=flush),
    ]
    if write is not None:
        stages.append(encode_stage(write))
    return stages


def encode_stage(write: Callable[[FramePacket], None]) -> Stage:
    """The last stage of either chain: hand each packet to the sink's ``write``."""

    def write_batch(batch: list[FramePacket]) -> list[FramePacket]:
        for p in batch:
            write(p)
        return batch

    return Stage("encode", write_batch)
