"""Every output format round-trips: reopened with PyAV, it has the codec, pixel format, size,
frame count, timestamps, audio and alpha we meant to write."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from media import BrightnessEngine, imread, make_video

from streammatte import matte_video
from streammatte.errors import ConfigError
from streammatte.frames import FramePacket
from streammatte.sinks.file import FileSink
from streammatte.sinks.formats import FORMATS, format_for


def _video_frames(path: Path) -> tuple[Any, list[Any]]:
    container = av.open(str(path))
    stream = container.streams.video[0]
    frames = list(container.decode(stream))
    return container, frames


def _times(frames: list[Any]) -> list[float]:
    return [float(f.pts * f.time_base) for f in frames]


def _alpha_frames(path: Path) -> list[np.ndarray]:
    """Decode VP9 with libvpx, which (unlike FFmpeg's native decoder) reads the alpha plane."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoder = av.CodecContext.create("libvpx-vp9", "r")
        alphas = []
        for packet in container.demux(stream):  # its last, empty packet flushes the decoder
            for frame in decoder.decode(packet):
                assert frame.format.name == "yuva420p"
                alphas.append(frame.reformat(format="rgba").to_ndarray()[..., 3])
    return alphas


@pytest.fixture
def clip(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    path = tmp_path / "in.mp4"
    alphas = make_video(path, frames=12, size=(64, 48), audio="aac")
    return path, alphas


def _expected_times(path: Path) -> list[float]:
    _, frames = _video_frames(path)
    return _times(frames)


@pytest.mark.parametrize(
    ("fmt", "suffix", "codec", "pix_fmt"),
    [
        ("h264", ".mp4", "h264", "yuv420p"),
        ("hevc", ".mp4", "hevc", "yuv420p"),
        # FFmpeg decodes every ProRes 4444 as 12-bit; the stream's tag says what was written
        ("prores4444", ".mov", "prores", "yuva444p12le"),
        ("vp9", ".webm", "vp9", "yuv420p"),  # FFmpeg's native VP9 decoder hides the alpha plane
        ("matte", ".mp4", "h264", "yuv420p"),
    ],
)
def test_video_formats_round_trip(
    clip: tuple[Path, list[np.ndarray]], tmp_path: Path, fmt: str, suffix: str, codec: str,
    pix_fmt: str,
) -> None:
    src, _ = clip
    out = tmp_path / f"out{suffix}"
    background = "green" if fmt in ("h264", "hevc") else "auto"
    report = matte_video(src, out, engine=BrightnessEngine(), output_format=fmt,
                         background=background)
    container, frames = _video_frames(out)
    stream = container.streams.video[0]
    assert stream.codec_context.name == codec
    assert stream.codec_context.format.name == pix_fmt
    assert (stream.width, stream.height) == (64, 48)
    if fmt == "prores4444":
        assert (stream.codec_tag, stream.codec_context.profile) == ("ap4h", "4444")
    assert len(frames) == 12 == report.frames_out
    assert _times(frames) == pytest.approx(_expected_times(src), abs=1e-3)
    audio = container.streams.audio
    assert len(audio) == 1, "the input's audio track must be carried over"
    expected_audio = "opus" if fmt == "vp9" else "aac"
    assert audio[0].codec_context.name == expected_audio
    container.close()


def test_prores_alpha_is_the_matte(clip: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    src, truth = clip
    out = tmp_path / "out.mov"
    matte_video(src, out, engine=BrightnessEngine())
    container, frames = _video_frames(out)
    container.close()
    alpha = np.stack([f.to_ndarray(format="rgba")[..., 3] for f in frames]) / 255.0
    # The test double keys on brightness, so the square (and only it) is opaque; lossy chroma
    # around its edges makes a few pixels differ.
    assert np.mean(np.abs(alpha - np.stack(truth))) < 0.02


def test_webm_alpha_reads_back(clip: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    src, truth = clip
    out = tmp_path / "out.webm"
    matte_video(src, out, engine=BrightnessEngine())
    alphas = _alpha_frames(out)
    assert len(alphas) == 12
    assert np.mean(np.abs(np.stack(alphas) / 255.0 - np.stack(truth))) < 0.03


def test_matte_output_is_greyscale_alpha(clip: tuple[Path, list[np.ndarray]],
                                         tmp_path: Path) -> None:
    src, truth = clip
    out = tmp_path / "matte.mp4"
    matte_video(src, out, engine=BrightnessEngine(), output_format="matte")
    container, frames = _video_frames(out)
    container.close()
    luma = np.stack([f.to_ndarray(format="gray") for f in frames]) / 255.0
    assert np.mean(np.abs(luma - np.stack(truth))) < 0.03


def test_png_sequence_with_sidecar_audio(clip: tuple[Path, list[np.ndarray]],
                                         tmp_path: Path) -> None:
    src, truth = clip
    out = tmp_path / "frames"
    report = matte_video(src, out, engine=BrightnessEngine())
    pngs = sorted(out.glob("frame_*.png"))
    assert len(pngs) == 12 == report.frames_out
    first = imread(pngs[0])
    assert first is not None
    assert first.shape == (48, 64, 4)
    assert np.mean(np.abs(first[..., 3] / 255.0 - truth[0])) < 0.02
    with av.open(str(out / "audio.mka")) as sidecar:
        assert sidecar.streams.audio[0].codec_context.name == "aac"


def test_composite_over_colour(clip: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    src, truth = clip
    out = tmp_path / "green.mp4"
    matte_video(src, out, engine=BrightnessEngine(), background="#00ff00")
    container, frames = _video_frames(out)
    container.close()
    rgb = frames[5].to_ndarray(format="rgb24").astype(int)
    background = truth[5] == 0
    # away from the square's edges the background is pure green (up to H.264 rounding)
    inner_bg = cv2.erode(background.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert np.abs(rgb[inner_bg] - (0, 255, 0)).max() < 24


def test_pcm_audio_is_copied_into_mov_and_reencoded_for_mp4(tmp_path: Path) -> None:
    src = tmp_path / "in.mov"
    make_video(src, frames=10, audio="pcm_s16le")
    matte_video(src, tmp_path / "a.mov", engine=BrightnessEngine())
    matte_video(src, tmp_path / "b.mp4", engine=BrightnessEngine(), background="blur")
    with av.open(str(tmp_path / "a.mov")) as mov, av.open(str(tmp_path / "b.mp4")) as mp4:
        assert mov.streams.audio[0].codec_context.name == "pcm_s16le"
        assert mp4.streams.audio[0].codec_context.name == "aac"
        # the re-encoded track is as long as the original (within one AAC frame)
        samples = sum(f.samples for f in mp4.decode(audio=0))
        assert samples == pytest.approx(44100, abs=2048)


def test_variable_frame_rate_timestamps_survive(tmp_path: Path) -> None:
    src = tmp_path / "vfr.mkv"
    pts = [0, 3, 4, 9, 20, 21, 22, 30, 31, 40, 50, 51]
    make_video(src, frames=len(pts), pts=pts, time_base=Fraction(1, 30))
    expected = [p / 30 for p in pts]
    for name in ("out.mp4", "out.mov", "out.webm"):
        out = tmp_path / name
        matte_video(src, out, engine=BrightnessEngine(), background="white")
        container, frames = _video_frames(out)
        container.close()
        assert _times(frames) == pytest.approx(expected, abs=1e-3), name


def test_rotation_metadata_is_applied(tmp_path: Path) -> None:
    src = tmp_path / "rotated.mp4"
    make_video(src, frames=4, size=(64, 48), rotation=90)
    out = tmp_path / "out.mov"
    report = matte_video(src, out, engine=BrightnessEngine())
    container, frames = _video_frames(out)
    container.close()
    assert (frames[0].width, frames[0].height) == (48, 64)
    with av.open(str(src)) as original:
        raw = next(original.decode(video=0)).to_ndarray(format="rgb24")
    upright = np.rot90(raw)  # display matrix 90° = counter-clockwise quarter turn
    got = frames[0].to_ndarray(format="rgba")[..., :3].astype(int)
    assert np.abs(got - upright).mean() < 4
    assert any("rotated 90" in note for note in report.notes)


@pytest.mark.parametrize(("fmt", "suffix", "size"), [
    ("h264", ".mp4", (64, 48)),  # 4:2:0 needs even sizes: padded by one pixel
    ("prores4444", ".mov", (63, 47)),
    ("vp9", ".webm", (63, 47)),
    ("png", "", (63, 47)),
])
def test_odd_frame_sizes(tmp_path: Path, fmt: str, suffix: str, size: tuple[int, int]) -> None:
    src = tmp_path / "odd.mkv"
    make_video(src, frames=3, size=(63, 47), codec="ffv1", pix_fmt="yuv444p")
    out = tmp_path / f"out{suffix}"
    report = matte_video(src, out, engine=BrightnessEngine(), output_format=fmt,
                         background="white" if fmt == "h264" else "auto")
    if fmt == "png":
        image = imread(next(out.glob("*.png")))
        assert image is not None
        assert (image.shape[1], image.shape[0]) == size
    else:
        container, frames = _video_frames(out)
        container.close()
        assert (frames[0].width, frames[0].height) == size
        assert len(frames) == 3
    assert any("padded" in n for n in report.notes) == (fmt == "h264")


def test_format_is_chosen_by_extension(tmp_path: Path) -> None:
    assert format_for(tmp_path / "a.mp4").name == "h264"
    assert format_for(tmp_path / "a.mov").name == "prores4444"
    assert format_for(tmp_path / "a.webm").name == "vp9"
    assert format_for(tmp_path / "frames").name == "png"
    assert format_for(tmp_path / "a.gif").name == "gif"
    assert format_for(tmp_path / "a.nut").name == "nut"
    assert format_for(tmp_path / "a.y4m").name == "y4m"
    with pytest.raises(ConfigError, match=r"a\.avi: cannot tell the output format"):
        format_for(tmp_path / "a.avi")
    with pytest.raises(ConfigError, match=r"format prores4444 writes \.mov"):
        format_for(tmp_path / "a.mp4", "prores4444")
    assert set(FORMATS) == {"h264", "hevc", "av1", "prores4444", "vp9", "png", "matte", "gif",
                            "nut", "y4m"}


def test_mp4_with_transparent_background_is_refused(clip: tuple[Path, list[np.ndarray]],
                                                    tmp_path: Path) -> None:
    src, _ = clip
    with pytest.raises(ConfigError, match="no alpha channel"):
        matte_video(src, tmp_path / "x.mp4", engine=BrightnessEngine(),
                    background="transparent")
    assert not (tmp_path / "x.mp4").exists()


def test_output_gets_the_users_umask_not_a_private_mode(tmp_path: Path) -> None:
    import os

    src = tmp_path / "clip.mp4"
    make_video(src, frames=3)
    old = os.umask(0o022)
    try:
        matte_video(src, tmp_path / "out.mov", engine=BrightnessEngine())
    finally:
        os.umask(old)
    assert (tmp_path / "out.mov").stat().st_mode & 0o777 == 0o644


def test_stdout_gets_the_codec_in_matroska_and_the_raw_formats_as_they_are() -> None:
    from streammatte.sinks.formats import format_for_stdout

    assert (format_for_stdout(background="auto").name,
            format_for_stdout(background="auto").container) == ("vp9", "matroska")
    assert format_for_stdout(background="blur").name == "h264"
    prores = format_for_stdout("prores4444")
    assert (prores.container, "opus" in prores.copy_audio) == ("matroska", True)
    assert format_for_stdout("nut").container == "nut"
    assert format_for_stdout("y4m").container == "yuv4mpegpipe"
    with pytest.raises(ConfigError, match=r"stdout takes one stream, not a folder of PNG"):
        format_for_stdout("png")


def test_a_sink_finished_then_closed_is_published(tmp_path: Path) -> None:
    """``finish`` leaves the output complete under its temporary name; a ``close`` after it
    still puts it in place (it used to return early and leave it there)."""
    out = tmp_path / "o.mov"
    image = np.full((16, 16, 3), 90, np.uint8)
    sink = FileSink(out, format_for(out))
    sink.write_picture(FramePacket(0, image, 0, Fraction(1, 25)), image)
    sink.finish()
    assert not out.exists()
    sink.close()
    sink.close()  # twice is harmless
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["o.mov"]  # no temporary left beside it


def test_an_aborted_sink_publishes_nothing_when_closed(tmp_path: Path) -> None:
    out = tmp_path / "o.mov"
    image = np.full((16, 16, 3), 90, np.uint8)
    sink = FileSink(out, format_for(out))
    sink.write_picture(FramePacket(0, image, 0, Fraction(1, 25)), image)
    sink.abort()
    sink.close()
    assert list(tmp_path.iterdir()) == []
