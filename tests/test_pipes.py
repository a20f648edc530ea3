"""``-`` as input reads a stream from stdin, ``-o -`` writes one to stdout (issue 16 item 2):
the real CLI in a real pipeline, fed by PyAV or by the ffmpeg binary."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import IO

import av
import cv2
import numpy as np
import pytest
from media import imread, make_video

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "vtest-excerpt.mp4"
CLI = [sys.executable, "-m", "streammatte", "video"]


def remux_into(src: Path, pipe: IO[bytes], fmt: str) -> None:
    """PyAV writing ``src``'s streams as they are into ``pipe``, as ``fmt``, then closing it."""
    try:
        with av.open(str(src)) as inp, av.open(pipe, "w", format=fmt) as out:
            streams = {s.index: out.add_stream_from_template(s) for s in inp.streams
                       if s.type in ("video", "audio")}
            for packet in inp.demux(*[inp.streams[i] for i in streams]):
                if packet.dts is not None:
                    packet.stream = streams[packet.stream.index]
                    out.mux(packet)
    finally:
        pipe.close()


def encode_into(pipe: IO[bytes], fmt: str, frames: int = 12) -> None:
    """PyAV encoding grey frames straight into ``pipe`` (no file anywhere), then closing it."""
    try:
        with av.open(pipe, "w", format=fmt) as out:
            codec = "mpeg2video" if fmt == "mpegts" else "rawvideo"
            stream = out.add_stream(codec, rate=10)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            for i in range(frames):
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8),
                                                   format="rgb24")
                frame.pts = i
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    finally:
        pipe.close()


def pipe_through(feed: Callable[[IO[bytes]], None], *args: str) -> tuple[int, bytes, str]:
    """Run the CLI with ``feed(stdin)`` writing its stdin on one thread while another reads its
    stdout; (status, stdout, stderr)."""
    process = subprocess.Popen([*CLI, "-", *args], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    out: list[bytes] = []
    stdout = process.stdout
    threads = [threading.Thread(target=feed, args=(process.stdin,)),
               threading.Thread(target=lambda: out.append(stdout.read()))]
    for thread in threads:
        thread.start()
    err = process.stderr.read().decode()
    status = process.wait(timeout=300)
    for thread in threads:
        thread.join(timeout=300)
    return status, out[0], err


def test_pyav_matroska_with_audio_through_stdin_and_stdout(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=30, size=(96, 64), audio="aac", gop=10)
    status, out, err = pipe_through(lambda pipe: remux_into(clip, pipe, "matroska"),
                                    "-o", "-", "-e", "mog2", "-b", "blue")
    assert status == 0, err
    assert "wrote stdout (h264, libx264): 30 frames" in err and "audio: aac (copied)" in err
    with av.open(io.BytesIO(out)) as container:
        assert "matroska" in container.format.name
        assert [s.codec_context.name for s in container.streams] == ["h264", "aac"]
        times = [f.pts * f.time_base for f in container.decode(video=0)]
    # the input's own times: Matroska shifted them by the AAC priming (23 ms) it cannot start
    # below zero with
    assert times == [Fraction(23, 1000) + Fraction(i, 10) for i in range(30)]


def test_a_trim_of_a_piped_stream(tmp_path: Path) -> None:
    """stdin cannot seek: the range is decoded from the stream's beginning, and still starts
    its output at zero with the audio cut to match."""
    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=30, size=(96, 64), audio="aac")
    status, out, err = pipe_through(lambda pipe: remux_into(clip, pipe, "matroska"),
                                    "-o", "-", "-e", "mog2", "-f", "nut", "--start", "1.5",
                                    "--frames", "5")
    assert status == 0, err
    with av.open(io.BytesIO(out)) as container:
        assert container.format.name == "nut"
        times = [f.pts * f.time_base for f in container.decode(video=0)]
    with av.open(io.BytesIO(out)) as container:
        audio = [p.pts * p.time_base for p in container.demux(audio=0) if p.size]
    assert times == [Fraction(i, 10) for i in range(5)]
    assert 0 <= audio[0] < Fraction(3, 100) and audio[-1] < Fraction(5, 10)


@pytest.mark.parametrize("fmt", ["mpegts", "nut", "yuv4mpegpipe"])
def test_stdin_takes_the_streaming_formats(fmt: str) -> None:
    status, out, err = pipe_through(lambda pipe: encode_into(pipe, fmt), "-o", "-", "-e",
                                    "mog2", "-b", "red")
    assert status == 0, err
    with av.open(io.BytesIO(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 12


def test_stdout_defaults_to_vp9_with_alpha_without_a_background(tmp_path: Path) -> None:
    make_video(tmp_path / "clip.mp4", frames=6)
    result = subprocess.run([*CLI, str(tmp_path / "clip.mp4"), "-o", "-", "-e", "mog2"],
                            capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with av.open(io.BytesIO(result.stdout)) as container:
        assert container.streams.video[0].codec_context.name == "vp9"


def test_nut_on_stdout_is_the_png_sequence_bit_for_bit(tmp_path: Path,
                                                       u2netp_path: Path) -> None:
    """Raw RGBA frames in NUT, lossless: the same pixels and matte as the PNG frames."""
    common = ["--frames", "3", "--model-file", str(u2netp_path), "--temporal", "none"]
    result = subprocess.run([*CLI, str(SAMPLE), "-o", "-", "-f", "nut", *common],
                            capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr
    pngs = subprocess.run([*CLI, str(SAMPLE), "-o", str(tmp_path / "frames"), *common],
                          capture_output=True, timeout=300)
    assert pngs.returncode == 0, pngs.stderr
    with av.open(io.BytesIO(result.stdout)) as container:
        frames = [f.to_ndarray(format="rgba") for f in container.decode(video=0)]
    assert len(frames) == 3
    for i, frame in enumerate(frames):
        png = cv2.cvtColor(imread(tmp_path / "frames" / f"frame_{i:06d}.png"), cv2.COLOR_BGRA2RGBA)
        assert np.array_equal(frame, png), i
    assert frames[0][..., 3].max() > 64  # a matte, not an empty alpha plane


@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="the ffmpeg binary is not installed (Debian: apt-get install ffmpeg)")
@pytest.mark.parametrize("clip", ["vtest.avi", "tone.mp4"])
def test_an_ffmpeg_pipeline(shared_data: Path, tmp_path: Path, clip: str) -> None:
    """``ffmpeg … -f matroska - | streammatte video - -o - | ffmpeg -i - …``, as rembg's ``b``
    mode is used; the real clip for the video, a generated one for the audio."""
    if clip == "tone.mp4":
        src = tmp_path / clip
        make_video(src, frames=30, size=(96, 64), audio="aac")
    else:
        src = shared_data / "media" / clip
    out = tmp_path / "out.mp4"
    cli = " ".join(CLI)
    command = (f"set -o pipefail; ffmpeg -v error -i {src} -t 3 -f matroska - | "
               f"{cli} - -o - -e mog2 -b green | ffmpeg -v error -i - -c copy {out}")
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "wrote stdout (h264, libx264): 30 frames" in result.stderr
    with av.open(str(out)) as container:
        assert container.streams.video[0].frames == 30
        assert len(container.streams.audio) == (1 if clip == "tone.mp4" else 0)


def test_a_reader_that_stops_early_ends_the_run_with_one_line(tmp_path: Path) -> None:
    """What a failed piped run leaves: a stream that ends early, exit status 2, one line."""
    clip = tmp_path / "long.mp4"
    make_video(clip, frames=200, size=(320, 240))
    process = subprocess.Popen([*CLI, str(clip), "-o", "-", "-f", "nut", "-e", "mog2", "-q"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    assert len(process.stdout.read(1000)) == 1000
    process.stdout.close()  # the reader goes away
    err = process.stderr.read().decode()
    assert process.wait(timeout=300) == 2
    assert err.strip().splitlines() == ["streammatte: error: stdout: cannot write: Broken pipe"]


def test_garbage_on_stdin_is_one_line() -> None:
    def garbage(pipe: IO[bytes]) -> None:
        pipe.write(b"this is not a video" * 100)
        pipe.close()

    status, out, err = pipe_through(garbage, "-o", "-", "-e", "mog2")
    assert status == 2 and out == b""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streammatte: error: stdin: not a readable "
                                                   "video stream"), err


@pytest.mark.parametrize(("args", "message"), [
    (["{clip}", "{clip}", "-o", "-"], "stdout (-o -) takes the result of one input"),
    (["-", "{clip}", "-o", "{tmp}/out"], "stdin (-) is the one input of a run"),
    (["{clip}", "-o", "-", "-f", "png"], "stdout takes one stream, not a folder of PNG frames"),
])
def test_pipes_that_cannot_work_are_refused(tmp_path: Path, args: list[str],
                                            message: str) -> None:
    make_video(tmp_path / "clip.mp4", frames=3)
    filled = [a.format(clip=tmp_path / "clip.mp4", tmp=tmp_path) for a in args]
    result = subprocess.run([*CLI, *filled, "-e", "mog2"], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streammatte: error: "), result.stderr
    assert message in lines[0]


def test_a_terminal_on_stdout_is_refused(tmp_path: Path) -> None:
    make_video(tmp_path / "clip.mp4", frames=3)
    leader, follower = os.openpty()
    try:
        result = subprocess.run([*CLI, str(tmp_path / "clip.mp4"), "-o", "-", "-e", "mog2"],
                                stdout=follower, stderr=subprocess.PIPE, text=True,
                                timeout=300)
    finally:
        os.close(follower)
        os.close(leader)
    assert result.returncode == 2
    assert "stdout is a terminal: send the video into a pipe or a file" in result.stderr


def test_nut_and_y4m_files_round_trip(tmp_path: Path) -> None:
    """The raw formats write files too (``.nut``, ``.y4m``): NUT keeps RGBA and the audio, y4m
    holds neither alpha nor audio and the report says the audio was not carried."""
    from media import BrightnessEngine

    from streammatte import matte_video

    src = tmp_path / "in.mp4"
    truth = make_video(src, frames=12, size=(64, 48), audio="aac")
    nut = matte_video(src, tmp_path / "out.nut", engine=BrightnessEngine())
    y4m = matte_video(src, tmp_path / "out.y4m", engine=BrightnessEngine(), background="blue")
    assert (nut.format, nut.audio_tracks) == ("nut", ["aac (copied)"])
    assert (y4m.format, y4m.audio_tracks) == ("y4m",
                                              ["aac (not carried: y4m holds no audio)"])
    with av.open(str(tmp_path / "out.nut")) as container:
        assert [s.codec_context.name for s in container.streams] == ["rawvideo", "aac"]
        alphas = [f.to_ndarray(format="rgba")[..., 3] for f in container.decode(video=0)]
    assert len(alphas) == 12
    assert np.abs(alphas[5] / 255.0 - truth[5]).mean() < 0.05  # the matte, losslessly stored
    with av.open(str(tmp_path / "out.y4m")) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.format.name, len(container.streams.audio)) == ("yuv444p", 0)
        assert sum(1 for _ in container.decode(stream)) == 12
