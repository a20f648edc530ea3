"""The public surface, pinned: what ``import streammatte`` offers (as httpx pins its __all__),
and the default engine named once."""

from __future__ import annotations

import types

import pytest

import streammatte
from streammatte.cli import build_parser

PUBLIC = [
    "DEFAULT_ENGINE", "CancelHandle", "CancelledRun", "Chain", "ChecksumError", "ConfigError",
    "Engine", "EngineUnavailableError", "FramePacket", "MatteConfig", "MatteResult", "Matter",
    "ModelError", "ModelFetchError", "NonCommercialModelWarning", "Pipeline", "PipelineStats",
    "RunReport", "SinkError", "SourceError", "Stage", "StreamMatteError", "__version__",
    "engine_names", "matte_frames", "matte_image", "matte_video", "open_engine",
]


def test_all_is_the_pinned_public_surface() -> None:
    assert sorted(streammatte.__all__) == sorted(PUBLIC)
    assert len(set(streammatte.__all__)) == len(streammatte.__all__)


def test_every_public_name_in_the_package_is_exported() -> None:
    # submodules are reachable as attributes once imported, and ``annotations`` is the
    # __future__ feature; everything else public is in __all__
    public = {name for name, value in vars(streammatte).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)
              and name != "annotations"}
    assert public == set(streammatte.__all__) - {"__version__"}


def test_errors_and_warnings_share_the_root() -> None:
    for name in streammatte.__all__:
        value = getattr(streammatte, name)
        if isinstance(value, type) and issubclass(value, Exception) \
                and not issubclass(value, Warning):
            assert issubclass(value, streammatte.StreamMatteError), name
    assert issubclass(streammatte.NonCommercialModelWarning, UserWarning)


@pytest.mark.parametrize("command", ["video", "image", "live", "serve", "bench", "eval"])
def test_every_command_defaults_to_the_one_default_engine(command: str) -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    sub = subparsers.choices[command]  # type: ignore[index]
    assert sub.get_default("engine") == streammatte.DEFAULT_ENGINE
    assert streammatte.MatteConfig().engine == streammatte.DEFAULT_ENGINE


def test_the_server_defaults_to_the_one_default_engine() -> None:
    from streammatte.server.live import LiveSettings
    from streammatte.server.settings import ServerSettings

    assert ServerSettings().engine == LiveSettings().engine == streammatte.DEFAULT_ENGINE
