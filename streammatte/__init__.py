"""streammatte: remove or replace the background of video, from files and live.

Public API::

    import streammatte
    streammatte.matte_video("in.mp4", "out.mov", engine="u2netp", background="transparent")
    streammatte.matte_image("in.jpg", "out.png")
    with streammatte.open_engine("u2netp") as engine: ...

Nothing heavy or optional is imported here: TensorRT, pycuda and aiortc load on first use.
"""

from __future__ import annotations

from .api import Matter, RunReport, matte_image, matte_video
from .config import MatteConfig
from .errors import (
    ChecksumError,
    ConfigError,
    EngineUnavailableError,
    ModelError,
    ModelFetchError,
    SinkError,
    SourceError,
    StreamMatteError,
)
from .frames import FramePacket
from .inference import Engine, engine_names, open_engine
from .pipeline import Pipeline, PipelineStats, Stage

__version__ = "0.1.0"

__all__ = [
    "ChecksumError",
    "ConfigError",
    "Engine",
    "EngineUnavailableError",
    "FramePacket",
    "MatteConfig",
    "Matter",
    "ModelError",
    "ModelFetchError",
    "Pipeline",
    "PipelineStats",
    "RunReport",
    "SinkError",
    "SourceError",
    "Stage",
    "StreamMatteError",
    "__version__",
    "engine_names",
    "matte_image",
    "matte_video",
    "open_engine",
]
