"""The host chain as pipeline stages: preprocess → infer → alpha (temporal, compose) → write.

Every stage is a plain function over a batch of FramePackets (``pipeline.Stage``), so a
caller can insert one anywhere in the list: a stage before ``preprocess`` that decides a
frame needs no engine run sets ``packet.run_engine = False`` and gives it its ``alpha``;
``preprocess`` and ``infer`` then pass it through untouched.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from ..compose import Compositor
from ..frames import Alpha, FramePacket
from ..mask import MaskStep
from ..pipeline import Stage
from ..temporal import LookaheadFilter
from .matter import Matter


def host_stages(matter: Matter, stream: LookaheadFilter, compositor: Compositor | None,
                write: Callable[[FramePacket], None] | None, batch_size: int,
                mask: MaskStep | None = None) -> list[Stage]:
    """``preprocess`` → ``infer`` (``batch_size`` frames a call) → ``alpha`` (to frame size,
    the temporal ``stream``, the ``mask`` controls, then ``compositor`` into
    ``packet.output`` when there is one) → ``encode`` (``write`` each packet, when there is
    a writer)."""

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
            if p.raw_output is not None:
                alpha = matter.to_alpha(p.raw_output, p.image)
                p.raw_output = None
            elif p.alpha is not None:
                alpha = p.alpha
            else:
                raise RuntimeError(f"frame {p.index} skipped the engine, but no stage before "
                                   "the alpha stage gave it an alpha")
            waiting.append(p)
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
