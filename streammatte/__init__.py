"""streammatte: remove or replace the background of video, from files and live.

Public API::

    import streammatte
    streammatte.matte_video("in.mp4", "out.mov", engine="u2netp", background="transparent")
    streammatte.matte_image("in.jpg", "out.png")          # or an array / PIL image → RGBA array
    for result in streammatte.matte_frames(frames):        # any iterable of RGB arrays
        result.alpha                                        # H×W uint8
    with streammatte.open_engine("u2netp") as engine: ...

Nothing heavy or optional is imported here: TensorRT, pycuda and aiortc load on first use.
"""

from __future__ import annotations

from .api import MatteResult, RunReport, matte_frames, matte_image, matte_video
from .chain import Chain, Matter
from .config import DEFAULT_ENGINE, MatteConfig
from .errors import (
    CancelledRun,
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
from .inference import Engine, NonCommercialModelWarning, engine_names, open_engine
from .pipeline import CancelHandle, Pipeline, PipelineStats, Stage

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ENGINE",
    "CancelHandle",
    "CancelledRun",
    "Chain",
    "ChecksumError",
    "ConfigError",
    "Engine",
    "EngineUnavailableError",
    "FramePacket",
    "MatteConfig",
    "MatteResult",
    "Matter",
    "ModelError",
    "ModelFetchError",
    "NonCommercialModelWarning",
    "Pipeline",
    "PipelineStats",
    "RunReport",
    "SinkError",
    "SourceError",
    "Stage",
    "StreamMatteError",
    "__version__",
    "engine_names",
    "matte_frames",
    "matte_image",
    "matte_video",
    "open_engine",
]
