"""Encoding control (#16 item 3): --codec, --crf, --preset, --bitrate, hardware encoders that
open or fall back, and animated GIF, through the real CLI on real media."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media import davis_clip, make_video
from PIL import Image

from streammatte.cli import main
from streammatte.errors import ConfigError
from streammatte.frames import FramePacket
from streammatte.sinks.file import FileSink
from streammatte.sinks.formats import Encoding, format_for, parse_bit_rate

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "vtest-excerpt.mp4"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streammatte", *args], capture_output=True,
                          text=True, timeout=300)


def _video(path: Path, *extra: str, src: Path = SAMPLE) -> None:
    """The sample clip (or ``src``) through mog2 (a real engine, no model to load) over a
    blurred background."""
    args = ["video", str(src), "-o", str(path), "-e", "mog2", "--temporal", "none", "-q",
            *extra]
    if "-b" not in extra and path.suffix != ".gif":
        args += ["-b", "blur"]
    assert main(args) == 0


@pytest.fixture(scope="module")
def parkour(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 frames of DAVIS parkour (real footage, 428×240, 25 fps)."""
    return davis_clip(shared_data, tmp_path_factory.mktemp("parkour") / "parkour.mp4", 12)


@pytest.mark.parametrize(("path", "fmt", "encoding", "expected"), [
    ("a.mp4", "auto", Encoding(), ("h264", "libx264", ".mp4")),
    ("a.mp4", "auto", Encoding(codec="av1"), ("av1", "libsvtav1", ".mp4")),
    ("a.webm", "auto", Encoding(codec="av1"), ("av1", "libsvtav1", ".webm")),
    ("a.mov", "auto", Encoding(codec="hevc"), ("hevc", "libx265", ".mov")),
    ("a.mov", "h264", Encoding(), ("h264", "libx264", ".mov")),
    ("a.mp4", "matte", Encoding(codec="hevc"), ("matte", "libx265", ".mp4")),
    ("a.mov", "matte", Encoding(codec="prores"), ("matte", "prores_ks", ".mov")),
    ("a.gif", "auto", Encoding(), ("gif", "gif", ".gif")),
])
def test_codec_and_extension_resolve_to_one_format(tmp_path: Path, path: str, fmt: str,
                                                   encoding: Encoding,
                                                   expected: tuple[str, str, str]) -> None:
    resolved = format_for(tmp_path / path, fmt, encoding)
    assert (resolved.name, resolved.codec, resolved.extension) == expected


def test_user_settings_reach_the_encoder_options(tmp_path: Path) -> None:
    fmt = format_for(tmp_path / "a.webm", "auto", Encoding(codec="av1", crf=40, preset="10"))
    assert (fmt.codec_options["crf"], fmt.codec_options["preset"]) == ("40", "10")
    vp9 = format_for(tmp_path / "a.webm", "auto", Encoding(preset="6", bit_rate=2_000_000))
    assert vp9.codec_options["cpu-used"] == "6" and "crf" not in vp9.codec_options
    assert vp9.bit_rate == 2_000_000
    # a hardware encoder gets the same request in its own terms
    nvenc = format_for(tmp_path / "a.mp4", "auto", Encoding(codec="auto", crf=20, preset="slow"))
    assert nvenc.hardware == (("h264_nvenc", {"rc": "vbr", "cq": "20", "b": "0",
                                              "preset": "p5"}),)


@pytest.mark.parametrize(("text", "bits"), [("5M", 5_000_000), ("2500k", 2_500_000),
                                            ("800000", 800_000), ("1.5m", 1_500_000)])
def test_bit_rates_read_like_ffmpeg_s(text: str, bits: int) -> None:
    assert parse_bit_rate(text) == bits


def test_a_missing_encoder_says_what_this_ffmpeg_has(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from streammatte.sinks import formats

    # a build without the AV1 software encoders, as some PyAV wheels are
    real = formats.has_encoder
    monkeypatch.setattr(formats, "has_encoder",
                        lambda name: name not in ("libsvtav1", "libaom-av1") and real(name))
    with pytest.raises(ConfigError, match=r"av1 needs one of the encoders libsvtav1, libaom-av1 "
                       r"in PyAV's FFmpeg, and it has only the hardware encoder\(s\) av1_nvenc"):
        format_for(tmp_path / "a.mp4", "auto", Encoding(codec="av1"))


@pytest.mark.parametrize(("args", "message"), [
    (["--preset", "p3"], "unknown --preset 'p3' for h264 (choose from: ultrafast"),
    (["--crf", "60"], "--crf for h264 should be 0–51"),
    (["--codec", "vp9"], "vp9 cannot be written to a .mp4 file (use .webm, .mkv)"),
    (["--crf", "20", "--bitrate", "2M"], "choose --crf (constant quality) or --bitrate"),
    (["--codec", "prores", "--crf", "10", "-f", "prores4444"], "format prores4444 writes .mov"),
])
def test_bad_encoding_options_are_one_line_errors(tmp_path: Path, args: list[str],
                                                  message: str) -> None:
    out = tmp_path / "o.mp4"
    result = _run("video", str(SAMPLE), "-o", str(out), "-e", "mog2", "-b", "blur", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists()


def test_gif_takes_no_crf(tmp_path: Path) -> None:
    result = _run("video", str(SAMPLE), "-o", str(tmp_path / "o.gif"), "--crf", "20")
    assert result.returncode == 2
    assert "--crf: the gif format has no such setting" in result.stderr


def test_hevc_is_tagged_hvc1_for_apple_players(tmp_path: Path, parkour: Path) -> None:
    out = tmp_path / "out.mp4"
    _video(out, "--codec", "hevc", src=parkour)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_tag) == ("hevc", "hvc1")
        assert stream.frames == 12


def test_av1_writes_a_decodable_clip(tmp_path: Path, parkour: Path) -> None:
    out = tmp_path / "out.webm"
    _video(out, "--codec", "av1", "--preset", "12", src=parkour)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.codec.id == av.Codec("av1", "r").id  # decoded by libdav1d
        frames = list(container.decode(stream))
    assert len(frames) == 12 and (frames[0].width, frames[0].height) == (428, 240)


def test_crf_trades_size_for_quality(tmp_path: Path, parkour: Path) -> None:
    sizes = {}
    for crf in ("12", "36"):
        out = tmp_path / f"crf{crf}.mp4"
        _video(out, "--crf", crf, src=parkour)
        sizes[crf] = out.stat().st_size
    assert sizes["36"] * 3 < sizes["12"], sizes


def test_preset_reaches_x264(tmp_path: Path, parkour: Path) -> None:
    # x264 writes its settings into the stream; ultrafast is subme=0, slow subme=8
    for preset, setting in (("ultrafast", b"subme=0 "), ("slow", b"subme=8 ")):
        out = tmp_path / f"{preset}.mp4"
        _video(out, "--preset", preset, src=parkour)
        assert setting in out.read_bytes(), preset


def test_bitrate_is_the_target(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    _video(out, "--bitrate", "400k")
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        seconds = float(stream.duration * stream.time_base)
        bits = 8 * sum(p.size for p in container.demux(stream))
    assert 0.6 * 400_000 < bits / seconds < 1.4 * 400_000


def test_hardware_encoder_opens_or_falls_back_with_a_note(tmp_path: Path, parkour: Path) -> None:
    out, report = tmp_path / "out.mp4", tmp_path / "report.json"
    _video(out, "--codec", "h264_nvenc", "--report", str(report), src=parkour)
    (run,) = json.loads(report.read_text())["runs"]
    encoder = run["outputs"][0]["encoder"]
    if encoder != "h264_nvenc":  # no NVIDIA encoder here (no GPU, or one without NVENC)
        assert encoder == "libx264"
        assert any("hardware encoder h264_nvenc (" in n and "encoded with libx264 instead" in n
                   for n in run["notes"]), run["notes"]
    with av.open(str(out)) as container:
        assert container.streams.video[0].frames == 12


def _gif_frames(path: Path) -> tuple[list[np.ndarray], list[int]]:
    frames, durations = [], []
    with Image.open(path) as gif:
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
            frames.append(np.asarray(gif.convert("RGBA")))
    return frames, durations


def test_gif_is_transparent_where_the_matte_is_clear(tmp_path: Path, parkour: Path) -> None:
    out, mattes = tmp_path / "out.gif", tmp_path / "mattes"
    _video(out, "--output-matte", str(mattes), src=parkour)
    frames, durations = _gif_frames(out)
    assert len(frames) == 12 and durations == [40] * 12  # 25 fps, as the input
    for i, frame in enumerate(frames):
        matte = np.asarray(Image.open(mattes / f"frame_{i:06d}.png"))
        # GIF has one bit of alpha: opaque where the matte is at least half; nothing of an
        # earlier frame shows through a transparent pixel
        np.testing.assert_array_equal(frame[..., 3] == 255, matte >= 128, err_msg=f"frame {i}")
        assert set(np.unique(frame[..., 3])) <= {0, 255}
    assert 0.001 < np.mean([f[..., 3] > 0 for f in frames]) < 0.5


def test_gif_keeps_an_opaque_pixel_alone_in_a_corner_of_its_frame_s_opaque_box(
        tmp_path: Path) -> None:
    """FFmpeg's GIF encoder crops a translucent frame to its opaque box, and its left/right
    crop forgets the box's bottom row: a pixel alone there in its column was cut (found on
    real footage: a foot at the frame's lower edge). The sink does not let it crop."""
    out = tmp_path / "o.gif"
    frames = []
    for shift in range(3):  # the encoder crops from the second frame on
        rgba = np.zeros((24, 32, 4), np.uint8)
        rgba[..., :3] = (200, 40, 40)
        rgba[5:11, 10 + shift:20 + shift, 3] = 255  # the opaque box …
        rgba[11, 8 + shift, 3] = 255  # … and one pixel in its bottom row, left of the rest
        rgba[11, 22 + shift, 3] = 255  # … and one right of it
        frames.append(rgba)
    with FileSink(out, format_for(out)) as sink:
        for i, rgba in enumerate(frames):
            sink.write_picture(FramePacket(i, rgba[..., :3], i, Fraction(1, 25)), rgba)
    decoded, _ = _gif_frames(out)
    assert len(decoded) == len(frames)
    for i, (got, want) in enumerate(zip(decoded, frames, strict=True)):
        np.testing.assert_array_equal(got[..., 3] == 255, want[..., 3] >= 128,
                                      err_msg=f"frame {i}")


def test_gif_over_a_background_is_opaque_and_says_its_audio_was_left(tmp_path: Path) -> None:
    src, out, report = tmp_path / "in.mp4", tmp_path / "out.gif", tmp_path / "r.json"
    make_video(src, frames=8, size=(96, 64), audio="aac")
    assert main(["video", str(src), "-o", str(out), "-e", "mog2", "-b", "#00b140", "-q",
                 "--report", str(report)]) == 0
    frames, _ = _gif_frames(out)
    assert len(frames) == 8 and all((f[..., 3] == 255).all() for f in frames)
    notes = json.loads(report.read_text())["runs"][0]["notes"]
    assert "out.gif: gif holds no audio: 1 audio track(s) of the input were not written" in notes
