"""Keyframes plus propagation: the engine runs only on some frames; one optical flow per frame
pair carries its mattes to the frames between and smooths them.

Two steps, driven by a chain in frame order:

- ``MotionStep`` sees every frame first, before the engine. It brings the frame to a small
  working copy, computes the optical flow between it and the previous frame (once per pair),
  checks where that flow can be trusted, and decides whether the engine must run on this frame
  (``Motion.keyframe``): the first frame, a scene cut, propagation too unreliable since the last
  keyframe (occlusion, new content, flow that fails its checks), or ``max_interval`` frames
  since the last one.
- ``Propagator`` receives every frame with its ``Motion`` and, for keyframes only, the engine's
  alpha. It runs a forward and a backward recursion along the flow (the keyframes' evidence
  carried frame to frame, discounted where the flow is not trusted), merges them and upsamples
  the result to frame size. It answers ``lookahead`` frames late (0: forward only, for live)
  with one alpha per frame, in order; ``flush()`` answers the rest at the end of the stream.

The same flow serves the propagation and the smoothing: at keyframes the recursion merges the
engine's alpha with the neighbouring keyframes' evidence, which averages the model's
frame-to-frame error out as ``temporal.Bidirectional`` does with every frame's alpha.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from .errors import ConfigError
from .frames import Alpha, RGBImage
from .refine import guided_apply
from .temporal import (
    SceneCutDetector,
    _consistency,
    _fused_mean,
    _grid,
    _sample,
    _shrink,
    _similarity,
    flow_fits,
)

FloatArray = npt.NDArray[np.float32]
FlowPreset = Literal["ultrafast", "fast", "medium"]
_PRESETS: dict[str, int] = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
                            "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyframeConfig:
    """How keyframes are chosen and how mattes are carried between them.

    Sizes are in pixels of the working copy (``width`` wide). ``max_risk`` bounds the
    unreliability accumulated since the last keyframe: the sum over frames of the share of the
    working copy where the flow fails its checks. ``max_interval`` 1 runs the engine on every
    frame (smoothing only).
    """

    width: int = 384
    flow_preset: FlowPreset = "medium"
    #: DIS's finest pyramid level: 0 is the working copy itself (what lines edges up); 2 is
    #: the preset's own, a quarter of it (cheaper)
    finest_scale: int = 0
    flow_refine: int = 0  # DIS variational refinement iterations (0: off)
    backward_flow: bool = True  # a second DIS call for the reverse flow; False: invert the one
    invert_iterations: int = 3
    max_interval: int = 8
    max_risk: float = 0.25
    risk_threshold: float = 0.5  # a pixel counts as unreliable below this confidence
    #: accumulated mean motion since the last keyframe, px of a 640 px wide copy
    max_motion: float = 1e9
    lookahead: int = 8
    memory: float = 0.9
    floor: float = 1e-4
    sigma: float = 25.0
    #: forward–backward tolerance in px of a 640 px wide copy (scaled to ``width``)
    fb_tolerance: float = 2.0
    fb_relative: float = 0.1
    sharpen: float = 10.0
    spread: float = 0.1
    #: forward only: where a keyframe's alpha and the carried matte differ by more than this
    #: (smoothstep from the first to the second value), the carried evidence gives way (a
    #: change the flow missed); None: never
    disagree: tuple[float, float] | None = None
    guide_width: int = 480  # 0: bilinear upsampling
    guide_radius: int = 1
    guide_eps: float = 1e-4
    scene_cut: float = 40.0

    def __post_init__(self) -> None:
        if self.width < 16:
            raise ConfigError(f"the working width should be >= 16 px, got {self.width}")
        if self.max_interval < 1:
            raise ConfigError(f"max_interval should be >= 1 frame, got {self.max_interval}")
        if self.lookahead < 0:
            raise ConfigError(f"look-ahead should be >= 0 frames, got {self.lookahead}")
        if not 0 <= self.memory < 1:
            raise ConfigError(f"memory should be in [0, 1), got {self.memory}")
        if self.flow_preset not in _PRESETS:
            raise ConfigError(f"unknown DIS preset {self.flow_preset!r} "
                              f"(choose from: {', '.join(_PRESETS)})")


#: files: a flow pair per frame pair at 480 px (DIS fast preset at full working resolution),
#: look-ahead 8; the engine runs where the flow fails its checks on more than 4 % of the
#: frame, summed since the last keyframe, and at least every 8th frame (docs/temporal.md,
#: fifth round)
FILE_PRESET = KeyframeConfig(width=480, flow_preset="fast", lookahead=8, max_interval=8,
                             max_risk=0.04)
#: live: one flow per frame pair at 320 px (DIS's finest level at 160 px: a quarter of the
#: cost, docs/temporal.md "Live") with the photometric check only (σ 12 grey levels), forward
#: only, a disagreement gate so it does not lag a change the flow missed, bilinear output; it
#: propagates only while the scene is nearly still (2 px of a 640 px copy since the last
#: keyframe), which a webcam often is and DAVIS never
LIVE_PRESET = KeyframeConfig(width=320, flow_preset="fast", finest_scale=1, backward_flow=False,
                             lookahead=0, sigma=12.0, disagree=(0.6, 0.95), max_interval=8,
                             max_motion=2.0, max_risk=0.05, guide_width=0)


@dataclass(slots=True)
class Link:
    """From a frame to a neighbour: where each working pixel lies there (absolute x, y,
    H×W×2) and how far the neighbour's content is trusted there (H×W in [0, 1]: the
    forward–backward check × the photometric check)."""

    where: FloatArray
    confidence: FloatArray


@dataclass(slots=True)
class Motion:
    """What ``MotionStep`` attaches to a frame: all the propagator needs besides the alpha."""

    index: int
    keyframe: bool
    #: why the engine runs here: "first", "cut", "risk", "motion", "interval", "small" (a
    #: frame too small for optical flow), or "" if it does not
    reason: str
    small: RGBImage  # the frame at working size
    grey: npt.NDArray[np.uint8]
    #: this frame → the previous one, and the previous → this; None at the first frame or a cut
    to_prev: Link | None
    prev_to_next: Link | None
    #: share of the working copy where the flow to the previous frame fails its checks
    unreliable: float = 0.0
    #: mean motion to the previous frame, px of a 640 px wide copy
    motion: float = 0.0


def _dis(cfg: KeyframeConfig) -> cv2.DISOpticalFlow:
    solver = cv2.DISOpticalFlow.create(_PRESETS[cfg.flow_preset])
    solver.setFinestScale(cfg.finest_scale)
    # variational refinement smooths the flow across object boundaries, where mattes must line up
    solver.setVariationalRefinementIterations(cfg.flow_refine)
    return solver


def _invert(flow: FloatArray, iterations: int) -> FloatArray:
    """The reverse of ``flow`` (which maps each pixel x of A to x + flow(x) in B): for each
    pixel y of B, r(y) with y + r(y) in A, from the fixed point r(y) = −flow(y + r(y))."""
    grid = _grid(*flow.shape[:2])
    rev = -flow
    for _ in range(iterations):
        rev = -np.asarray(_sample(flow, grid + rev), np.float32)
    return np.asarray(rev, np.float32)


def _confidence(flow: FloatArray, back: FloatArray | None, here: FloatArray,
                there: FloatArray, cfg: KeyframeConfig) -> tuple[FloatArray, FloatArray]:
    """(absolute positions in the neighbour, confidence): the photometric check × the
    forward–backward check (where the reverse flow ``back`` is known), as ``bidirectional``
    weighs its links."""
    where = _grid(*flow.shape[:2]) + flow
    conf = _similarity(here, np.asarray(_sample(there, where), np.float32), cfg.sigma)
    if back is not None:
        conf *= _consistency(flow, back, cfg.fb_tolerance * flow.shape[1] / 640,
                             cfg.fb_relative)
    return np.asarray(where, np.float32), conf


class KeyframeRule:
    """When the engine must run again, from what the flow said about each frame since the
    last keyframe: its ``unreliable`` share and its mean ``motion`` (see ``Motion``).
    ``__call__`` returns the reason ("interval", "risk", "motion") or "" (propagate)."""

    def __init__(self, config: KeyframeConfig) -> None:
        self.config = config
        self.restart()

    def __call__(self, unreliable: float, motion: float) -> str:
        cfg = self.config
        self._since += 1
        self._risk += unreliable
        self._moved += motion
        reason = ("interval" if self._since >= cfg.max_interval else
                  "risk" if self._risk > cfg.max_risk else
                  "motion" if self._moved > cfg.max_motion else "")
        if reason:
            self.restart()
        return reason

    def restart(self) -> None:
        """A keyframe came (first frame, cut): count from here."""
        self._since, self._risk, self._moved = 0, 0.0, 0.0


class MotionStep:
    """Sees each frame first (in order) and says whether the engine must run on it.

    Not thread-safe; one per stream. ``reset()`` forgets the previous frame (seek)."""

    def __init__(self, config: KeyframeConfig | None = None) -> None:
        self.config = config or KeyframeConfig()
        self._dis = _dis(self.config)
        self._cuts = SceneCutDetector(self.config.scene_cut)
        self._prev: npt.NDArray[np.uint8] | None = None  # the previous frame's grey
        self._shape: tuple[int, ...] | None = None
        self._index = 0
        self._rule = KeyframeRule(self.config)

    def __call__(self, frame: RGBImage) -> Motion:
        cfg = self.config
        rgb: RGBImage = (frame if frame.ndim == 3 else
                         np.asarray(cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB), np.uint8))
        small = np.asarray(_shrink(rgb, cfg.width), np.uint8)
        grey = np.asarray(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), np.uint8)
        # the cut detector reads a 64 px thumbnail: the working copy serves, full size would
        # cost a colour conversion of the whole frame (10 ms at 4K)
        cut = self._cuts(small) or rgb.shape != self._shape
        self._shape = rgb.shape
        index, self._index = self._index, self._index + 1
        prev, self._prev = self._prev, grey
        if prev is None or cut or not flow_fits(grey):
            self._rule.restart()
            reason = "first" if prev is None else "cut" if cut else "small"
            return Motion(index, True, reason, small, grey, None, None)
        back = self._flow(grey, prev)  # this → previous
        here, there = grey.astype(np.float32), prev.astype(np.float32)
        if cfg.lookahead == 0 and not cfg.backward_flow:
            # forward only: the link back to the previous frame is all the propagator uses
            to_prev, prev_to_next = Link(*_confidence(back, None, here, there, cfg)), None
        else:
            fwd = (self._flow(prev, grey) if cfg.backward_flow
                   else _invert(back, cfg.invert_iterations))
            to_prev = Link(*_confidence(back, fwd, here, there, cfg))
            prev_to_next = Link(*_confidence(fwd, back, there, here, cfg))
        unreliable = float(np.count_nonzero(to_prev.confidence < cfg.risk_threshold)
                           / to_prev.confidence.size)
        motion = float(cv2.magnitude(back[..., 0], back[..., 1]).mean()) * 640 / grey.shape[1]
        reason = self._rule(unreliable, motion)
        return Motion(index, bool(reason), reason, small, grey, to_prev, prev_to_next,
                      unreliable, motion)

    def reset(self) -> None:
        self._prev = None
        self._shape = None
        self._cuts.reset()
        self._rule.restart()

    def _flow(self, a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> FloatArray:
        """For each pixel of ``a``, where it lies in ``b`` (relative, working px)."""
        return np.asarray(self._dis.calc(a, b, None), np.float32)  # type: ignore[call-overload]


@dataclass(slots=True)
class _Item:
    frame: RGBImage
    motion: Motion
    own: FloatArray | None  # (α, 1, α²) at working size; None where the engine did not run
    forward: FloatArray | None = None
    to_next: Link | None = None
    #: the backward recursion's sums here, this frame's own evidence included, carried from
    #: ``Propagator._back_end``: computed once per chain end, not once per emitted frame
    backward: FloatArray | None = None


def _evidence(alpha: Alpha) -> FloatArray:
    """One frame's evidence as the recursion's sums: (Σwα, Σw, Σwα²) = (α, 1, α²)."""
    return np.dstack([alpha, np.ones_like(alpha), np.square(alpha)])


class Propagator:
    """Alphas for every frame from the keyframes' alphas, carried along the motion step's flow.

    ``push(frame, motion, alpha)``: ``alpha`` (any size; resized to the working copy) is the
    engine's output, required on keyframes and optional elsewhere (where given, it counts as
    evidence too). Returns the alphas that became ready, oldest first, at the frame's size:
    none for the first ``lookahead`` frames, then one per push. ``flush()`` returns the rest.
    Contract: n pushes and one flush return n alphas in push order. Frames must be pushed in
    the order the motion step saw them.
    """

    def __init__(self, config: KeyframeConfig | None = None) -> None:
        self.config = config or KeyframeConfig()
        self.delay = self.config.lookahead
        self._items: collections.deque[_Item] = collections.deque()
        self._last: _Item | None = None
        self._back_end: _Item | None = None  # where the cached backward sums start
        self.frames = 0
        self.engine_frames = 0

    def push(self, frame: RGBImage, motion: Motion, alpha: Alpha | None) -> list[Alpha]:
        if alpha is None and (motion.keyframe or motion.to_prev is None):
            raise ValueError(f"frame {motion.index} is a keyframe: it needs the engine's alpha")
        last = self._last
        if last is not None and motion.to_prev is not None:
            if last.motion.index + 1 != motion.index:
                raise ValueError(f"frames out of order: {motion.index} after "
                                 f"{last.motion.index}")
            last.to_next = motion.prev_to_next
        own = None if alpha is None else _evidence(self._working(alpha, motion.grey.shape))
        item = _Item(frame, motion, own)
        if motion.to_prev is None or last is None or last.forward is None:
            assert own is not None
            item.forward = own
        else:
            item.forward = self._carry(own, last.forward, motion.to_prev)
        self._last = item
        self._items.append(item)
        self.frames += 1
        self.engine_frames += own is not None
        if len(self._items) <= self.delay:
            return []
        return [self._emit()]

    def flush(self) -> list[Alpha]:
        out = []
        while self._items:
            out.append(self._emit())
        return out

    def reset(self) -> None:
        self._items.clear()
        self._last = None
        self._back_end = None

    def _working(self, alpha: Alpha, shape: tuple[int, ...]) -> Alpha:
        a = np.asarray(alpha, np.float32)
        if a.shape == shape[:2]:
            return a
        h, w = shape[:2]
        interp = cv2.INTER_AREA if a.shape[1] > w else cv2.INTER_LINEAR
        return np.asarray(cv2.resize(a, (w, h), interpolation=interp), np.float32)

    def _carry(self, own: FloatArray | None, sums: FloatArray, link: Link) -> FloatArray:
        cfg = self.config
        weight = np.maximum(cfg.memory * link.confidence, cfg.floor).astype(np.float32)
        moved = np.asarray(_sample(sums, link.where), np.float32)
        if own is not None and cfg.disagree is not None:
            carried = moved[..., 0] / np.maximum(moved[..., 1], np.float32(1e-30))
            lo, hi = cfg.disagree
            t = np.clip((np.abs(own[..., 0] / own[..., 1] - carried) - lo) / (hi - lo), 0, 1)
            weight *= 1 - t * t * (3 - 2 * t)
        moved *= weight[..., None]
        if own is not None:
            moved += own
        return moved

    def _emit(self) -> Alpha:
        cfg = self.config
        cur = self._items.popleft()
        assert cur.forward is not None
        # the backward pass from the furthest frame ahead with evidence that no cut separates
        # from cur: frames past it add nothing
        chain = [cur]
        for item in self._items:
            if chain[-1].to_next is None:
                break
            chain.append(item)
        while len(chain) > 1 and chain[-1].own is None:
            chain.pop()
        sums = cur.forward
        if len(chain) > 1:
            end = chain[-1]
            if end is not self._back_end:
                # a new furthest keyframe: the frames ahead of cur take their sums from it
                self._back_end, end.backward = end, end.own
                for item, after in zip(reversed(chain[1:-1]), reversed(chain[2:]), strict=True):
                    assert item.to_next is not None and after.backward is not None
                    item.backward = self._carry(item.own, after.backward, item.to_next)
            after = chain[1]
            assert cur.to_next is not None and after.backward is not None
            # cur's own evidence is in its forward sums
            sums = sums + self._carry(None, after.backward, cur.to_next)
        mean = _fused_mean(sums, cfg.sharpen, cfg.spread)
        mean = np.asarray(np.clip(mean, 0.0, 1.0), np.float32)
        return self._upsample(mean, cur)

    def _upsample(self, matte: Alpha, cur: _Item) -> Alpha:
        cfg = self.config
        h, w = cur.frame.shape[:2]
        if cfg.guide_width <= 0:
            if matte.shape == (h, w):
                return matte
            return np.asarray(cv2.resize(matte, (w, h), interpolation=cv2.INTER_LINEAR),
                              np.float32)
        small = cur.motion.small
        if small.shape[1] > cfg.guide_width:
            guide = _shrink(small, cfg.guide_width)
        elif small.shape[1] < cfg.guide_width <= w:
            guide = _shrink(cur.frame, cfg.guide_width)
        else:
            guide = small
        gh, gw = guide.shape[:2]
        if matte.shape != (gh, gw):
            interp = cv2.INTER_AREA if matte.shape[1] > gw else cv2.INTER_LINEAR
            matte = np.asarray(cv2.resize(matte, (gw, gh), interpolation=interp), np.float32)
        return guided_apply(matte, np.asarray(guide, np.float32) * np.float32(1 / 255),
                            cur.frame, cfg.guide_radius, cfg.guide_eps)


def run_offline(frames: Sequence[RGBImage], alpha_of: Callable[[int], Alpha],
                config: KeyframeConfig | None = None) -> tuple[list[Alpha], int]:
    """The two steps over a whole clip, the engine (``alpha_of(index)``) asked for keyframes
    only: (one alpha per frame, how many frames ran the engine)."""
    cfg = config or KeyframeConfig()
    motion_step, propagator = MotionStep(cfg), Propagator(cfg)
    out: list[Alpha] = []
    for i, frame in enumerate(frames):
        m = motion_step(frame)
        out += propagator.push(frame, m, alpha_of(i) if m.keyframe else None)
    out += propagator.flush()
    return out, propagator.engine_frames


class KeyframeSmoother:
    """``MotionStep`` + ``Propagator`` for one stream, in two ways:

    - skipping the engine (the chain does): ``decide(frame)`` before the engine says whether
      it must run (``Motion.keyframe``), then ``push_decided(frame, motion, alpha)`` with the
      engine's alpha on keyframes and None elsewhere; ``step(frame, engine)`` does both for
      one frame at a time (zero-lag only);
    - behind the look-ahead interface (``push(alpha, frame)`` / ``flush()``,
      ``temporal.LookaheadFilter``) for a caller that runs the engine on every frame anyway
      (``streammatte compare``): only the keyframes' alphas are used, so the output is exactly
      what the skipping chain gives.

    ``keyframes`` counts the frames whose alpha was used (those a skipping chain runs the
    engine on). Frames go through ``decide`` and ``push_decided`` in the same order.
    """

    def __init__(self, config: KeyframeConfig | None = None) -> None:
        self.config = config or KeyframeConfig()
        self.delay = self.config.lookahead
        self._motion = MotionStep(self.config)
        self._propagator = Propagator(self.config)

    @property
    def frames(self) -> int:
        return self._propagator.frames

    @property
    def keyframes(self) -> int:
        return self._propagator.engine_frames

    def decide(self, frame: RGBImage) -> Motion:
        """The next frame's motion, before the engine: ``keyframe`` says it must run."""
        return self._motion(frame)

    def push_decided(self, frame: RGBImage, motion: Motion, alpha: Alpha | None
                     ) -> list[Alpha]:
        """``frame`` with what ``decide`` said of it and the engine's alpha (required on
        keyframes; elsewhere None, or an alpha that then counts as evidence too): the
        alphas that became ready, oldest first (``Propagator.push``)."""
        return self._propagator.push(frame, motion, alpha)

    def step(self, frame: RGBImage, engine: Callable[[RGBImage], Alpha]) -> Alpha:
        """One frame's alpha at once, ``engine`` called on keyframes only (zero-lag only)."""
        if self.delay:
            raise ConfigError(f"this keyframe smoother looks ahead {self.delay} frame(s): "
                              "drive it with decide/push_decided and flush")
        motion = self._motion(frame)
        (out,) = self._propagator.push(frame, motion, engine(frame) if motion.keyframe else None)
        return out

    def push(self, alpha: Alpha, frame: RGBImage) -> list[Alpha]:
        motion = self._motion(frame)
        return self._propagator.push(frame, motion, alpha if motion.keyframe else None)

    def flush(self) -> list[Alpha]:
        return self._propagator.flush()

    def reset(self) -> None:
        self._motion.reset()
        self._propagator.reset()

    def __call__(self, alpha: Alpha, frame: RGBImage) -> Alpha:
        """Zero-lag use (``temporal.TemporalFilter``): needs ``lookahead`` 0."""
        if self.delay:
            raise ConfigError(f"this keyframe smoother looks ahead {self.delay} frame(s): "
                              "drive it with push/flush")
        (out,) = self.push(alpha, frame)
        return out
