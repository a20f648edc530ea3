"""``streammatte video --start/--end/--frames`` and matte_video's start_s/end_s/max_frames
(issue 16 item 1): the real CLI on real media; audio cut to match; timestamps from zero."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media import BrightnessEngine, cut_mkv_eight_of_ten, imread, make_video

from streammatte import matte_video
from streammatte.config import MatteConfig
from streammatte.errors import ConfigError

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "vtest-excerpt.mp4"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streammatte", *args], capture_output=True,
                          text=True, timeout=300)


def _video_times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as container:
        return [f.pts * f.time_base for f in container.decode(video=0)]


def _audio_packets(path: Path) -> list[tuple[Fraction, Fraction]]:
    """(start, end) in seconds of every audio packet that carries data."""
    with av.open(str(path)) as container:
        return [(p.pts * p.time_base, (p.pts + (p.duration or 0)) * p.time_base)
                for p in container.demux(audio=0) if p.size and p.pts is not None]


def test_cli_trims_video_and_audio_and_starts_at_zero(tmp_path: Path) -> None:
    clip = tmp_path / "tone.mp4"
    make_video(clip, frames=60, size=(96, 64), audio="aac", gop=10)
    out = tmp_path / "part.mp4"
    result = _run("video", str(clip), "-o", str(out), "-e", "mog2", "-b", "blue",
                  "--start", "2.05", "--end", "0:04")
    assert result.returncode == 0, result.stderr
    assert "19 frames" in result.stderr and "audio: aac (copied)" in result.stderr
    # 2.1 s … 3.9 s of the input, rebased: the first frame at 2.05 s or after is 2.1 s
    assert _video_times(out) == [Fraction(i, 10) for i in range(19)]
    audio = _audio_packets(out)
    packet = audio[0][1] - audio[0][0]
    assert 0 <= audio[0][0] < packet  # from the first frame, to within an audio packet
    assert Fraction(19, 10) - packet <= audio[-1][0] < Fraction(19, 10)  # up to --end


def test_cli_frames_counts_from_the_start(tmp_path: Path) -> None:
    clip = tmp_path / "tone.mkv"
    make_video(clip, frames=30, size=(64, 48), audio="libopus")
    out = tmp_path / "first.webm"
    result = _run("video", str(clip), "-o", str(out), "-e", "mog2", "--frames", "7")
    assert result.returncode == 0, result.stderr
    assert _video_times(out) == [Fraction(i, 10) for i in range(7)]
    assert _audio_packets(out)[-1][0] < Fraction(7, 10)


def test_cli_trim_is_frame_accurate_on_the_sample_clip(tmp_path: Path,
                                                       u2netp_path: Path) -> None:
    """A trimmed run's frames are the full run's frames at the same times, bit for bit (PNG,
    no temporal smoothing, a real model): the seek lands on the right frame."""
    common = ["--model-file", str(u2netp_path), "--temporal", "none", "-f", "png"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    for out, trim in ((whole, ["--frames", "12"]), (part, ["--start", "0.8", "--frames", "4"])):
        result = _run("video", str(SAMPLE), "-o", str(out), *common, *trim)
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in part.glob("*.png")) == [f"frame_{i:06d}.png" for i in range(4)]
    for i in range(4):
        assert np.array_equal(imread(part / f"frame_{i:06d}.png"),
                              imread(whole / f"frame_{i + 8:06d}.png")), i


def test_cli_trims_a_real_avi_mid_gop(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "street.mov"
    result = _run("video", str(shared_data / "media" / "vtest.avi"), "-o", str(out),
                  "-e", "mog2", "--start", "00:00:40", "--frames", "5")
    assert result.returncode == 0, result.stderr
    assert "5 frames" in result.stderr and "note:" not in result.stderr
    assert _video_times(out) == [Fraction(i, 10) for i in range(5)]


def test_cli_trim_keeps_variable_frame_rate(tmp_path: Path) -> None:
    clip = tmp_path / "vfr.mkv"
    pts = [i * i * 10 for i in range(20)]  # ms
    make_video(clip, frames=20, pts=pts, time_base=Fraction(1, 1000), gop=4)
    out = tmp_path / "part.webm"
    result = _run("video", str(clip), "-o", str(out), "-e", "mog2",
                  "--start", "0.5", "--end", "2")
    assert result.returncode == 0, result.stderr
    assert _video_times(out) == [Fraction(t - 640, 1000) for t in pts if 500 <= t < 2000]


def test_cli_trim_of_a_rotated_clip_is_upright(tmp_path: Path) -> None:
    clip = tmp_path / "phone.mp4"
    make_video(clip, frames=20, size=(64, 48), rotation=90, gop=5)
    out = tmp_path / "part.mp4"
    result = _run("video", str(clip), "-o", str(out), "-e", "mog2", "-b", "green",
                  "--start", "1.2", "--frames", "3")
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.frames) == (48, 64, 3)


def test_cli_says_a_cut_file_ends_early_only_inside_the_trim(tmp_path: Path) -> None:
    cut = cut_mkv_eight_of_ten(tmp_path)
    inside = _run("video", str(cut), "-o", str(tmp_path / "a.webm"), "-e", "mog2",
                  "--end", "0.5")
    assert inside.returncode == 0 and "ends early" not in inside.stderr, inside.stderr
    across = _run("video", str(cut), "-o", str(tmp_path / "b.webm"), "-e", "mog2",
                  "--start", "0.5")
    assert across.returncode == 0
    assert "note: cut.mkv: input ends early: 8 of 10 frames" in across.stderr


@pytest.mark.parametrize(("trim", "message"), [
    (["--start", "2", "--end", "1"], "end_s should be after start_s (2 s), got 1 s"),
    (["--frames", "0"], "max_frames should be >= 1, got 0"),
    (["--start", "100"], "no frame lies in the range asked for (from 100 s); the video ends "
                         "at 1.2 s"),
])
def test_a_bad_trim_ends_in_one_error_line_with_status_2(tmp_path: Path, trim: list[str],
                                                        message: str) -> None:
    """(A range past the end is found once the clip is open: its description comes first.)"""
    make_video(tmp_path / "clip.mp4", frames=12)
    result = _run("video", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "o.mp4"),
                  "-e", "mog2", *trim)
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("streammatte: error: ") and message in error, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_an_unreadable_time_is_refused_by_the_parser(tmp_path: Path) -> None:
    make_video(tmp_path / "clip.mp4", frames=2)
    result = _run("video", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "o.mp4"),
                  "--start", "1:75")
    assert result.returncode == 2
    assert "argument --start: expected minutes and seconds under 60, got '1:75'" \
        in result.stderr


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90.0), ("90.5", 90.5), ("1:30.5", 90.5), ("01:01:30.250", 3690.25), (".5", 0.5),
])
def test_times_read_as_seconds_or_clock_time(text: str, seconds: float) -> None:
    from streammatte.commands.common import parse_time

    assert parse_time(text) == seconds


def test_matte_video_takes_the_trim_as_options(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=30, gop=10)
    report = matte_video(clip, tmp_path / "o.webm", engine=BrightnessEngine(), start_s=1.5,
                         max_frames=4)
    assert report.frames_out == 4
    assert _video_times(tmp_path / "o.webm") == [Fraction(i, 10) for i in range(4)]


def test_a_config_without_a_trim_decodes_the_whole_file() -> None:
    assert MatteConfig().decode_range() is None
    assert MatteConfig(end_s=3.0).decode_range() is not None
    with pytest.raises(ConfigError, match=r"start_s should be >= 0 seconds, got -2"):
        MatteConfig(start_s=-2)
