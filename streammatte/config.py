"""MatteConfig: every option of a matting run, validated once, up front."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError
from .refine import UPSAMPLERS
from .sinks.formats import Encoding
from .temporal import DEFAULT_FILE_MODE, temporal_modes

#: the engine every entry point uses when none is named (the library, the CLI, the server)
DEFAULT_ENGINE = "u2netp"


@dataclass(frozen=True, slots=True, kw_only=True)
class MatteConfig:
    """Options shared by files, images and live runs. Unknown keys are errors."""

    #: catalog model (``u2netp``, ``u2net``, …) or builtin engine (``mog2``)
    engine: str = DEFAULT_ENGINE
    #: ``auto`` (transparent where the format has alpha, else white), ``transparent``,
    #: ``blur``, a colour, or an image/video path
    background: str = "auto"
    #: ``auto`` (from the output's extension) or a name from ``sinks.formats.FORMATS``
    output_format: str = "auto"
    #: temporal stage by name (``temporal.temporal_modes()``); files default to the look-ahead
    #: ``keyframes`` (the engine on keyframes only, steadier, and no lag)
    temporal: str = DEFAULT_FILE_MODE
    #: alpha to frame size: ``bilinear``, or ``guided`` (the frame's edges guide it)
    upsample: Literal["bilinear", "guided"] = "bilinear"
    #: reproduce rembg's per-image pre/post-processing exactly (flickers on video)
    rembg_compat: bool = False
    #: ``auto``, ``cpu`` or ``cuda[:N]``
    device: str = "auto"
    #: what runs a catalog model: ``onnxruntime``, ``onnxruntime-cuda``, ``trt`` or ``auto``
    #: (the fastest available, said in the run report)
    backend: str = "onnxruntime"
    model_file: Path | None = None
    models_dir: Path | None = None
    batch_size: int = 1
    #: model input size chosen instead of the catalog's, (width, height); the engine checks
    #: that the model accepts it
    input_size: tuple[int, int] | None = None
    #: or: scale frames so their short side is this long (models with a free input size)
    short_side: int | None = None
    max_queue_frames: int = 4
    #: fail on the first damaged packet instead of concealing and counting
    strict: bool = False
    overwrite: bool = False
    #: the video encoder: None (the format's), ``auto`` (the format's codec on a hardware
    #: encoder when one opens), a codec (``h264``, ``hevc``, ``av1``, ``prores``, ``vp9``) or
    #: a hardware encoder (``h264_nvenc``, …); see ``sinks.formats.Encoding``
    codec: str | None = None
    #: constant quality in the codec's own scale (lower is better), or None: the format's
    crf: int | None = None
    #: the codec's speed preset (x264's names for h264/hevc, 0–13 for av1, 0–8 for vp9)
    preset: str | None = None
    #: a target bit rate instead of constant quality
    bitrate_bps: int | None = None
    #: mask controls (``streammatte.mask``), after temporal smoothing, before compositing:
    #: alpha ≥ threshold → opaque, else clear (a hard mask); None: the soft matte as it is
    threshold: float | None = None
    #: erode (shrink) or dilate (grow) the mask by this many frame pixels
    shrink_px: int = 0
    grow_px: int = 0
    #: soften the mask's edge so it ramps over about this many frame pixels
    feather_px: float = 0.0
    #: estimate the foreground colour under soft edges, so no fringe of the old background
    #: shows in the composite (``refine.decontaminate``)
    despill: bool = False
    #: files only: matte from this time on (seconds from the start of the file, as
    #: ``ffmpeg -ss`` counts), up to ``end_s`` (exclusive) and at most ``max_frames`` frames;
    #: the output's timestamps then start at zero and its audio is cut to match
    start_s: float = 0.0
    end_s: float | None = None
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size should be >= 1, got {self.batch_size}")
        if self.max_queue_frames < 1:
            raise ConfigError(f"max_queue_frames should be >= 1, got {self.max_queue_frames}")
        if not self.engine:
            raise ConfigError("engine should not be empty")
        if self.temporal.lower() not in temporal_modes():
            raise ConfigError(f"unknown temporal mode {self.temporal!r} "
                              f"(choose from: {', '.join(temporal_modes())})")
        if self.upsample not in UPSAMPLERS:
            raise ConfigError(f"unknown upsampler {self.upsample!r} "
                              f"(choose from: {', '.join(UPSAMPLERS)})")
        if self.input_size is not None and self.short_side is not None:
            raise ConfigError("choose input_size or short_side, not both")
        if self.input_size is not None and (
            len(self.input_size) != 2 or min(self.input_size) < 1
        ):
            raise ConfigError(f"input_size should be (width, height) > 0, got {self.input_size}")
        if self.short_side is not None and self.short_side < 1:
            raise ConfigError(f"short_side should be >= 1, got {self.short_side}")
        if self.crf is not None and self.crf < 0:
            raise ConfigError(f"crf should be >= 0, got {self.crf}")
        if self.bitrate_bps is not None and self.bitrate_bps < 1000:
            raise ConfigError(f"bitrate_bps should be >= 1000 (bits/s), got {self.bitrate_bps}")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold should be between 0 and 1 (e.g. 0.5), got "
                              f"{self.threshold}")
        if self.shrink_px < 0 or self.grow_px < 0 or self.feather_px < 0:
            raise ConfigError("shrink, grow and feather are pixel counts >= 0, got "
                              f"{self.shrink_px}, {self.grow_px}, {self.feather_px}")
        if self.shrink_px and self.grow_px:
            raise ConfigError("choose shrink or grow, not both")
        DecodeRange(start_s=self.start_s, end_s=self.end_s, max_frames=self.max_frames)

    @property
    def encoding(self) -> Encoding:
        """What the encoder was asked for (``codec``, ``crf``, ``preset``, ``bitrate_bps``)."""
        return Encoding(codec=self.codec, crf=self.crf, preset=self.preset,
                        bit_rate=self.bitrate_bps)

    def decode_range(self) -> DecodeRange | None:
        """The trim as a file source takes it (timestamps rebased to zero), or None when the
        whole file is wanted."""
        trim = DecodeRange(start_s=self.start_s, end_s=self.end_s, max_frames=self.max_frames,
                           rebase=True)
        return trim if trim.trims else None

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> MatteConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(options) - known
        if unknown:
            raise ConfigError(f"unknown option(s) {sorted(unknown)} (known: {sorted(known)})")
        return cls(**options)

    def with_options(self, **options: Any) -> MatteConfig:
        known = {f.name for f in fields(self)}
        unknown = set(options) - known
        if unknown:
            raise ConfigError(f"unknown option(s) {sorted(unknown)} (known: {sorted(known)})")
        return replace(self, **options)


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodeRange:
    """Which frames of a file ``FileSource`` yields, and how it stamps them.

    The range holds the frames whose presentation time ``t`` (seconds from the start of the
    file, as ``ffmpeg -ss`` counts: the container's start time is 0) has
    ``start_s <= t < end_s``, at most ``max_frames`` of them; every frame belongs to exactly
    one of the ranges ``[a, b)``, ``[b, c)``, … that split a file. ``pre_roll_frames`` frames
    before it and ``post_roll_frames`` after it are decoded too and come out with
    ``FramePacket.in_range`` False (a temporal filter's history and look-ahead); fewer where
    the file begins or ends. ``rebase`` shifts every timestamp so that the first in-range
    frame is at 0 (pre-roll frames go negative), and the audio with it; else the file's own
    timestamps are kept.
    """

    start_s: float = 0.0
    end_s: float | None = None
    max_frames: int | None = None
    pre_roll_frames: int = 0
    post_roll_frames: int = 0
    rebase: bool = False

    def __post_init__(self) -> None:
        if not self.start_s >= 0:  # NaN too
            raise ConfigError(f"start_s should be >= 0 seconds, got {self.start_s}")
        if self.end_s is not None and not self.end_s > self.start_s:
            raise ConfigError(f"end_s should be after start_s ({self.start_s:g} s), got "
                              f"{self.end_s:g} s")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"max_frames should be >= 1, got {self.max_frames}")
        if self.pre_roll_frames < 0 or self.post_roll_frames < 0:
            raise ConfigError(f"pre/post-roll should be >= 0 frames, got "
                              f"{self.pre_roll_frames}/{self.post_roll_frames}")

    @property
    def bounded(self) -> bool:
        """Whether the range may end before the file does."""
        return self.end_s is not None or self.max_frames is not None

    @property
    def trims(self) -> bool:
        """Whether the range leaves out part of the file."""
        return self.start_s > 0 or self.bounded
