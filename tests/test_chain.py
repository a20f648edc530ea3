"""The chain (streammatte/chain): one constructor, the temporal filter passed in, the stage list
a later stage can join, the host-or-GPU choice, and the layering of the packages below it."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from media import BrightnessEngine, square_frame

from streammatte.chain import Chain
from streammatte.config import MatteConfig
from streammatte.cuda.runtime import DeviceEngine
from streammatte.errors import ConfigError
from streammatte.frames import Alpha, FramePacket, RGBImage
from streammatte.pipeline import Pipeline, Stage

PACKAGE = Path(__file__).resolve().parents[1] / "streammatte"


class CountingFilter:
    """A zero-lag filter that halves the alpha and counts its calls and resets."""

    def __init__(self) -> None:
        self.calls = 0
        self.resets = 0

    def __call__(self, alpha: Alpha, frame: RGBImage) -> Alpha:
        self.calls += 1
        return np.asarray(alpha * np.float32(0.5), np.float32)

    def reset(self) -> None:
        self.resets += 1


def _packets(count: int, size: tuple[int, int] = (32, 24)) -> list[FramePacket]:
    return [FramePacket(index=i, image=square_frame(i, *size)[0], pts=i, time_base=None)
            for i in range(count)]


def test_a_temporal_filter_passed_in_runs_per_frame_and_in_the_stages() -> None:
    own = CountingFilter()
    chain = Chain(MatteConfig(temporal="flow"), engine=BrightnessEngine(), temporal=own)
    image, truth = square_frame(0, 32, 24)
    np.testing.assert_array_equal(chain.alpha(image), truth * 0.5)
    out = list(Pipeline(_packets(4), chain.stages()).results())
    assert own.calls == 5 and own.resets == 1  # one frame at once, four through the stages
    assert all(p.alpha is not None and p.alpha.max() == 0.5 for p in out)


def test_a_look_ahead_mode_has_a_delay_and_no_per_frame_alpha() -> None:
    chain = Chain(MatteConfig(temporal="bidirectional"), engine=BrightnessEngine())
    assert chain.delay == 10
    assert Chain(MatteConfig(temporal="flow"), engine=BrightnessEngine()).delay == 0
    with pytest.raises(ConfigError, match="'bidirectional' looks ahead 10 frame"):
        chain.alpha(square_frame(0, 32, 24)[0])


def test_look_ahead_stages_answer_every_frame_in_order() -> None:
    chain = Chain(MatteConfig(temporal="bidirectional"), engine=BrightnessEngine(),
                  output="matte")
    out = list(Pipeline(_packets(14), chain.stages()).results())
    assert [p.index for p in out] == list(range(14))
    assert all(p.output is not None and p.output.shape == (24, 32) for p in out)


def test_a_stage_before_preprocess_can_spare_the_engine_a_frame() -> None:
    # the seam for keyframes: a stage ahead of the chain marks frames that need no engine run
    # and gives them their alpha; preprocess and infer pass them through
    engine = BrightnessEngine()
    chain = Chain(MatteConfig(temporal="none"), engine=engine, output="matte")
    given = np.full((24, 32), 0.25, np.float32)

    def every_other(batch: list[FramePacket]) -> list[FramePacket]:
        for p in batch:
            if p.index % 2:
                p.run_engine, p.alpha = False, given
        return batch

    stages = [Stage("motion", every_other), *chain.stages()]
    out = list(Pipeline(_packets(6), stages).results())
    assert engine.calls == 3
    for p in out:
        truth = square_frame(p.index, 32, 24)[1]
        expected = np.full((24, 32), 64) if p.index % 2 else truth * 255  # 64: round(.25·255)
        np.testing.assert_array_equal(p.output, expected)


def test_the_chain_closes_the_engine_it_opened_and_no_other(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from streammatte.inference.mog2 import Mog2Engine

    closed: list[object] = []
    monkeypatch.setattr(Mog2Engine, "close", lambda self: closed.append(self))
    with Chain(MatteConfig(engine="mog2")) as opened:
        pass
    given = Mog2Engine()
    with Chain(MatteConfig(), engine=given):
        pass
    assert closed == [opened.engine]


def test_device_engines_are_told_apart_by_the_protocol() -> None:
    class Device(BrightnessEngine):
        context, stream, max_batch = None, None, 1
        input_dtype = output_dtype = "float32"

        def input_shape(self, batch: int) -> tuple[int, ...]:
            return (batch, 3, 8, 8)

        def output_shape(self, batch: int) -> tuple[int, ...]:
            return (batch, 1, 8, 8)

        def enqueue(self, input_ptr: int, output_ptr: int, batch: int) -> None:
            raise AssertionError("the host chain must not enqueue")

    assert isinstance(Device(), DeviceEngine)
    assert not isinstance(BrightnessEngine(), DeviceEngine)
    # a caller's own filter has no kernel: the host chain runs, and the notes say why
    chain = Chain(MatteConfig(temporal="flow", background="white"), engine=Device(),
                  temporal=CountingFilter(), output="rgb")
    assert [s.name for s in chain.stages()] == ["preprocess", "infer", "compose"]
    assert chain.notes == ["host chain around the GPU engine: the caller's own temporal filter "
                           "(live load shedding) runs on the CPU"]


def test_an_unknown_temporal_mode_fails_before_any_engine_opens() -> None:
    with pytest.raises(ConfigError, match=r"unknown temporal mode 'wobble' \(choose from: none"):
        MatteConfig(temporal="wobble")


# -- the layers: the data flow reads from the folders -------------------------------------------

def _imports(path: Path) -> set[str]:
    """Absolute names of the streammatte modules ``path`` imports (lazy imports included)."""
    # a module's own name: ``from .x`` in a/b.py and in a/__init__.py both mean a.x
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:-node.level]
                names.add(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module:
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("streammatte")}


@pytest.mark.parametrize(("package", "above"), [
    # the device runtime sits below the engines; the engines below the chain
    ("cuda", ("inference", "chain", "pipeline", "compose", "temporal", "api", "server",
              "commands")),
    ("inference", ("chain", "pipeline", "api", "server", "commands")),
    ("chain", ("api", "server", "commands")),
])
def test_lower_packages_import_nothing_above_them(package: str, above: tuple[str, ...]) -> None:
    bad = {f"{path.relative_to(PACKAGE)}: {name}"
           for path in (PACKAGE / package).glob("*.py") for name in _imports(path)
           if name.split(".")[1:2] and name.split(".")[1] in above}
    assert not bad, sorted(bad)
