"""Output formats: which codec, pixel format and container each one uses, and what it carries.

A format (``FORMATS``: ``h264``, ``prores4444``, ``gif``, ``nut``, …) is a named starting
point; the output's extension picks the container, and ``Encoding`` (``--codec``, ``--crf``,
``--preset``, ``--bitrate``) picks and tunes the encoder. :func:`format_for` resolves the three
into one concrete ``OutputFormat`` before any work, so a codec the container cannot hold, an
encoder this FFmpeg lacks or a preset the codec does not know is one ConfigError up front.
Standard output has no extension: :func:`format_for_stdout` resolves the same way with
Matroska as the container (NUT, y4m and GIF keep their own), so every codec and encoder
setting a ``.mkv`` file takes works on a pipe too.

Hardware encoders (NVENC) are candidates, not promises: the sink opens each at the real frame
size and falls back to the software encoder, with a note, when none opens.
"""

from __future__ import annotations

import functools
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
    #: no audio: GIF, y4m)
    audio_codec: str | None = None
    #: hardware encoders to try first, in order, each with its own options; the sink opens
    #: each at the real frame size and keeps ``codec`` when none opens
    hardware: tuple[tuple[str, dict[str, str]], ...] = ()
    #: target bit rate in bits/s (``--bitrate``), else None: constant quality
    bit_rate: int | None = None
    #: FFmpeg's muxer, where the output's extension does not say it (a stream on stdout)
    container: str | None = None

    @property
    def holds_audio(self) -> bool:
        """True when the output carries the input's audio (a PNG sequence: in ``audio.mka``
        beside the frames)."""
        return self.codec is None or bool(self.copy_audio) or self.audio_codec is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Encoding:
    """What the user asked of the encoder; None everywhere: the format's own settings.

    ``codec``: a codec family (``h264``, ``hevc``, ``av1``, ``prores``, ``vp9``), a hardware
    encoder (``h264_nvenc``, …), or ``auto`` (the format's codec, on a hardware encoder when
    one opens). ``crf`` and ``preset`` use the family's own scale and names (x264's for h264
    and hevc, SVT-AV1's 0–13 for av1, libvpx's speed 0–8 for vp9); ``bit_rate`` is bits/s.
    """

    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    bit_rate: int | None = None


_X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                 "slower", "veryslow", "placebo")
#: x264's names → NVENC's p1 (fastest) … p7 (best)
_NVENC_FROM_X264 = {"ultrafast": "p1", "superfast": "p1", "veryfast": "p2", "faster": "p3",
                    "fast": "p3", "medium": "p4", "slow": "p5", "slower": "p6",
                    "veryslow": "p7", "placebo": "p7"}


@dataclass(frozen=True, slots=True)
class _Family:
    """A codec as the user names it, and the encoders FFmpeg may have for it."""

    name: str
    format: str  # the FORMATS entry it stands for
    software: tuple[str, ...]  # in order of preference
    hardware: tuple[str, ...]
    extensions: tuple[str, ...]
    crf_range: tuple[int, int] | None
    presets: tuple[str, ...]
    #: the pixel format of a picture without alpha (the matte) in this codec
    opaque_pix_fmt: str = "yuv420p"


_FAMILIES: dict[str, _Family] = {f.name: f for f in (
    _Family("h264", "h264", ("libx264",), ("h264_nvenc",), (".mp4", ".m4v", ".mov", ".mkv"),
            (0, 51), _X264_PRESETS),
    _Family("hevc", "hevc", ("libx265",), ("hevc_nvenc",), (".mp4", ".m4v", ".mov", ".mkv"),
            (0, 51), _X264_PRESETS),
    _Family("av1", "av1", ("libsvtav1", "libaom-av1"), ("av1_nvenc",),
            (".mp4", ".webm", ".mkv"), (0, 63), tuple(str(n) for n in range(14))),
    _Family("prores", "prores4444", ("prores_ks",), (), (".mov", ".mkv"), None, (),
            "yuv444p10le"),
    _Family("vp9", "vp9", ("libvpx-vp9",), (), (".webm", ".mkv"), (0, 63),
            tuple(str(n) for n in range(9))),
)}
CODECS: tuple[str, ...] = tuple(_FAMILIES)
HARDWARE_ENCODERS: dict[str, str] = {hw: f.name for f in _FAMILIES.values() for hw in f.hardware}

#: each software encoder's own settings when the user gives none
_ENCODER_DEFAULTS: dict[str, dict[str, str]] = {
    "libx264": {"crf": "18", "preset": "fast"},
    "libx265": {"crf": "22", "preset": "fast", "tag": "hvc1", "x265-params": "log-level=error"},
    "libsvtav1": {"crf": "32", "preset": "8"},
    "libaom-av1": {"crf": "32", "cpu-used": "6", "row-mt": "1"},
    "prores_ks": {"profile": "4", "alpha_bits": "16", "vendor": "apl0"},
    "libvpx-vp9": {"crf": "30", "b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4",
                   "auto-alt-ref": "0"},
}

_MP4_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac"})
_MOV_AUDIO = _MP4_AUDIO | {"pcm_s16le", "pcm_s24le", "pcm_s16be", "pcm_s24be", "pcm_f32le"}
_WEBM_AUDIO = frozenset({"opus", "vorbis"})
#: what Matroska (and NUT) take as it is
_MKV_AUDIO = _MP4_AUDIO | {"opus", "vorbis", "flac", "pcm_s16le", "pcm_s24le", "pcm_s32le",
                           "pcm_f32le"}
_FASTSTART = {"movflags": "+faststart"}

#: what each container of a codec family takes: (options, audio copied, audio re-encoded to;
#: None: to the format's own, AAC or Opus, which Matroska holds either way)
_CONTAINERS: dict[str, tuple[dict[str, str], frozenset[str], str | None]] = {
    ".mp4": (_FASTSTART, _MP4_AUDIO, "aac"),
    ".m4v": (_FASTSTART, _MP4_AUDIO, "aac"),
    ".mov": ({}, _MOV_AUDIO, "aac"),
    ".webm": ({}, _WEBM_AUDIO, "libopus"),
    ".mkv": ({}, _MKV_AUDIO, None),
}

FORMATS: dict[str, OutputFormat] = {
    f.name: f
    for f in (
        OutputFormat(
            name="h264", description="H.264 MP4, composited (plays everywhere)",
            extension=".mp4", codec="libx264", pix_fmt="yuv420p", alpha=False, even_size=True,
            container_options=_FASTSTART, codec_options=_ENCODER_DEFAULTS["libx264"],
            copy_audio=_MP4_AUDIO, audio_codec="aac",
        ),
        OutputFormat(
            name="hevc", description="HEVC MP4, composited (smaller files)",
            extension=".mp4", codec="libx265", pix_fmt="yuv420p", alpha=False, even_size=True,
            container_options=_FASTSTART, codec_options=_ENCODER_DEFAULTS["libx265"],
            copy_audio=_MP4_AUDIO, audio_codec="aac",
        ),
        OutputFormat(
            name="av1", description="AV1 MP4, composited (smallest files, slow to encode)",
            extension=".mp4", codec="libsvtav1", pix_fmt="yuv420p", alpha=False,
            even_size=True, container_options=_FASTSTART,
            codec_options=_ENCODER_DEFAULTS["libsvtav1"], copy_audio=_MP4_AUDIO,
            audio_codec="aac",
        ),
        OutputFormat(
            name="prores4444", description="ProRes 4444 MOV with alpha (editing)",
            extension=".mov", codec="prores_ks", pix_fmt="yuva444p10le", alpha=True,
            codec_options=_ENCODER_DEFAULTS["prores_ks"], copy_audio=_MOV_AUDIO,
            audio_codec="aac",
        ),
        OutputFormat(
            name="vp9", description="VP9 WebM with alpha (web)",
            extension=".webm", codec="libvpx-vp9", pix_fmt="yuva420p", alpha=True,
            codec_options=_ENCODER_DEFAULTS["libvpx-vp9"], copy_audio=_WEBM_AUDIO,
            audio_codec="libopus",
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
            name="gif", description="animated GIF, transparent where there is no background "
            "(no audio)", extension=".gif", codec="gif", pix_fmt="pal8", alpha=True,
            container="gif",
            # FFmpeg crops each translucent frame to its opaque box, and its left/right crop
            # skips the box's bottom row: an opaque pixel alone there in its column was lost
            # (FFmpeg 8.0, libavcodec/gif.c gif_crop_translucent). Whole frames instead.
            codec_options={"gifflags": "-offsetting"},
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
                 ".gif": "gif", ".nut": "nut", ".y4m": "y4m"}


@functools.cache
def has_encoder(name: str) -> bool:
    """True when PyAV's FFmpeg was built with the encoder ``name``."""
    import av
    from av.codec.codec import UnknownCodecError

    try:
        av.Codec(name, "w")
    except UnknownCodecError:
        return False
    return True


def _family_of(fmt: OutputFormat) -> _Family | None:
    name = "h264" if fmt.matte_only else fmt.name
    return next((f for f in _FAMILIES.values() if f.format == name), None)


def _named(name: str) -> OutputFormat:
    try:
        return FORMATS[name.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown output format {name!r} (choose from: auto, {', '.join(FORMATS)})"
        ) from None


def auto_format(background: str) -> OutputFormat:
    """What an output that names no format of its own gets (a batch's results, ``.mkv``,
    stdout): VP9 with alpha where ``background`` leaves the result transparent (``auto``,
    ``transparent``), else H.264."""
    from ..compose import parse_background  # here, not on top: compose pulls OpenCV in

    transparent = background.strip().lower() == "auto" or \
        parse_background(background).is_transparent
    return FORMATS["vp9" if transparent else "h264"]


def _base_format(label: str, suffix: str, name: str, family: _Family | None,
                 background: str) -> OutputFormat:
    if name != "auto":
        fmt = _named(name)
        # a format goes in any container its codec (or the one asked for) goes in
        takes = (family if family is not None and fmt.matte_only else _family_of(fmt))
        extensions = takes.extensions if takes is not None else (fmt.extension,)
        if fmt.extension and suffix not in extensions:
            raise ConfigError(f"{label}: format {fmt.name} writes "
                              f"{' or '.join(extensions)} files")
        if not fmt.extension and suffix:
            raise ConfigError(f"{label}: a PNG sequence is written to a directory; "
                              "give a path without extension")
        return fmt
    if not suffix:
        return FORMATS["png"]
    if family is not None and suffix in family.extensions:
        return FORMATS[family.format]
    if suffix == ".mkv":  # Matroska holds every codec: the background decides
        return auto_format(background)
    if suffix not in _BY_EXTENSION:
        raise ConfigError(
            f"{label}: cannot tell the output format from {suffix!r} (use .mp4, .mov, .webm, "
            ".mkv, .gif, .nut, .y4m, a directory for PNG frames, or --format)"
        )
    return FORMATS[_BY_EXTENSION[suffix]]


def _family_for(codec: str | None) -> tuple[_Family | None, tuple[str, ...] | None]:
    """The family ``codec`` names and, for a named hardware encoder, the one to try."""
    if codec is None or codec.lower() == "auto":
        return None, None
    key = codec.lower()
    if key in _FAMILIES:
        return _FAMILIES[key], None
    if key in HARDWARE_ENCODERS:
        return _FAMILIES[HARDWARE_ENCODERS[key]], (key,)
    choices = ", ".join(["auto", *CODECS, *HARDWARE_ENCODERS])
    raise ConfigError(f"unknown codec {codec!r} (choose from: {choices})")


def format_for(path: Path, name: str = "auto", encoding: Encoding | None = None, *,
               background: str = "auto") -> OutputFormat:
    """The concrete output format for ``path``: ``name`` if given, else chosen by its
    extension (a path without extension, or ending in "/", is a PNG-sequence directory;
    ``.mkv`` takes ``auto_format(background)``), with ``encoding`` applied. ConfigError for
    any combination that cannot be written."""
    return _resolve(str(path), path.suffix.lower(), name, encoding or Encoding(), background)


def format_for_stdout(name: str = "auto", *, background: str = "auto",
                      encoding: Encoding | None = None) -> OutputFormat:
    """The format for a stream on standard output: what ``format_for`` gives a ``.mkv`` file,
    in FFmpeg's Matroska muxer (``container``); NUT, y4m and GIF as they are."""
    own = _named(name) if name != "auto" else None
    if own is not None and own.codec is None:
        raise ConfigError("stdout takes one stream, not a folder of PNG frames: choose a video "
                          "format (--format nut gives raw RGBA frames)")
    if own is not None and own.container is not None:
        return _resolve("stdout", own.extension, name, encoding or Encoding(), background)
    fmt = _resolve("stdout", ".mkv", name, encoding or Encoding(), background)
    return replace(fmt, container="matroska")


def _resolve(label: str, suffix: str, name: str, encoding: Encoding,
             background: str) -> OutputFormat:
    """``format_for`` for an output that messages call ``label``, in a ``suffix`` file."""
    family, named_hardware = _family_for(encoding.codec)
    fmt = _base_format(label, suffix, name, family, background)
    own = _family_of(fmt)
    if family is not None:
        if own is None:
            raise ConfigError(f"{label}: --codec applies to compressed video, and {fmt.name} "
                              f"is {fmt.description}")
        if family is not own and not fmt.matte_only and name != "auto":
            raise ConfigError(f"format {fmt.name} and codec {encoding.codec} disagree; give one "
                              "of them")
        if suffix not in family.extensions:
            raise ConfigError(f"{label}: {family.name} cannot be written to a {suffix} file "
                              f"(use {', '.join(family.extensions)})")
    family = family or own
    if family is None:  # PNG sequence, GIF, NUT, y4m: nothing to tune
        asked = [flag for flag, value in (("--crf", encoding.crf), ("--preset", encoding.preset),
                                          ("--bitrate", encoding.bit_rate)) if value is not None]
        if asked:
            raise ConfigError(f"{label}: {', '.join(asked)}: the {fmt.name} format "
                              "has no such setting (they tune video codecs)")
        return fmt
    if suffix and suffix != fmt.extension:
        options, copy_audio, audio_codec = _CONTAINERS[suffix]
        fmt = replace(fmt, extension=suffix, container_options=options, copy_audio=copy_audio,
                      audio_codec=audio_codec or fmt.audio_codec)
    return _with_encoder(fmt, family, encoding, named_hardware)


def _software_encoder(family: _Family) -> str:
    for encoder in family.software:
        if has_encoder(encoder):
            return encoder
    present = [e for e in family.hardware if has_encoder(e)]
    has = (f"it has only the hardware encoder(s) {', '.join(present)}, which need a GPU"
           if present else "it has none")
    raise ConfigError(f"{family.name} needs one of the encoders {', '.join(family.software)} "
                      f"in PyAV's FFmpeg, and {has} (choose another --codec)")


def _with_encoder(fmt: OutputFormat, family: _Family, encoding: Encoding,
                  named_hardware: tuple[str, ...] | None) -> OutputFormat:
    if family.crf_range is None and (encoding.crf is not None or encoding.bit_rate is not None
                                     or encoding.preset is not None):
        raise ConfigError(f"{family.name} has fixed-quality profiles: --crf, --preset and "
                          "--bitrate do not apply to it")
    if encoding.crf is not None and encoding.bit_rate is not None:
        raise ConfigError("choose --crf (constant quality) or --bitrate, not both")
    if encoding.crf is not None:
        low, high = family.crf_range or (0, 0)
        if not low <= encoding.crf <= high:
            raise ConfigError(f"--crf for {family.name} should be {low}–{high} (lower is "
                              f"better), got {encoding.crf}")
    if encoding.preset is not None and encoding.preset not in family.presets:
        raise ConfigError(f"unknown --preset {encoding.preset!r} for {family.name} (choose "
                          f"from: {', '.join(family.presets)})")
    encoder = _software_encoder(family)
    same = encoder == fmt.codec
    options = dict(fmt.codec_options if same else _ENCODER_DEFAULTS[encoder])
    crf = encoding.crf if encoding.crf is not None else int(options.get("crf", "0")) or None
    preset = encoding.preset or _default_preset(encoder, options)
    if encoding.bit_rate is not None:
        for key in ("crf", "b"):
            options.pop(key, None)
    elif encoding.crf is not None:
        options["crf"] = str(encoding.crf)
    if encoding.preset is not None:
        options.update(_preset_options(encoder, family, encoding.preset))
    pix_fmt = family.opaque_pix_fmt if fmt.matte_only else fmt.pix_fmt
    hardware: tuple[str, ...] = ()
    if named_hardware is not None:
        hardware = named_hardware
    elif encoding.codec is not None and encoding.codec.lower() == "auto":
        hardware = family.hardware
    return replace(
        fmt, codec=encoder, codec_options=options, pix_fmt=pix_fmt, bit_rate=encoding.bit_rate,
        hardware=tuple((hw, _hardware_options(family, crf, preset, encoding.bit_rate))
                       for hw in hardware if has_encoder(hw)),
    )


def _default_preset(encoder: str, options: dict[str, str]) -> str | None:
    if encoder in ("libx264", "libx265", "libsvtav1"):
        return options.get("preset")
    return None


def _preset_options(encoder: str, family: _Family, preset: str) -> dict[str, str]:
    """``preset`` (in the family's vocabulary) as ``encoder``'s own option."""
    if encoder == "libaom-av1":  # SVT-AV1's 0–13 onto libaom's cpu-used 0–8
        return {"cpu-used": str(round(int(preset) * 8 / 13))}
    if encoder == "libvpx-vp9":
        return {"cpu-used": preset}
    return {"preset": preset}


def _hardware_options(family: _Family, crf: int | None, preset: str | None,
                      bit_rate: int | None) -> dict[str, str]:
    """NVENC's settings for what the user asked in the family's terms: its constant-quality
    ``cq`` for the CRF (0–51: AV1's 0–63 scaled), p1–p7 for the preset."""
    options: dict[str, str] = {"rc": "vbr"}
    if bit_rate is None:
        high = family.crf_range[1] if family.crf_range else 51
        options.update(cq=str(round((crf if crf is not None else 23) * 51 / high)), b="0")
    if preset is not None:
        if preset in _NVENC_FROM_X264:
            options["preset"] = _NVENC_FROM_X264[preset]
        else:  # SVT-AV1's 0 (best) … 13 (fastest)
            options["preset"] = f"p{7 - round(int(preset) * 6 / 13)}"
    return options


def parse_bit_rate(text: str) -> int:
    """``"5M"``, ``"2500k"``, ``"800000"`` → bits per second."""
    value = text.strip().lower().removesuffix("bps").removesuffix("b")
    scale = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(value[-1:], 1)
    if scale != 1:
        value = value[:-1]
    try:
        rate = float(value) * scale
    except ValueError:
        raise ConfigError(f"bit rate {text!r}: expected a number of bits/s like 5M, 2500k or "
                          "800000") from None
    if rate < 1000:
        raise ConfigError(f"bit rate {text!r} is below 1 kbit/s (use a suffix: 5M, 2500k)")
    return int(rate)
