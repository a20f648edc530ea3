"""Live smoothing that gives way under load (temporal.ShedUnderLoad), driven by a fake clock and
a drop counter whose rate depends on the mode running, as a real overloaded machine's does."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from streammatte import temporal as T
from streammatte.errors import ConfigError

FPS = 20.0


class Load:
    """A clock and a source's drop counter. ``drops_per_frame(mode)`` says how many frames the
    source drops for each one the chain answers while ``mode`` runs."""

    def __init__(self, drops_per_frame: Callable[[str], float]) -> None:
        self.now = 0.0
        self.dropped = 0
        self.drops_per_frame = drops_per_frame
        self._owed = 0.0
        self.changes: list[tuple[float, str, str, bool]] = []

    def shedder(self, mode: str = "flow", **kw: float) -> T.ShedUnderLoad:
        def note(old: str, new: str, down: bool) -> None:
            self.changes.append((self.now, old, new, down))

        return T.ShedUnderLoad(mode, lambda: self.dropped, clock=lambda: self.now,
                               on_change=note, **kw)  # type: ignore[arg-type]

    def run(self, f: T.ShedUnderLoad, seconds: float) -> list[str]:
        """Answer frames for ``seconds`` of the clock; the modes that ran, one per frame."""
        frame, alpha = _frame(), _alpha()
        modes = []
        end = self.now + seconds - 0.5 / FPS
        while self.now < end:
            self._owed += self.drops_per_frame(f.mode)
            whole = int(self._owed)
            self.dropped += whole
            self._owed -= whole
            self.now += (1 + whole) / FPS
            f(alpha, frame)
            modes.append(f.mode)
        return modes


def _frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.asarray(cv2.GaussianBlur(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8),
                                       (5, 5), 0), np.uint8)


def _alpha() -> np.ndarray:
    a = np.zeros((24, 32), np.float32)
    a[6:18, 8:24] = 1.0
    return a


# drops per answered frame: flow too slow, adaptive a little slow, none keeps up
def smoothing_bound(mode: str) -> float:
    return {"flow": 0.5, "adaptive": 0.2, "none": 0.0}[mode]


def test_no_drops_keeps_the_asked_mode_and_its_output() -> None:
    load = Load(lambda mode: 0.0)
    f, plain = load.shedder("flow"), T.make_temporal("flow")
    rng = np.random.default_rng(1)
    for i in range(120):
        alpha = np.clip(_alpha() + rng.normal(0, 0.1, (24, 32)), 0, 1).astype(np.float32)
        frame = np.roll(_frame(), i % 3, axis=1)
        np.testing.assert_array_equal(f(alpha, frame), plain(alpha, frame))
        load.now += 1 / FPS
    assert f.mode == "flow" and load.changes == []


def test_sheds_a_rung_per_window_until_the_drops_stop() -> None:
    load = Load(smoothing_bound)
    f = load.shedder("flow", window=30)
    modes = load.run(f, 5.0)
    assert [(a, b) for _, a, b, _ in load.changes] == [("flow", "adaptive"), ("adaptive", "none")]
    # one window at each rung before the step: 30 answered frames (after the first, whose
    # drops are the engine warming up)
    assert modes.index("adaptive") == 30 and modes.index("none") == 60
    assert f.mode == "none"
    # shed to none, the output is the model's alpha as it is
    np.testing.assert_array_equal(f(_alpha(), _frame()), _alpha())


def test_takes_rungs_back_once_calm_for_the_hold() -> None:
    load = Load(smoothing_bound)
    f = load.shedder("flow", hold_s=5.0)
    load.run(f, 5.0)
    assert f.mode == "none"
    load.drops_per_frame = lambda mode: 0.0  # the load went away
    load.run(f, 4.0)
    assert f.mode == "none", "back up before hold_s without a drop"
    load.run(f, 3.0)
    assert f.mode == "adaptive"
    load.run(f, 5.0)
    assert f.mode == "flow"
    ups = [(t, b) for t, a, b, down in load.changes if not down]
    assert [b for _, b in ups] == ["adaptive", "flow"]
    assert ups[1][0] - ups[0][0] == pytest.approx(5.0, abs=0.1)


def test_a_rung_that_brings_the_drops_back_doubles_the_hold() -> None:
    load = Load(lambda mode: 0.5 if mode == "flow" else 0.0)  # only flow is too slow
    f = load.shedder("flow", hold_s=5.0, max_hold_s=30.0)
    load.run(f, 60.0)
    steps = [(t, b) for t, a, b, _ in load.changes]
    # down to adaptive, up after 5 s calm, straight back down, then 10 s, 20 s, 30 s (cap)
    assert [b for _, b in steps[:6]] == ["adaptive", "flow", "adaptive", "flow", "adaptive",
                                         "flow"]
    calm = [steps[i + 1][0] - steps[i][0] for i in range(0, 6, 2)]
    assert calm == pytest.approx([5.0, 10.0, 20.0], abs=0.2)
    assert f.hold_s == 30.0
    assert "none" not in [b for _, b in steps], "adaptive kept up: no reason to go lower"


def test_keeps_the_smoothing_when_the_engine_is_what_is_slow() -> None:
    load = Load(lambda mode: 1.0)  # half the frames dropped whatever the smoothing
    f = load.shedder("flow", window=30, max_hold_s=60.0)
    modes = load.run(f, 50.0)
    # one window to see the drops, one to see that adaptive did not help, then back, and rest
    assert [(a, b) for _, a, b, _ in load.changes] == [("flow", "adaptive"), ("adaptive", "flow")]
    assert modes.count("adaptive") == 30
    assert f.mode == "flow"
    load.run(f, 20.0)  # the rest is over: it looks again, and gives up again
    assert [b for _, a, b, _ in load.changes][2:] == ["adaptive", "flow"]


def test_ladders_below_other_modes() -> None:
    load = Load(lambda mode: 0.0 if mode == "none" else 1.0)
    ema = load.shedder("ema")
    load.run(ema, 4.0)
    assert [(a, b) for _, a, b, _ in load.changes] == [("ema", "none")]
    plain = load.shedder("none")
    load.run(plain, 5.0)
    assert plain.mode == "none" and len(load.changes) == 1, "nothing below none"


def test_drops_while_the_first_frame_is_inferred_are_warm_up_not_load() -> None:
    load = Load(lambda mode: 0.0)
    f = load.shedder("flow", window=30)
    load.dropped = 8  # the engine's first run took a quarter of a second
    load.run(f, 2.0)
    assert f.mode == "flow" and load.changes == []
    load.dropped += 8  # the same drops later are load
    load.run(f, 2.0)
    assert [(a, b) for _, a, b, _ in load.changes] == [("flow", "adaptive")]


def test_refuses_bad_modes_and_limits() -> None:
    with pytest.raises(ConfigError, match="make_streaming"):
        T.ShedUnderLoad("bidirectional", lambda: 0)
    with pytest.raises(ConfigError, match="unknown temporal mode 'wobble'"):
        T.ShedUnderLoad("wobble", lambda: 0)
    with pytest.raises(ConfigError, match="max_drop_ratio"):
        T.ShedUnderLoad("flow", lambda: 0, max_drop_ratio=1.5)


def test_frames_decided_by_a_keyframe_rung_stay_with_it_after_a_step_down() -> None:
    # the chain decides a few frames ahead of the alpha stage: frames the keyframe rung let
    # skip the engine must still get an alpha after the shedder stepped down to ``none``
    load = Load(lambda mode: 0.0)
    f = load.shedder("keyframes-live", window=4)
    frame, alpha = _frame(), _alpha()
    warm = f.decide(frame)
    assert warm.keyframe  # the first frame
    f.push_decided(frame, warm, alpha)
    ahead = [f.decide(frame) for _ in range(3)]
    assert [d.keyframe for d in ahead] == [False, False, False], "a still scene skips"
    load.dropped += 40  # the machine falls behind: the next windows step down
    outs = []
    for decision in ahead:
        outs += f.push_decided(frame, decision, None)
    for _ in range(6):
        decision = f.decide(frame)
        outs += f.push_decided(frame, decision, alpha if decision.keyframe else None)
    assert f.mode == "none"
    assert len(outs) == 9 and all(o.shape == alpha.shape for o in outs)
    # on ``none`` every frame needs the engine, and one without its alpha is refused
    decision = f.decide(frame)
    assert decision.keyframe
    with pytest.raises(ValueError, match="needs the engine's alpha on every frame"):
        f.push_decided(frame, decision, None)
