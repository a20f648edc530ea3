"""A file cut short is reported, never passed off as whole (issue 12, item 3): the frames that
came out are judged against the length the container declares."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest
from media import BrightnessEngine, cut_before_packet, make_video

from streammatte import matte_video
from streammatte.errors import SourceError
from streammatte.sources.file import FileSource

NOTE = "input ends early"


def faststart(src: Path, dst: Path) -> None:
    """``src`` remuxed as an MP4 with its index at the front (what survives a cut)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w",
                                           options={"movflags": "+faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)


@pytest.fixture(params=["mp4", "webm", "mkv", "avi"])
def eight_of_ten(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A 10-frame clip cut after its 8th frame."""
    kind = request.param
    codec = {"mp4": "libx264", "webm": "libvpx-vp9"}.get(kind, "mpeg4")
    whole = tmp_path / f"whole.{kind}"
    make_video(whole, frames=10, size=(96, 64), codec=codec)
    if kind == "mp4":
        faststart(whole, tmp_path / "fast.mp4")
        whole = tmp_path / "fast.mp4"
    cut = tmp_path / f"cut.{kind}"
    cut_before_packet(whole, cut, 8)
    return cut


def test_a_clip_cut_short_says_how_many_frames_are_missing(eight_of_ten: Path,
                                                           tmp_path: Path) -> None:
    report = matte_video(eight_of_ten, tmp_path / "out.webm", engine=BrightnessEngine())
    assert report.frames_out == 8
    assert f"{eight_of_ten.name}: {NOTE}: 8 of 10 frames" in report.notes


def test_strict_fails_on_a_clip_cut_short(eight_of_ten: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=rf"cut\.\w+: {NOTE}: 8 of 10 frames"):
        matte_video(eight_of_ten, tmp_path / "out.webm", engine=BrightnessEngine(),
                    strict=True)
    assert list(tmp_path.glob("*out*")) == []


def test_the_cli_prints_the_note_and_strict_exits_2(eight_of_ten: Path,
                                                    tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "streammatte", "video", str(eight_of_ten), "-e", "mog2"]
    result = subprocess.run([*command, "-o", str(tmp_path / "a.webm")], capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0 and f"note: {eight_of_ten.name}: {NOTE}: 8 of 10" \
        in result.stderr, result.stderr
    result = subprocess.run([*command, "-o", str(tmp_path / "b.webm"), "--strict"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2 and f"{NOTE}: 8 of 10 frames" in result.stderr
    assert not (tmp_path / "b.webm").exists()


def test_a_whole_clip_with_audio_gets_no_note(tmp_path: Path) -> None:
    for name, codec, audio in [("a.mp4", "libx264", "aac"), ("a.webm", "libvpx-vp9", "libopus"),
                               ("a.mkv", "libx264", "aac"), ("a.mov", "mpeg4", "pcm_s16le"),
                               ("a.avi", "mpeg4", "pcm_s16le"), ("a.flv", "libx264", "aac")]:
        make_video(tmp_path / name, frames=12, codec=codec, audio=audio)
        with FileSource(tmp_path / name) as source:
            assert sum(1 for _ in source) == 12
            assert source.ends_early is None, name


def test_a_clip_cut_short_with_audio_is_judged_by_every_stream(tmp_path: Path) -> None:
    whole = tmp_path / "whole.mkv"
    make_video(whole, frames=30, audio="aac")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 3 // 4])
    with FileSource(cut) as source:
        frames = sum(1 for _ in source)
        assert source.ends_early == f"{NOTE}: {frames} of 30 frames"


def test_variable_frame_rate_is_judged_by_time(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mkv"
    make_video(path, frames=20, pts=[i * i * 10 for i in range(20)],
               time_base=Fraction(1, 1000))
    with FileSource(path) as source:
        assert sum(1 for _ in source) == 20
        assert source.ends_early is None


def test_a_file_that_declares_no_length_is_not_judged(tmp_path: Path) -> None:
    """MPEG-TS states no length (FFmpeg estimates one from the last timestamp it finds), so a
    cut one cannot be told from a short one, and is not flagged."""
    whole = tmp_path / "whole.ts"
    make_video(whole, frames=30, codec="mpeg2video")
    cut = tmp_path / "cut.ts"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    with FileSource(cut) as source:
        assert 0 < sum(1 for _ in source) < 30
        assert source.ends_early is None


@pytest.mark.parametrize("name", ["vtest.avi", "tree.avi", "Megamind_bugy.avi"])
def test_real_clips_get_no_false_alarm(shared_data: Path, name: str) -> None:
    with FileSource(shared_data / "media" / name) as source:
        frames = sum(1 for _ in source)
        assert frames > 0 and source.ends_early is None, (frames, source.ends_early)
        if name == "Megamind_bugy.avi":
            assert frames == 270


def test_the_sample_clip_gets_no_false_alarm() -> None:
    sample = Path(__file__).resolve().parents[1] / "samples" / "vtest-excerpt.mp4"
    with FileSource(sample) as source:
        assert sum(1 for _ in source) == 60 and source.ends_early is None
