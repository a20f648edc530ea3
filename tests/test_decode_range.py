"""FileSource's DecodeRange: part of a file, frame-accurate after a seek, with pre- and post-roll
for the temporal stage, timestamps kept or rebased, audio cut to match (issue 16 item 1, and
the segments of issue 15)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media import cut_mkv_eight_of_ten, make_video

from streammatte.errors import ConfigError
from streammatte.frames import FramePacket
from streammatte.sources.file import DecodeRange, FileSource

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "vtest-excerpt.mp4"


def reference(path: Path, *, until_s: float | None = None
              ) -> list[tuple[Fraction, int, np.ndarray]]:
    """Every frame by a plain PyAV decode from the beginning: (seconds from the file's start,
    pts, RGB image), in display order."""
    frames = []
    with av.open(str(path)) as container:
        start = Fraction(container.start_time or 0, av.time_base)
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            assert frame.pts is not None
            time = frame.pts * stream.time_base - start
            if until_s is not None and time >= until_s:
                break
            frames.append((time, frame.pts, frame.to_ndarray(format="rgb24")))
    return frames


def decode(path: Path, span: DecodeRange, **kwargs: bool) -> tuple[list[FramePacket], FileSource]:
    with FileSource(path, decode_range=span, **kwargs) as source:
        return list(source), source


def assert_same_frames(got: list[FramePacket], want: list[tuple[Fraction, int, np.ndarray]]
                       ) -> None:
    assert [p.pts for p in got] == [pts for _, pts, _ in want]
    for packet, (_, pts, image) in zip(got, want, strict=True):
        assert np.array_equal(packet.image, image), f"frame at pts {pts} differs"


@pytest.fixture
def gop_clip(tmp_path: Path) -> Path:
    """40 frames at 10 fps, a keyframe every 8, B-frames (libx264's default), in MP4."""
    path = tmp_path / "gop.mp4"
    make_video(path, frames=40, size=(64, 48), gop=8)
    return path


def test_a_range_in_a_real_clip_is_the_full_decode_there(shared_data: Path) -> None:
    """vtest.avi has a keyframe every 250 frames: 40 s is frame 400, mid-GOP."""
    clip = shared_data / "media" / "vtest.avi"
    got, source = decode(clip, DecodeRange(start_s=40.0, max_frames=5))
    want = [f for f in reference(clip, until_s=40.5) if f[0] >= 40]
    assert_same_frames(got, want)
    assert source._sought, "the source should have sought, not decoded 400 frames"
    assert [p.index for p in got] == [0, 1, 2, 3, 4] and all(p.in_range for p in got)
    assert source.ends_early is None


def test_a_range_in_an_h264_clip_with_b_frames(gop_clip: Path) -> None:
    got, _ = decode(gop_clip, DecodeRange(start_s=1.3, end_s=2.5))
    # typed times are exact (1.3 s is 13312/10240 here); a float 1.3 is a little more
    assert_same_frames(got, [f for f in reference(gop_clip)
                             if Fraction("1.3") <= f[0] < Fraction("2.5")])


def test_a_range_in_the_sample_clip_at_a_fraction_of_a_frame() -> None:
    """A start between two frames begins at the next one; the end is exclusive."""
    got, _ = decode(SAMPLE, DecodeRange(start_s=2.05, end_s=3.0))
    want = [f for f in reference(SAMPLE) if Fraction("2.05") <= f[0] < 3]
    assert len(want) == 9
    assert_same_frames(got, want)


def test_a_range_in_mpeg_ts_counts_from_the_files_start(tmp_path: Path) -> None:
    """MPEG-TS starts its clock at 1.4 s and seeks by bisection on timestamps; times in a range
    count from the file's start, as ffmpeg -ss does."""
    path = tmp_path / "clip.ts"
    make_video(path, frames=40, codec="mpeg2video", gop=6)
    got, _ = decode(path, DecodeRange(start_s=2.0, max_frames=7))
    assert_same_frames(got, [f for f in reference(path) if f[0] >= 2][:7])


def test_ranges_that_split_a_file_hold_every_frame_once(gop_clip: Path) -> None:
    cuts = [0.0, 0.75, 1.6, 3.3]
    pieces = [decode(gop_clip, DecodeRange(start_s=a, end_s=b))[0]
              for a, b in zip(cuts, [*cuts[1:], None], strict=True)]
    assert [len(p) for p in pieces] == [8, 8, 17, 7]
    assert_same_frames([p for piece in pieces for p in piece], reference(gop_clip))


def test_pre_and_post_roll_are_the_neighbours_marked_out_of_range(gop_clip: Path) -> None:
    got, _ = decode(gop_clip, DecodeRange(start_s=1.0, end_s=2.0, pre_roll_frames=3,
                                          post_roll_frames=2))
    assert_same_frames(got, reference(gop_clip)[7:22])
    assert [p.in_range for p in got] == [False] * 3 + [True] * 10 + [False] * 2
    assert [p.index for p in got] == list(range(-3, 12))


def test_roll_is_cut_short_where_the_file_begins_and_ends(gop_clip: Path) -> None:
    head, _ = decode(gop_clip, DecodeRange(end_s=0.3, pre_roll_frames=5))
    tail, _ = decode(gop_clip, DecodeRange(start_s=3.7, post_roll_frames=5))
    assert [(p.index, p.in_range) for p in head] == [(0, True), (1, True), (2, True)]
    assert [(p.index, p.in_range) for p in tail] == [(0, True), (1, True), (2, True)]


def test_rebase_puts_the_first_frame_in_range_at_zero(gop_clip: Path) -> None:
    got, _ = decode(gop_clip, DecodeRange(start_s=2.0, max_frames=3, pre_roll_frames=2,
                                          rebase=True))
    tb = got[0].time_base
    assert tb is not None
    assert [p.time_s for p in got] == pytest.approx([-0.2, -0.1, 0.0, 0.1, 0.2])


def test_max_frames_from_the_start_does_not_seek(gop_clip: Path) -> None:
    got, source = decode(gop_clip, DecodeRange(max_frames=4))
    assert_same_frames(got, reference(gop_clip)[:4])
    assert not source._sought and source.ends_early is None


def test_variable_frame_rate_is_ranged_by_time(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mkv"
    pts = [i * i * 10 for i in range(20)]  # ms: gaps grow from 10 ms to 370 ms
    make_video(path, frames=20, pts=pts, time_base=Fraction(1, 1000), gop=4)
    got, _ = decode(path, DecodeRange(start_s=0.5, end_s=2.0, pre_roll_frames=2))
    inside = [t for t in pts if 500 <= t < 2000]
    assert inside == [640, 810, 1000, 1210, 1440, 1690, 1960]
    assert [p.pts for p in got] == [360, 490, *inside]
    assert [p.in_range for p in got] == [False, False] + [True] * 7


def test_a_rotated_clip_comes_out_upright(tmp_path: Path) -> None:
    path = tmp_path / "rotated.mp4"
    make_video(path, frames=20, size=(64, 48), rotation=90, gop=5)
    got, source = decode(path, DecodeRange(start_s=1.2, max_frames=2))
    assert source.rotation == 90 and [p.image.shape for p in got] == [(64, 48, 3)] * 2


def test_a_range_past_the_end_is_empty_and_says_why(gop_clip: Path) -> None:
    got, source = decode(gop_clip, DecodeRange(start_s=10.0))
    assert got == [] and source.ends_early is None
    assert source.why_empty() == "no frame lies in the range asked for (from 10 s); the video " \
                                 "ends at 4 s"


@pytest.mark.parametrize(("span", "note"), [
    (DecodeRange(start_s=0.2, end_s=0.5), None),  # inside what is there: a trim, not a cut
    (DecodeRange(max_frames=8), None),
    (DecodeRange(start_s=0.5, end_s=0.95), "input ends early: 8 of 10 frames"),
    (DecodeRange(start_s=0.5), "input ends early: 8 of 10 frames"),
])
def test_a_file_cut_short_is_judged_only_when_it_ends_inside_the_range(
        tmp_path: Path, span: DecodeRange, note: str | None) -> None:
    got, source = decode(cut_mkv_eight_of_ten(tmp_path), span)
    assert got and source.ends_early == note


def test_an_end_past_a_whole_file_is_no_truncation(gop_clip: Path) -> None:
    got, source = decode(gop_clip, DecodeRange(start_s=3.0, end_s=100.0))
    assert len(got) == 10 and source.ends_early is None


def test_audio_is_cut_to_the_range_and_rebased_with_it(tmp_path: Path) -> None:
    path = tmp_path / "tone.mkv"
    make_video(path, frames=40, audio="aac", gop=8)
    got, source = decode(path, DecodeRange(start_s=1.0, max_frames=15, rebase=True), audio=True)
    assert [p.time_s for p in got][:2] == pytest.approx([0.0, 0.1])
    assert source.audio_feed is not None and source.audio_feed.complete
    packets = source.audio_feed.take()
    times = [float(p.pts * p.time_base) for p in packets if p.pts is not None]
    length = float((packets[0].duration or 0) * packets[0].time_base)
    assert 0 <= times[0] < length  # from the first frame on, to within an audio packet
    assert 1.5 - length <= times[-1] < 1.5  # up to the end of the 15th frame
    assert times == sorted(times)


def test_audio_without_a_range_is_every_packet(tmp_path: Path) -> None:
    path = tmp_path / "tone.mkv"
    make_video(path, frames=20, audio="aac")
    with av.open(str(path)) as container:
        want = [p.pts for p in container.demux(audio=0) if p.size]
    _, source = decode(path, DecodeRange(), audio=True)
    assert source.audio_feed is not None
    assert [p.pts for p in source.audio_feed.take() if p.size] == want


@pytest.mark.parametrize(("options", "message"), [
    ({"start_s": -1.0}, r"start_s should be >= 0 seconds, got -1"),
    ({"start_s": float("nan")}, r"start_s should be >= 0 seconds, got nan"),
    ({"start_s": 2.0, "end_s": 1.0}, r"end_s should be after start_s \(2 s\), got 1 s"),
    ({"max_frames": 0}, r"max_frames should be >= 1, got 0"),
    ({"pre_roll_frames": -1}, r"pre/post-roll should be >= 0 frames, got -1/0"),
])
def test_a_bad_range_is_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DecodeRange(**options)  # type: ignore[arg-type]
