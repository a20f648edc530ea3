"""Output formats: which codec, pixel format and container each one uses, and what it carries."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputFormat:
    name: str
    description: str
    extension: str  # "" for an image-sequence directory
    codec: str | None  # None: frames are written as PNG files
    pix_fmt: str
    #: True when the format stores transparency (the matte is written into it)
    alpha: bool
    #: True when the format stores the matte alone, as a greyscale picture
    matte_only: bool = False
    #: 4:2:0 codecs need even frame sizes; odd ones are padded by one replicated pixel
    even_size: bool = False
    container_options: dict[str, str] = field(default_factory=dict)
    codec_options: dict[str, str] = field(default_factory=dict)
    #: audio codecs this container takes as they are (stream copy)
    copy_audio: frozenset[str] = frozenset()
    #: what other audio is re-encoded to (no copy_audio and no audio_codec: the format holds
    #: no audio)
    audio_codec: str | None = None
    #: FFmpeg's muxer, where the output's extension does not say it (a stream on stdout)
    container: str | None = None


_MP4_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac"})
_MOV_AUDIO = _MP4_AUDIO | {"pcm_s16le", "pcm_s24le", "pcm_s16be", "pcm_s24be", "pcm_f32le"}
_FASTSTART = {"movflags": "+faststart"}
#: what Matroska (and NUT) take as it is: a stream on stdout
_MKV_AUDIO = _MP4_AUDIO | {"opus", "vorbis", "flac", "pcm_s16le", "pcm_s24le", "pcm_s32le",
                           "pcm_f32le"}

FORMATS: dict[str, OutputFormat] = {
    f.name: f
    for f in (
        OutputFormat(
            name="h264", description="H.264 MP4, composited (plays everywhere)",
            extension=".mp4", codec="libx264", pix_fmt="yuv420p", alpha=False, even_size=True,
            container_options=_FASTSTART, codec_options={"crf": "18", "preset": "fast"},
            copy_audio=_MP4_AUDIO, audio_codec="aac",
        ),
        OutputFormat(
            name="hevc", description="HEVC MP4, composited (smaller files)",
            extension=".mp4", codec="libx265", pix_fmt="yuv420p", alpha=False, even_size=True,
            container_options=_FASTSTART,
            codec_options={"crf": "22", "preset": "fast", "tag": "hvc1",
                           "x265-params": "log-level=error"},
            copy_audio=_MP4_AUDIO, audio_codec="aac",
        ),
        OutputFormat(
            name="prores4444", description="ProRes 4444 MOV with alpha (editing)",
            extension=".mov", codec="prores_ks", pix_fmt="yuva444p10le", alpha=True,
            codec_options={"profile": "4", "alpha_bits": "16", "vendor": "apl0"},
            copy_audio=_MOV_AUDIO, audio_codec="aac",
        ),
        OutputFormat(
            name="vp9", description="VP9 WebM with alpha (web)",
            extension=".webm", codec="libvpx-vp9", pix_fmt="yuva420p", alpha=True,
            codec_options={"crf": "30", "b": "0", "row-mt": "1", "deadline": "good",
                           "cpu-used": "4", "auto-alt-ref": "0"},
            copy_audio=frozenset({"opus", "vorbis"}), audio_codec="libopus",
        ),
        OutputFormat(
            name="png", description="RGBA PNG sequence in a directory (any tool)",
            extension="", codec=None, pix_fmt="rgba", alpha=True,
        ),
        OutputFormat(
            name="matte", description="the matte alone as greyscale H.264 MP4 (keying)",
            extension=".mp4", codec="libx264", pix_fmt="yuv420p", alpha=False, matte_only=True,
            even_size=True, container_options=_FASTSTART,
            codec_options={"crf": "12", "preset": "fast"},
            copy_audio=_MP4_AUDIO, audio_codec="aac",
        ),
        OutputFormat(
            name="nut", description="raw RGBA frames in NUT, with alpha (lossless; for pipes)",
            extension=".nut", codec="rawvideo", pix_fmt="rgba", alpha=True, container="nut",
            copy_audio=_MKV_AUDIO, audio_codec="pcm_s16le",
        ),
        OutputFormat(
            name="y4m", description="raw YUV 4:4:4 frames in YUV4MPEG, composited (for pipes "
            "into encoders; no audio)",
            extension=".y4m", codec="rawvideo", pix_fmt="yuv444p", alpha=False,
            container="yuv4mpegpipe",
        ),
    )
}

_BY_EXTENSION = {".mp4": "h264", ".m4v": "h264", ".mov": "prores4444", ".webm": "vp9",
                 ".nut": "nut", ".y4m": "y4m"}


def _named(name: str) -> OutputFormat:
    try:
        return FORMATS[name.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown output format {name!r} (choose from: auto, {', '.join(FORMATS)})"
        ) from None


def auto_format(background: str) -> OutputFormat:
    """What an output that names no format gets (a batch's results, stdout): VP9 with alpha
    where ``background`` leaves the result transparent (``auto``, ``transparent``), else
    H.264."""
    from ..compose import parse_background  # here, not on top: compose pulls OpenCV in

    transparent = background.strip().lower() == "auto" or \
        parse_background(background).is_transparent
    return FORMATS["vp9" if transparent else "h264"]


def format_for_stdout(name: str = "auto", *, background: str = "auto") -> OutputFormat:
    """The format for a stream on standard output: ``name``'s codec in Matroska (NUT and y4m
    as they are), or for ``auto`` the codec ``auto_format`` picks for ``background``."""
    fmt = auto_format(background) if name == "auto" else _named(name)
    if fmt.codec is None:
        raise ConfigError("stdout takes one stream, not a folder of PNG frames: choose a video "
                          "format (--format nut gives raw RGBA frames)")
    if fmt.container is not None:
        return fmt
    return replace(fmt, container="matroska", container_options={}, copy_audio=_MKV_AUDIO)


def format_for(path: Path, name: str = "auto") -> OutputFormat:
    """The output format for ``path``: ``name`` if given, else chosen by its extension
    (a path without extension, or ending in "/", is a PNG-sequence directory)."""
    if name != "auto":
        fmt = _named(name)
        if fmt.extension and path.suffix.lower() != fmt.extension and not (
            fmt.extension == ".mp4" and path.suffix.lower() == ".m4v"
        ):
            raise ConfigError(f"{path}: format {fmt.name} writes {fmt.extension} files")
        if not fmt.extension and path.suffix:
            raise ConfigError(f"{path}: a PNG sequence is written to a directory; "
                              "give a path without extension")
        return fmt
    suffix = path.suffix.lower()
    if not suffix:
        return FORMATS["png"]
    if suffix not in _BY_EXTENSION:
        raise ConfigError(
            f"{path}: cannot tell the output format from {suffix!r} (use .mp4, .mov, .webm, "
            ".nut, .y4m, a directory for PNG frames, or --format)"
        )
    return FORMATS[_BY_EXTENSION[suffix]]
