"""The temporal stage: smooths alpha across frames. Pluggable, selected by name.

Two kinds of filter:

- **Zero-lag** (``TemporalFilter``, in ``TEMPORAL_FILTERS``): ``filter(alpha, frame)`` returns
  the smoothed alpha of that same frame at once. Safe for live use. Modes ``none``, ``ema``,
  ``adaptive`` and ``flow``.
- **Look-ahead** (``LookaheadFilter``, in ``LOOKAHEAD_FILTERS``): sees ``delay`` frames of the
  future before it answers. ``push(alpha, frame)`` returns the outputs that became ready (oldest
  first; none for the first ``delay`` frames, then one per frame) and ``flush()`` returns the
  rest at the end of the stream. For files only. Mode ``bidirectional``.

``make_streaming(name)`` gives either kind behind the push/flush interface, which is how a
pipeline stage should drive the temporal step; ``make_temporal(name)`` gives a zero-lag filter.

Every filter resets itself at a scene cut (a large change of the whole frame) and on a change
of frame size; ``reset()`` forgets everything (seek, new stream).

Why not a plain moving average: it drags the matte behind motion (on DAVIS parkour a fixed
0.4/0.6 EMA lowers IoU from 0.875 to 0.761). ``adaptive`` smooths only where the frame did not
change; ``flow`` first moves the previous matte along dense optical flow (OpenCV DIS), so it
can smooth moving edges too, and trusts the warp only where it explains the new frame.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import cv2
import numpy as np
import numpy.typing as npt

from .errors import ConfigError
from .frames import Alpha, RGBImage
from .refine import guided_apply

FloatArray = npt.NDArray[np.float32]


class TemporalFilter(Protocol):
    def __call__(self, alpha: Alpha, frame: RGBImage) -> Alpha:
        """Return the smoothed alpha for this frame (same shape as ``alpha``)."""
        ...

    def reset(self) -> None: ...


@runtime_checkable
class SkipsEngine(Protocol):
    """A zero-lag filter that decides, frame by frame, whether the engine runs at all
    (``keyframes-live``): ``step`` calls ``engine`` only where it must, and answers at once."""

    def step(self, frame: RGBImage, engine: Callable[[RGBImage], Alpha]) -> Alpha: ...


class EngineDecision(Protocol):
    """What a ``DecidesEngine`` said of a frame before the engine: ``keyframe``, it must run."""

    @property
    def keyframe(self) -> bool: ...


D = TypeVar("D", bound=EngineDecision)


@runtime_checkable
class DecidesEngine(Protocol[D]):
    """``SkipsEngine.step`` in two halves, for a chain whose engine runs in stages of its own:
    ``decide(frame)`` before the engine (``keyframe``: it must run on that frame), then
    ``push_decided(frame, decision, alpha)`` with the engine's alpha where it ran and None
    elsewhere, frames in the same order through both; it returns the alphas that became
    ready, oldest first."""

    def decide(self, frame: RGBImage) -> D: ...

    def push_decided(self, frame: RGBImage, decision: D, alpha: Alpha | None) -> list[Alpha]: ...


class LookaheadFilter(Protocol):
    """A temporal filter that answers ``delay`` frames late.

    Contract: after n pushes and one flush, exactly n alphas have been returned, in push order,
    the i-th belonging to the i-th pushed frame. ``reset()`` drops pending frames unanswered
    (use ``flush()`` first to keep them).
    """

    delay: int

    def push(self, alpha: Alpha, frame: RGBImage) -> list[Alpha]: ...

    def flush(self) -> list[Alpha]: ...

    def reset(self) -> None: ...


# -- shared pieces --------------------------------------------------------------------------

def _shrink(image: np.ndarray, width: int) -> np.ndarray:
    """``image`` brought down to ``width`` px wide (aspect kept, area-averaged); as it is when
    it is no wider."""
    h, w = image.shape[:2]
    if w <= width:
        return image
    size = (width, max(1, round(h * width / w)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))


def _grey_small(frame: RGBImage, width: int) -> npt.NDArray[np.uint8]:
    grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return np.asarray(_shrink(np.asarray(grey), width), dtype=np.uint8)


class SceneCutDetector:
    """Flags a frame whose small grey thumbnail differs from the previous one by more than
    ``threshold`` grey levels on average (a hard cut), or whose size changed."""

    def __init__(self, threshold: float = 40.0) -> None:
        self.threshold = threshold
        self._prev: npt.NDArray[np.float32] | None = None
        self._shape: tuple[int, ...] | None = None

    def __call__(self, frame: RGBImage) -> bool:
        thumb = cv2.resize(_grey_small(frame, 64), (64, 36),
                           interpolation=cv2.INTER_AREA).astype(np.float32)
        cut = (self._prev is not None and
               (self._shape != frame.shape or
                float(np.abs(thumb - self._prev).mean()) > self.threshold))
        self._prev, self._shape = thumb, frame.shape
        return cut

    def reset(self) -> None:
        self._prev = None
        self._shape = None


#: DIS optical flow needs its coarsest pyramid level to be at least one patch (8–12 px)
#: across: on a smaller working copy there is no flow, and each frame stands on its own (as
#: after a scene cut). Generous, so that every preset fits.
FLOW_MIN_SIDE = 24


def flow_fits(grey: np.ndarray) -> bool:
    """Whether DIS optical flow can run on a working copy of this size."""
    return bool(min(grey.shape[:2]) >= FLOW_MIN_SIDE)


class DenseFlow:
    """OpenCV DIS optical flow, computed on a grey copy at most ``width`` pixels wide and
    scaled to the size asked for (alpha comes from a ~320 px model: finer flow buys nothing)."""

    def __init__(self, width: int = 480, preset: int = cv2.DISOPTICAL_FLOW_PRESET_FAST) -> None:
        self.width = width
        self._dis = cv2.DISOpticalFlow.create(preset)

    def prepare(self, frame: RGBImage) -> npt.NDArray[np.uint8]:
        return _grey_small(frame, self.width)

    def __call__(self, to_grey: npt.NDArray[np.uint8], from_grey: npt.NDArray[np.uint8],
                 size: tuple[int, int]) -> FloatArray:
        """Flow that maps each pixel of ``to`` to where it was in ``from``, at ``size`` (w, h)."""
        flow = self._dis.calc(to_grey, from_grey, None)  # type: ignore[call-overload]
        w, h = size
        sh, sw = to_grey.shape[:2]
        if (sw, sh) != (w, h):
            flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
            flow[..., 0] *= w / sw
            flow[..., 1] *= h / sh
        out: FloatArray = np.asarray(flow, dtype=np.float32)
        return out


_GRIDS: dict[tuple[int, int], FloatArray] = {}


def _grid(h: int, w: int) -> FloatArray:
    """The (x, y) of every pixel of an h×w image, H×W×2, made once per size."""
    grid = _GRIDS.get((w, h))
    if grid is None:
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        grid = _GRIDS.setdefault((w, h), np.dstack([xs, ys]))
    return grid


def warp(image: np.ndarray, flow: FloatArray) -> np.ndarray:
    """Sample ``image`` at (x, y) + flow: brings a previous/next frame's content to this one."""
    m = _grid(*flow.shape[:2]) + flow
    return np.asarray(cv2.remap(image, m[..., 0], m[..., 1], cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE))


def _similarity(a: FloatArray, b: FloatArray, sigma: float) -> FloatArray:
    """exp(−(Δ/σ)²) of the blurred grey difference: 1 where ``b`` explains ``a``."""
    d = cv2.GaussianBlur(np.abs(a - b), (7, 7), 0)
    out: FloatArray = np.exp(-np.square(d / sigma)).astype(np.float32)
    return out


def _smoothstep(x: FloatArray, lo: float, hi: float) -> FloatArray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    out: FloatArray = (t * t * (3 - 2 * t)).astype(np.float32)
    return out


def _to_working(alpha: Alpha, grey: npt.NDArray[np.uint8]) -> tuple[Alpha, Alpha]:
    """(the alpha as float32 at full size, the same at the working copy's size)."""
    full = np.asarray(alpha, np.float32)
    if full.shape == grey.shape:
        return full, full
    small = cv2.resize(full, (grey.shape[1], grey.shape[0]), interpolation=cv2.INTER_AREA)
    return full, np.asarray(small, np.float32)


def _corrected(full: Alpha, small: Alpha, smoothed: Alpha) -> Alpha:
    """The full-size alpha moved by what smoothing did at working size (smoothed − small,
    upsampled): full-size detail is kept, and only three passes touch full size."""
    if full.shape == small.shape:
        same: Alpha = smoothed.copy()
        return same
    correction = cv2.resize(smoothed - small, (full.shape[1], full.shape[0]),
                            interpolation=cv2.INTER_LINEAR)
    out = cv2.add(full, correction)
    np.clip(out, 0.0, 1.0, out=out)
    return np.asarray(out, np.float32)


@dataclass(frozen=True, slots=True)
class BlendParams:
    """How far a filter trusts the past matte over the new one, per pixel.

    The new alpha's weight is ``min_weight`` where the past (warped) frame matches the new frame
    exactly, rising to 1 where it does not (grey difference ≫ ``sigma``), and forced towards 1
    where the new alpha disagrees with the past one by more than ``disagree`` (a real change
    the warp missed, e.g. a limb appearing: following it beats smoothing it away).
    """

    min_weight: float = 0.3
    sigma: float = 12.0
    disagree: tuple[float, float] = (0.35, 0.7)

    def __post_init__(self) -> None:
        if not 0.0 < self.min_weight <= 1.0:
            raise ConfigError(f"min_weight should be in (0, 1], got {self.min_weight}")
        if self.sigma <= 0:
            raise ConfigError(f"sigma should be > 0, got {self.sigma}")

    def new_weight(self, similarity: FloatArray, new: Alpha, past: Alpha) -> FloatArray:
        w = self.min_weight + (1.0 - self.min_weight) * (1.0 - similarity)
        jump = _smoothstep(np.abs(new - past), *self.disagree)
        out: FloatArray = np.maximum(w, jump).astype(np.float32)
        return out


# -- zero-lag filters -----------------------------------------------------------------------

class NoSmoothing:
    """Per-frame output, unchanged."""

    def __call__(self, alpha: Alpha, frame: RGBImage) -> Alpha:
        return alpha

    def reset(self) -> None:
        pass


class FixedEma:
    """alpha_t = (1 - w)·alpha_{t-1} + w·new: steady, but lags behind fast motion."""

    def __init__(self, new_weight: float = 0.4, scene_cut: float = 40.0) -> None:
        if not 0.0 < new_weight <= 1.0:
            raise ConfigError(f"ema weight should be in (0, 1], got {new_weight}")
        self.new_weight = new_weight
        self._cuts = SceneCutDetector(scene_cut)
        self._state: Alpha | None = None

    def __call__(self, alpha: Alpha, frame: RGBImage) -> Alpha:
        cut = self._cuts(frame)
        if cut or self._state is None or self._state.shape != alpha.shape:
            self._state = alpha.astype(np.float32, copy=True)
        else:
            self._state += self.new_weight * (alpha - self._state)
        out: Alpha = self._state.copy()
        return out

    def reset(self) -> None:
        self._state = None
        self._cuts.reset()


class AdaptiveEma:
    """Per-pixel EMA whose weight follows how much the frame changed there: still regions
    (static camera, background) are smoothed hard, moving ones pass through at once. No flow,
    so it is cheap; it cannot smooth the edges of something that moves. Like ``FlowBlend`` it
    works on a ``width``-px working copy and corrects the full-size alpha (vtest flicker −69 %
    instead of −68 % at full size, DAVIS unchanged, less than half the cost)."""

    def __init__(self, params: BlendParams | None = None, *, width: int = 480,
                 scene_cut: float = 40.0) -> None:
        self.params = params or BlendParams(min_weight=0.1, sigma=12.0, disagree=(0.6, 0.95))
        self.width = width
        self._cuts = SceneCutDetector(scene_cut)
        self._state: Alpha | None = None  # the last output, at working size
        self._prev_luma: FloatArray | None = None

    def __call__(self, alpha: Alpha, frame: RGBImage) -> Alpha:
        grey = _grey_small(frame, self.width)
        luma = grey.astype(np.float32)
        full, small = _to_working(alpha, grey)
        cut = self._cuts(frame)
        if cut or self._state is None or self._state.shape != small.shape \
                or self._prev_luma is None:
            self._state = small.copy()
        else:
            sim = _similarity(luma, self._prev_luma, self.params.sigma)
            w = self.params.new_weight(sim, small, self._state)
            self._state = (self._state + w * (small - self._state)).astype(np.float32)
        self._prev_luma = luma
        return _corrected(full, small, self._state)

    def reset(self) -> None:
        self._state = None
        self._prev_luma = None
        self._cuts.reset()


class FlowBlend:
    """Zero-lag, motion-compensated: warp the previous output along DIS optical flow to this
    frame, then blend it with the new alpha, trusting the warp where the warped previous frame
    matches this frame (an occluded or newly revealed pixel does not match, so it takes the new
    alpha).

    The blend runs on the flow's working copy (``flow_width`` px wide; a model's matte carries
    no finer detail than that) and reaches full size as a correction: output = new alpha +
    upsampled (smoothed − new), both at working size. So the few full-size passes are a shrink,
    an upsample and an add, and whatever detail the full-size alpha has (guided upsampling)
    passes through. Against warping and blending at full size: DAVIS dtSSD −4.0 % instead of
    −3.5 %, vtest flicker −64 % instead of −62 %, at a third of the cost at 854×480 and a
    sixth at 1080p (docs/temporal.md).
    """

    def __init__(self, params: BlendParams | None = None, *, flow_width: int = 480,
                 scene_cut: float = 40.0) -> None:
        self.params = params or BlendParams(min_weight=0.1, sigma=12.0, disagree=(0.6, 0.95))
        self._flow = DenseFlow(flow_width)
        self._cuts = SceneCutDetector(scene_cut)
        self._state: Alpha | None = None  # the last output, at working size
        self._prev: tuple[npt.NDArray[np.uint8], FloatArray] | None = None

    def __call__(self, alpha: Alpha, frame: RGBImage) -> Alpha:
        grey = self._flow.prepare(frame)
        luma = grey.astype(np.float32)
        size = (grey.shape[1], grey.shape[0])
        full, small = _to_working(alpha, grey)
        cut = self._cuts(frame)
        if (cut or self._state is None or self._prev is None or self._state.shape != small.shape
                or not flow_fits(grey)):
            self._state = small.copy()
        else:
            prev_grey, prev_luma = self._prev
            flow = self._flow(grey, prev_grey, size)
            past = warp(self._state, flow)
            sim = _similarity(luma, warp(prev_luma, flow), self.params.sigma)
            w = self.params.new_weight(sim, small, past)
            self._state = (past + w * (small - past)).astype(np.float32)
        self._prev = (grey, luma)
        return _corrected(full, small, self._state)

    def reset(self) -> None:
        self._state = None
        self._prev = None
        self._cuts.reset()


# -- look-ahead filters ---------------------------------------------------------------------

def _sample(image: np.ndarray, where: FloatArray) -> np.ndarray:
    """``image`` (up to four channels) sampled at the absolute positions ``where`` (H×W×2)."""
    return np.asarray(cv2.remap(image, where, None,  # type: ignore[call-overload]
                                cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))


def _consistency(there: FloatArray, back: FloatArray, tau: float, rel: float) -> FloatArray:
    """Forward–backward check of a flow pair, 1 where following ``there`` and then ``back``
    returns to the start, → 0 where it does not (occlusion, or a failed match).
    Tolerance ``tau`` px plus ``rel`` of the squared motion (Sundaram et al. 2010)."""
    returned = _sample(back, _grid(*there.shape[:2]) + there)
    tx, ty, rx, ry = there[..., 0], there[..., 1], returned[..., 0], returned[..., 1]
    err = np.square(tx + rx) + np.square(ty + ry)
    mag = tx * tx + ty * ty + rx * rx + ry * ry
    out: FloatArray = np.exp(-err / (tau * tau + rel * mag)).astype(np.float32)
    return out


@dataclass(slots=True)
class _Item:
    alpha: Alpha  # at working size
    small: RGBImage  # the frame at working size
    grey: npt.NDArray[np.uint8]  # ... and its grey, for the flow and the photometric check
    frame: RGBImage  # full size, the guide of the final refinement
    #: this frame's own evidence, H×W×3 sums (α, 1, α²): see _carry
    own: FloatArray
    #: the forward recursion's sums at this frame
    forward: FloatArray | None = None
    #: to the previous / next frame; None across a scene cut or at the ends
    to_prev: _Link | None = None
    to_next: _Link | None = None


@dataclass(slots=True)
class _Link:
    """Where each pixel of a frame lies in a neighbour (absolute x, y: H×W×2) and how far the
    neighbour's evidence is trusted there, repeated over three channels to scale the sums in
    one OpenCV call."""

    where: FloatArray
    weight: FloatArray


def _evidence(alpha: Alpha) -> FloatArray:
    """One frame's evidence as the recursion's sums: (Σwα, Σw, Σwα²) = (α, 1, α²)."""
    return np.dstack([alpha, np.ones_like(alpha), np.square(alpha)])


def _carry(own: FloatArray, sums: FloatArray, link: _Link) -> FloatArray:
    """One step of the recursion: a neighbour's ``sums`` brought along ``link`` to this frame,
    discounted by the link's weight, plus this frame's ``own`` evidence. Sums, not means, so a
    step is one warp and one multiply-add (mean = Σwα / Σw, where it is read)."""
    moved = np.asarray(_sample(sums, link.where), np.float32)
    cv2.multiply(moved, link.weight, dst=moved)
    cv2.add(moved, own, dst=moved)
    return moved


def _fused_mean(sums: FloatArray, sharpen: float, spread: float) -> FloatArray:
    """The recursion's ``sums`` read as alpha: mean = Σwα / Σw (0 where no evidence reached),
    re-sharpened where the evidence disagrees: with ``sharpen`` > 0, the mean moves toward a
    logistic of gain ``sharpen`` about 0.5 by (weighted spread / ``spread``), at most all
    the way."""
    weight = np.maximum(sums[..., 1], np.float32(1e-30))
    mean = sums[..., 0] / weight
    if sharpen > 0:
        # E[α²] − E[α]² cancels in float32: noise up to ~1e-7 when every frame agrees,
        # which must read as no spread at all (a steady 0.7 must stay 0.7)
        var = sums[..., 2] / weight - np.square(mean) - np.float32(1e-6)
        deviation = np.sqrt(np.maximum(var, 0.0))
        crisp = 1.0 / (1.0 + np.exp(-sharpen * (mean - 0.5)))
        mean = mean + np.minimum(deviation / spread, 1.0) * (crisp - mean)
    return np.asarray(mean, np.float32)


class Bidirectional:
    """Look-ahead, motion-compensated recursive smoothing in both directions, then edge
    refinement: a forward and a backward pass along optical flow, like a Kalman smoother.

    1. Every frame is brought to a working copy ``width`` px wide, and DIS optical flow (medium
       preset, at the working resolution, no variational refinement) is computed once each way
       between consecutive frames. Each direction gets a per-pixel weight: ``memory`` × a
       forward–backward check (fails at occlusions and bad matches) × a photometric check
       (does the warped neighbour frame explain this one).
    2. **Forward pass** (as frames arrive): the state of frame t is its own alpha merged with the
       state of frame t−1 carried along the flow; the past's evidence decays by the weight at
       every step, so about ``1 / (1 − memory)`` frames count where the flow holds, and none
       across an occlusion. **Backward pass** (when frame t is answered, ``lookahead`` frames
       later): the same from frame t + lookahead down to t. Never across a scene cut.
    3. The two passes are merged (the frame's own alpha counted once): a per-pixel probability
       with support from both sides, so a moving edge is not dragged behind, in which the
       per-frame model error (which differs from frame to frame) averages out.
    4. Where the merged evidence disagrees (weighted spread ≥ ``spread``) the mean is
       re-sharpened by a logistic of gain ``sharpen`` about 0.5: averaging edges that agree to
       within a pixel leaves a wider ramp than any of them has. Where it agrees (a steady
       semi-transparent region included) it is left as it is.
    5. The result, brought to ``guide_width``, is upsampled by the colour guided filter with
       the full frame as guide (``refine.guided_apply``), so the edges land on the frame's
       edges.

    Against the windowed fusion of 7 frames it replaces, recursion reaches further in time
    (about 10 frames each way) and each step warps one frame's distance, so flow errors do not
    compound along chains. Measured on DAVIS with u2netp (docs/temporal.md): dtSSD −20.6 %
    against per-frame output, IoU +0.037, ~110–120 ms/frame at 854×480 on a 2-core CPU (two
    DIS calls at 640 px are half of it).
    """

    #: the default look-ahead, in frames
    LOOKAHEAD = 10

    def __init__(self, lookahead: int = LOOKAHEAD, *, width: int = 640, memory: float = 0.9,
                 sigma: float = 25.0, sharpen: float = 10.0, spread: float = 0.1,
                 fb_tolerance: float = 2.0, fb_relative: float = 0.1, guide_width: int = 480,
                 guide_radius: int = 1, guide_eps: float = 1e-4,
                 flow_preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
                 scene_cut: float = 40.0) -> None:
        if lookahead < 1:
            raise ConfigError(f"look-ahead should be >= 1 frame, got {lookahead}")
        if width < 16 or guide_width < 16:
            raise ConfigError(f"working widths should be >= 16 px, got {width}, {guide_width}")
        if not 0 <= memory < 1:
            raise ConfigError(f"memory should be in [0, 1), got {memory}")
        if sigma <= 0 or spread <= 0 or sharpen < 0:
            raise ConfigError("sigma and spread should be > 0 and sharpen >= 0")
        self.delay = lookahead
        self.width = width
        self.memory = memory
        self.sigma = sigma
        self.sharpen = sharpen
        self.spread = spread
        # the tolerance is in working pixels: 2 px at 640 wide (1 px at the old 320)
        self.fb = (fb_tolerance, fb_relative)
        # the guided filter's coefficients from a 480 px copy: at 640 they cost 4× a 320 px
        # solve for no gain (−20.6 % either way; from 320 px, −19.6 %)
        self.guide_width = guide_width
        self.guide = (guide_radius, guide_eps)
        self._dis = cv2.DISOpticalFlow.create(flow_preset)
        # flow at the working resolution itself: the finest flow is what lines edges up
        # (flow computed at half the width and scaled up loses 2 of the 20 points); no
        # variational refinement: it smooths the flow across object boundaries
        self._dis.setFinestScale(0)
        self._dis.setVariationalRefinementIterations(0)
        self._cuts = SceneCutDetector(scene_cut)
        self._items: collections.deque[_Item] = collections.deque()

    # -- the stream --

    def push(self, alpha: Alpha, frame: RGBImage) -> list[Alpha]:
        rgb: RGBImage = (frame if frame.ndim == 3 else
                         np.asarray(cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB), np.uint8))
        small = _shrink(rgb, self.width)
        grey = np.asarray(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), np.uint8)
        cut = self._cuts(rgb)
        prev = self._items[-1] if self._items else None
        if (prev is not None and prev.grey.shape != grey.shape) or not flow_fits(grey):
            cut = True
        small_alpha = np.asarray(_shrink(np.asarray(alpha, np.float32), self.width), np.float32)
        item = _Item(small_alpha, small, grey, rgb, _evidence(small_alpha))
        if prev is not None and not cut:
            fwd = np.asarray(self._dis.calc(prev.grey, grey, None),  # type: ignore[call-overload]
                             np.float32)
            bwd = np.asarray(self._dis.calc(grey, prev.grey, None),  # type: ignore[call-overload]
                             np.float32)
            here, there = prev.grey.astype(np.float32), grey.astype(np.float32)
            prev.to_next = self._link(fwd, bwd, here, there)
            item.to_prev = self._link(bwd, fwd, there, here)
        if prev is None or item.to_prev is None or prev.forward is None:
            item.forward = item.own
        else:
            item.forward = _carry(item.own, prev.forward, item.to_prev)
        self._items.append(item)
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
        self._cuts.reset()

    # -- the work --

    def _link(self, flow: FloatArray, back: FloatArray, here: FloatArray, there: FloatArray
              ) -> _Link:
        """From a frame to a neighbour: where each pixel lies there, and how far the
        neighbour's evidence is trusted (memory × forward–backward × photometric check)."""
        where = _grid(*here.shape) + flow
        seen = _sample(there, where)
        weight = (self.memory * _consistency(flow, back, *self.fb)
                  * _similarity(here, seen, self.sigma)).astype(np.float32)
        return _Link(where, np.asarray(cv2.merge([weight, weight, weight]), np.float32))

    def _emit(self) -> Alpha:
        cur = self._items.popleft()
        assert cur.forward is not None
        # the backward pass, from the furthest frame ahead that no cut separates from cur
        ahead = [cur]
        for item in self._items:
            if ahead[-1].to_next is None:
                break
            ahead.append(item)
        backward = ahead[-1].own
        for item in reversed(ahead[:-1]):
            assert item.to_next is not None
            backward = _carry(item.own, backward, item.to_next)
        # both passes hold cur's own evidence: count it once
        mean = _fused_mean(cur.forward + backward - cur.own, self.sharpen, self.spread)
        fused = np.asarray(_shrink(np.asarray(mean, np.float32), self.guide_width), np.float32)
        guide = _shrink(cur.small.astype(np.float32) * np.float32(1 / 255), self.guide_width)
        return guided_apply(fused, np.asarray(guide, np.float32), cur.frame, *self.guide)


class ZeroLag:
    """A zero-lag filter behind the look-ahead interface (``delay`` 0)."""

    delay = 0

    def __init__(self, inner: TemporalFilter) -> None:
        self.inner = inner

    def push(self, alpha: Alpha, frame: RGBImage) -> list[Alpha]:
        return [self.inner(alpha, frame)]

    def flush(self) -> list[Alpha]:
        return []

    def reset(self) -> None:
        self.inner.reset()


def _keyframes_file() -> LookaheadFilter:
    from .keyframes import FILE_PRESET, KeyframeSmoother

    return KeyframeSmoother(FILE_PRESET)


def _keyframes_live() -> TemporalFilter:
    from .keyframes import LIVE_PRESET, KeyframeSmoother

    return KeyframeSmoother(LIVE_PRESET)


#: zero-lag modes: usable live, and by ``Matter`` one frame at a time
TEMPORAL_FILTERS: dict[str, Callable[[], TemporalFilter]] = {
    "none": NoSmoothing,
    "ema": FixedEma,
    "adaptive": AdaptiveEma,
    "flow": FlowBlend,
    # forward propagation from keyframes along one flow per frame pair (keyframes.py);
    # Chain.alpha runs the engine on keyframes only (SkipsEngine)
    "keyframes-live": _keyframes_live,
}

#: modes that need future frames (files only): driven through push/flush
LOOKAHEAD_FILTERS: dict[str, Callable[[], LookaheadFilter]] = {
    # forward and backward recursion along flow on a 640 px copy, 10 frames ahead, + guided
    # refinement at full size: see Bidirectional and docs/temporal.md for figures and cost
    "bidirectional": Bidirectional,
    # keyframes plus propagation, both ways, along one flow pair per frame (keyframes.py)
    "keyframes": _keyframes_file,
}

#: the recommended mode for live input (no latency) and for files (look-ahead allowed)
DEFAULT_LIVE_MODE = "flow"
#: files: ``keyframes`` runs the engine on about a quarter to nine tenths of the frames and is
#: steadier than per-frame output on every DAVIS sequence measured; ``bidirectional`` (the
#: engine on every frame) is 1-4 points steadier and 2.4-2.9x slower (docs/temporal.md)
DEFAULT_FILE_MODE = "keyframes"
#: how many frames the file default looks ahead (``keyframes.FILE_PRESET.lookahead``; for help
#: texts, so none builds a filter to ask; a test holds the two equal)
DEFAULT_FILE_DELAY = 8


def temporal_modes() -> list[str]:
    """Every mode name, zero-lag first."""
    return [*TEMPORAL_FILTERS, *LOOKAHEAD_FILTERS]


def make_temporal(name: str) -> TemporalFilter:
    """A zero-lag filter by name; a look-ahead name is an error that says how to run it."""
    key = name.lower()
    if key in LOOKAHEAD_FILTERS:
        raise ConfigError(
            f"temporal mode {name!r} looks ahead {LOOKAHEAD_FILTERS[key]().delay} frame(s) and "
            "cannot answer frame by frame: drive it with make_streaming() (push/flush)"
        )
    try:
        factory = TEMPORAL_FILTERS[key]
    except KeyError:
        raise ConfigError(
            f"unknown temporal mode {name!r} (choose from: {', '.join(temporal_modes())})"
        ) from None
    return factory()


def make_streaming(name: str) -> LookaheadFilter:
    """Any mode by name behind push/flush (zero-lag ones answer every push at once)."""
    key = name.lower()
    if key in LOOKAHEAD_FILTERS:
        return LOOKAHEAD_FILTERS[key]()
    return ZeroLag(make_temporal(key))


# -- live: smoothing that gives way under load ------------------------------------------------

#: the zero-lag modes from the costliest down; a live run sheds along this ladder (``ema`` is
#: left out: it drags the matte behind motion, and it saves only a few ms over ``adaptive``)
SHED_LADDER = ("flow", "adaptive", "none")


@dataclass(frozen=True, slots=True)
class ShedDecision:
    """What ``ShedUnderLoad.decide`` said of a frame: the rung's filter that decided, and what
    it said when it skips the engine (a ``DecidesEngine``; None: the engine runs)."""

    filter: TemporalFilter
    said: tuple[DecidesEngine[Any], EngineDecision] | None

    @property
    def keyframe(self) -> bool:
        return self.said is None or self.said[1].keyframe


class ShedUnderLoad:
    """A zero-lag filter that steps down to cheaper smoothing while the live source is dropping
    frames, and back up once it has kept up for a while: a steady frame rate first, then the
    best smoothing the machine has time for.

    ``dropped()`` is the source's running count of frames dropped because the chain was busy
    (the ``latest`` back-pressure counter). Over a window of ``window`` answered frames, a drop
    ratio ``dropped / (dropped + answered)`` above ``max_drop_ratio`` steps one rung down
    :data:`SHED_LADDER` (``flow`` → ``adaptive`` → ``none``; ``ema`` → ``none``). The next
    window judges the step: if the ratio did not fall by a fifth, the smoothing was not what
    was slow (the engine is), so the step is undone and shedding rests for ``max_hold_s``: the
    user keeps their smoothing when dropping it would not buy frames. After ``hold_s`` without
    a single drop, one rung is taken back up; a rung that brings the drops straight back
    doubles the hold (up to ``max_hold_s``), so an overloaded machine does not flap.

    Drops before the first answered frame (the engine's first, slow run) are not counted.
    Switching rungs starts the new filter afresh (one unsmoothed frame). ``mode`` is the rung in
    use; ``on_change(old, new, down)`` is told of every switch (``down``: a step to a cheaper
    mode).
    """

    def __init__(self, mode: str, dropped: Callable[[], int], *, window: int = 30,
                 max_drop_ratio: float = 0.1, hold_s: float = 5.0, max_hold_s: float = 120.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[str, str, bool], None] | None = None) -> None:
        asked = mode.lower()
        # an unknown or look-ahead mode fails here, with the usual message
        self._filter = make_temporal(asked)
        if window < 1 or not 0 < max_drop_ratio < 1 or hold_s <= 0 or max_hold_s < hold_s:
            raise ConfigError("ShedUnderLoad: expected window >= 1, 0 < max_drop_ratio < 1 and "
                              "0 < hold_s <= max_hold_s")
        self.asked = asked
        # the asked mode, then every cheaper rung below it
        self._ladder = ((asked, *SHED_LADDER[SHED_LADDER.index(asked) + 1:])
                        if asked in SHED_LADDER else (asked, "none"))
        self._dropped = dropped
        self._window: collections.deque[int] = collections.deque(maxlen=window)
        self.max_drop_ratio = max_drop_ratio
        self.hold_s = hold_s
        self.max_hold_s = max_hold_s
        self._clock = clock
        self._on_change = on_change
        self._rung = 0
        # counted from the first answered frame on: what the source dropped while the first
        # frame was inferred is the engine warming up (first-run allocation), not load
        self._seen: int | None = None
        now = clock()
        self._calm_since = now  # the last drop, or the last switch
        self._judging: float | None = None  # the drop ratio that made the last step down
        self._stepped_up_s: float | None = None
        self._rest_until = now

    @property
    def mode(self) -> str:
        """The mode running now: ``asked``, or a cheaper one while shedding."""
        return self._ladder[self._rung]

    def __call__(self, alpha: Alpha, frame: RGBImage) -> Alpha:
        self._observe()
        return self._filter(alpha, frame)

    def step(self, frame: RGBImage, engine: Callable[[RGBImage], Alpha]) -> Alpha:
        """``SkipsEngine``: the rung in use skips the engine where it can (a keyframe mode);
        the others get the engine's alpha on every frame."""
        decision = self.decide(frame)
        (out,) = self.push_decided(frame, decision, engine(frame) if decision.keyframe
                                   else None)
        return out

    def decide(self, frame: RGBImage) -> ShedDecision:
        """``DecidesEngine``: the rung in use decides (a keyframe mode skips the engine where
        it can; the others need it on every frame)."""
        current = self._filter
        if isinstance(current, DecidesEngine):
            return ShedDecision(current, (current, current.decide(frame)))
        return ShedDecision(current, None)

    def push_decided(self, frame: RGBImage, decision: ShedDecision, alpha: Alpha | None
                     ) -> list[Alpha]:
        """A frame a keyframe rung decided goes to that rung even when the policy has
        switched since (frames were between the two halves): it sees an unbroken run of
        frames, in order, and a frame it let skip the engine is never handed to a rung that
        needs the engine's alpha. A frame with the engine's alpha goes to the rung in use,
        so a step down pays at once, unless that rung is a keyframe one that decided later
        frames already: it stays with the rung that decided it."""
        self._observe()
        if decision.said is not None:
            gated, said = decision.said
            return gated.push_decided(frame, said, alpha)
        if alpha is None:
            raise ValueError(f"smoothing {self.mode!r} needs the engine's alpha on every frame")
        current = self._filter
        smoother = decision.filter if isinstance(current, DecidesEngine) else current
        return [smoother(alpha, frame)]

    def reset(self) -> None:
        self._filter.reset()

    # -- the policy --

    def _observe(self) -> None:
        now = self._clock()
        total = self._dropped()
        if self._seen is None:
            self._seen = total
            return
        new, self._seen = total - self._seen, total
        if new:
            self._calm_since = now
        self._window.append(new)
        if len(self._window) == self._window.maxlen:
            drops = sum(self._window)
            ratio = drops / (drops + len(self._window))
            if self._judging is not None:
                judged, self._judging = self._judging, None
                if ratio > judged * 0.8:  # shedding bought next to nothing: take it back, rest
                    self._switch(self._rung - 1, now)
                    self._rest_until = now + self.max_hold_s
                    return
            if (ratio > self.max_drop_ratio and self._rung + 1 < len(self._ladder)
                    and now >= self._rest_until):
                if self._stepped_up_s is not None and now - self._stepped_up_s < 2 * self.hold_s:
                    self.hold_s = min(2 * self.hold_s, self.max_hold_s)
                self._stepped_up_s = None
                self._switch(self._rung + 1, now)
                self._judging = ratio
                return
        if self._rung > 0 and self._judging is None and now - self._calm_since >= self.hold_s:
            self._switch(self._rung - 1, now)
            self._stepped_up_s = now

    def _switch(self, rung: int, now: float) -> None:
        old, down = self.mode, rung > self._rung
        self._rung = rung
        self._filter = make_temporal(self.mode)
        self._window.clear()
        self._calm_since = now
        if self._on_change is not None:
            self._on_change(old, self.mode, down)
