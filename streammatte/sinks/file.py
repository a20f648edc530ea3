"""Matted video out, through PyAV.

Nothing is lost: the sink stages its output (publish.py) as a hidden temporary file or folder
beside the output, created before the first frame (a read-only or missing folder fails at
once), and publishes it only when ``close()`` has flushed every encoder; ``abort()`` (and any
exception) removes it, so a stopped run leaves a finished file or none. A PNG sequence gets
a small manifest, which is what lets ``overwrite`` replace it later. Every OS error while
writing (a full disk included) is a SinkError naming the output and the reason.

Audio is carried over from the input: the source hands over the packets it demuxes beside the
video (``FileSource.audio_feed``, already cut to a trim), which are copied as they are where the
container takes the codec, re-encoded (AAC, or Opus for WebM) where it does not, interleaved with
the video as it goes. Every output of a run that can hold audio carries it (``SharedAudio``: a
composite, its matte and its foreground alike); GIF and y4m hold none, which the report says.
A PNG sequence has no container for audio, so its audio goes to ``audio.mka`` beside the frames.
An audio packet the muxer refuses (damaged input: timestamps that go back) is dropped and
counted in the track's description.

Standard output (the path ``-``): the stream is written as it goes, in the format's own
container (``OutputFormat.container``, Matroska for ``format_for_stdout``'s video codecs). It
cannot be staged: a run that fails leaves the stream ended early, and the error (exit status,
a line on stderr) is what says so.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import av.audio.frame
import av.audio.resampler
import av.audio.stream
import av.container
import av.packet
import cv2
import numpy as np

from ..errors import SinkError
from ..frames import FramePacket
from ..sources.file import AudioFeed, is_stdio
from .formats import OutputFormat
from .gif import PaletteFrames
from .publish import StagedOutput, write_error, write_manifest

_AUDIO_LEAD_S = 0.5  # mux audio up to this far ahead of the video written so far


def _open_fails(encoder: str, width: int, height: int, pix_fmt: str, time_base: Fraction,
                options: dict[str, str], bit_rate: int | None) -> str | None:
    """None when ``encoder`` opens at this size and these settings, else FFmpeg's reason. A
    hardware encoder that FFmpeg was built with may still find no device, driver or free
    session; only opening it tells."""
    context: Any = av.CodecContext.create(encoder, "w")
    context.width, context.height, context.pix_fmt = width, height, pix_fmt
    context.time_base = time_base
    context.options = dict(options)
    if bit_rate is not None:
        context.bit_rate = bit_rate
    try:
        context.open()
    except av.error.FFmpegError as exc:
        return exc.strerror or str(exc)
    finally:
        del context  # frees the encoder (and its device session) at once
    return None


def _pad_even(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    pad_h, pad_w = h % 2, w % 2
    if not (pad_h or pad_w):
        return image
    pad = ((0, pad_h), (0, pad_w)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, pad, mode="edge")


class _SharedPacket:
    """One demuxed audio packet as each output's carrier gets it: ``copy()`` for a track that
    copies it, ``frames()`` for one that re-encodes it. Carrying changes a packet (it is
    re-stamped with its output's stream, muxing rescales its timestamps), and so does encoding a
    frame; and the input's decoder must see each packet once, in order. So the packet is
    decoded once, by the first track that asks (each asks for every packet of its stream, in
    order), and every caller gets its own copy."""

    __slots__ = ("_frames", "packet")

    def __init__(self, packet: av.packet.Packet[Any]) -> None:
        self.packet = packet
        self._frames: list[av.audio.frame.AudioFrame] | None = None

    def copy(self) -> av.packet.Packet[Any]:
        packet = self.packet
        out: av.packet.Packet[Any] = av.Packet(bytes(packet))
        out.pts, out.dts, out.duration = packet.pts, packet.dts, packet.duration
        out.time_base = packet.time_base
        out.is_keyframe = packet.is_keyframe
        for side_data in packet.iter_sidedata():  # AAC's and Opus's priming, among others
            out.set_sidedata(side_data)
        return out

    def frames(self) -> list[av.audio.frame.AudioFrame]:
        if self._frames is None:
            try:
                decoded: list[Any] = list(self.packet.decode())
            except av.error.FFmpegError:
                decoded = []  # a damaged audio packet is dropped; the video is what matters
            self._frames = [f for f in decoded if isinstance(f, av.AudioFrame)]
        copies = []
        for frame in self._frames:
            copy = av.AudioFrame.from_ndarray(frame.to_ndarray(), format=frame.format,
                                              layout=frame.layout)
            copy.sample_rate, copy.pts, copy.time_base = \
                frame.sample_rate, frame.pts, frame.time_base
            copies.append(copy)
        return copies


class SharedAudio:
    """The source's audio feed, carried into every output of a run.

    A feed hands each packet to one taker; this is that taker, and hands every packet to each
    output's reader (``reader()``, made by each FileSink that holds audio, before the first
    frame). A reader's ``take(until_s)`` returns what reached it up to ``until_s`` seconds
    (None: all), as ``_SharedPacket``s.
    """

    def __init__(self, feed: AudioFeed) -> None:
        self.streams = feed.streams
        self._feed = feed
        self._readers: list[AudioReader] = []

    def reader(self) -> AudioReader:
        reader = AudioReader(self)
        self._readers.append(reader)
        return reader

    def pull(self, until_s: float | None) -> None:
        """Hand what the source has put up to ``until_s`` to every reader."""
        for packet in self._feed.take(until_s):
            shared = _SharedPacket(packet)
            for reader in self._readers:
                reader.pending.append(shared)


class AudioReader:
    """One output's share of a SharedAudio."""

    def __init__(self, share: SharedAudio) -> None:
        self.streams = share.streams
        self.pending: deque[_SharedPacket] = deque()
        self._share = share

    def take(self, until_s: float | None = None) -> list[_SharedPacket]:
        # the readers of a run are asked in turn for the same frame's time, so what another
        # reader pulled a moment ago lies within this one's reach too
        self._share.pull(until_s)
        packets = list(self.pending)
        self.pending.clear()
        return packets


class _AudioTrack:
    """One input audio stream carried into an output container."""

    def __init__(self, in_stream: av.audio.stream.AudioStream,
                 out: av.container.OutputContainer, fmt: OutputFormat | None) -> None:
        self.in_stream = in_stream
        name = self.in_stream.codec_context.name
        self.copy = fmt is None or name in fmt.copy_audio
        self._resampler: av.audio.resampler.AudioResampler | None = None
        if self.copy:
            self.out_stream: Any = out.add_stream_from_template(self.in_stream)
        else:
            assert fmt is not None and fmt.audio_codec is not None
            rate = self.in_stream.codec_context.sample_rate or 48000
            if fmt.audio_codec == "libopus":
                rate = 48000  # Opus runs at 48 kHz only (here)
            self.out_stream = out.add_stream(fmt.audio_codec, rate=rate)
            layout = self.in_stream.codec_context.layout.name or "stereo"
            self.out_stream.layout = layout
            sample_fmt = self.out_stream.codec_context.codec.audio_formats[0].name
            self._resampler = av.audio.resampler.AudioResampler(
                format=sample_fmt, layout=layout, rate=rate)
        how = "copied" if self.copy else f"re-encoded to {self.out_stream.codec_context.name}"
        self._what = f"{name} ({how})"
        self.dropped = 0

    @property
    def description(self) -> str:
        if not self.dropped:
            return self._what
        return f"{self._what}, {self.dropped} damaged packet(s) dropped"

    def packets_for(self, shared: _SharedPacket) -> list[av.packet.Packet[Any]]:
        if self.copy:
            if shared.packet.dts is None:
                return []  # the demuxer's flush packet
            packet = shared.copy()
            packet.stream = self.out_stream
            return [packet]
        out: list[av.packet.Packet[Any]] = []
        assert self._resampler is not None
        for frame in shared.frames():
            for resampled in self._resampler.resample(frame):
                out.extend(self.out_stream.encode(resampled))
        return out

    def flush(self) -> list[av.packet.Packet[Any]]:
        if self.copy:
            return []
        assert self._resampler is not None
        out: list[av.packet.Packet[Any]] = []
        for resampled in self._resampler.resample(None):
            out.extend(self.out_stream.encode(resampled))
        out.extend(self.out_stream.encode(None))
        return out


class AudioCarrier:
    """Copies or re-encodes every audio stream of ``audio`` (an output's reader of the
    source's audio) into ``out``, interleaved."""

    def __init__(self, audio: AudioReader, out: av.container.OutputContainer,
                 fmt: OutputFormat | None) -> None:
        self._audio = audio
        self.tracks = [_AudioTrack(stream, out, fmt) for stream in audio.streams]
        self._out = out
        self._by_index = {t.in_stream.index: t for t in self.tracks}

    def mux_until(self, time_s: float | None) -> None:
        """Mux the audio packets the source has handed over up to ``time_s`` (None: all)."""
        until = None if time_s is None else time_s + _AUDIO_LEAD_S
        for shared in self._audio.take(until):
            track = self._by_index[shared.packet.stream.index]
            for out_packet in track.packets_for(shared):
                self._mux(track, out_packet)

    def finish(self) -> None:
        self.mux_until(None)
        for track in self.tracks:
            for packet in track.flush():
                self._mux(track, packet)

    def _mux(self, track: _AudioTrack, packet: av.packet.Packet[Any]) -> None:
        try:
            self._out.mux(packet)
        except ValueError:  # EINVAL: timestamps the container cannot take; not a disk error
            track.dropped += 1

    def close(self) -> None:
        """Nothing to release: the source owns the input."""


class FileSink:
    """Writes composed frames (``FramePacket.output``) to a video file or PNG directory."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        fmt: OutputFormat,
        *,
        frame_rate: Fraction | None = None,
        audio: AudioFeed | SharedAudio | None = None,
        overwrite: bool = False,
        inputs: Sequence[Path] = (),
    ) -> None:
        """Check ``path`` (publish.check_output: ``inputs`` are never written over) and create
        the temporary output; SinkError or ConfigError says why it cannot be. ``audio``: the
        source's audio feed, carried into the output; a SharedAudio where several outputs of
        one run carry it (give each sink the same one). ``path`` ``-`` is standard output."""
        self.path = Path(path)
        self.stdout = is_stdio(path)
        #: what messages call the output: its path, or "stdout"
        self.label = "stdout" if self.stdout else str(self.path)
        #: what notes call it: its file name, or "stdout"
        self.name = "stdout" if self.stdout else self.path.name
        self.format = fmt
        self.frame_rate = frame_rate or Fraction(30)
        shared = SharedAudio(audio) if isinstance(audio, AudioFeed) else audio
        #: the input's audio streams (none: the input has no audio)
        self.audio_streams = [] if shared is None else shared.streams
        # made now, before the first frame: every output's reader gets every packet
        self._reader = shared.reader() if shared is not None and fmt.holds_audio else None
        self.overwrite = overwrite
        self.frames_written = 0
        self.padded_to_even = False
        #: the encoder that ran (``libx264``, ``h264_nvenc``), once the first frame is in
        self.encoder: str | None = fmt.codec
        #: what the run report should say about this output (a hardware encoder that did
        #: not open, audio a GIF cannot hold)
        self.notes: list[str] = []
        self._gif: PaletteFrames | None = None
        self._audio_where = ""
        self._staged = None if self.stdout else StagedOutput(
            self.path, folder=fmt.codec is None, overwrite=overwrite, suffix=fmt.extension,
            inputs=inputs)
        self._tmp: Path | None = None if self._staged is None else self._staged.temp
        self._container: av.container.OutputContainer | None = None
        self._stream: Any = None
        self._audio: AudioCarrier | None = None
        self._size: tuple[int, int] | None = None
        self._closed = False

    @property
    def audio_tracks(self) -> list[str]:
        """What became of each input audio track (``aac (copied)``), damaged packets said."""
        if self.audio_streams and not self.format.holds_audio:
            return [f"{s.codec_context.name} (not carried: {self.format.name} holds no audio)"
                    for s in self.audio_streams]
        if self._audio is None:
            return []
        return [t.description + self._audio_where for t in self._audio.tracks]

    # -- opening ------------------------------------------------------------------------------

    def _open(self, packet: FramePacket, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        self._size = (w, h)
        if self.format.codec is None:
            if self._reader is not None:
                self._open_sidecar_audio()
            return
        time_base = packet.time_base or 1 / self.frame_rate
        encoder, options = self._choose_encoder(w, h, time_base)
        tag = options.pop("tag", None)  # the container's codec tag (hvc1), no encoder option
        assert self._tmp is not None or self.stdout
        container = av.open("pipe:1" if self.stdout else str(self._tmp), mode="w",
                            format=self.format.container,
                            options=self.format.container_options)
        self._container = container
        stream: Any = container.add_stream(encoder, rate=self.frame_rate, options=options)
        stream.width, stream.height = w, h
        stream.pix_fmt = self.format.pix_fmt
        if tag:
            stream.codec_context.codec_tag = tag
        if self.format.bit_rate is not None:
            stream.codec_context.bit_rate = self.format.bit_rate
        # Encode in the source's own time base so every timestamp (VFR included) survives.
        if packet.time_base is not None:
            stream.codec_context.time_base = packet.time_base
            stream.time_base = packet.time_base
        self._stream = stream
        if encoder == "gif":
            self._gif = PaletteFrames(w, h, alpha=image.ndim == 3 and image.shape[2] == 4,
                                      time_base=time_base)
        if self._reader is not None:
            self._audio = AudioCarrier(self._reader, container, self.format)
        elif self.audio_streams:
            self.notes.append(f"{self.name}: {self.format.name} holds no audio: "
                              f"{len(self.audio_streams)} audio track(s) of the input were not "
                              "written")

    def _choose_encoder(self, width: int, height: int, time_base: Fraction
                        ) -> tuple[str, dict[str, str]]:
        """The first of the format's hardware encoders that opens at this frame size, else
        its software encoder (the run report says why each hardware one was passed over)."""
        assert self.format.codec is not None
        failed = []
        for name, options in self.format.hardware:
            why = _open_fails(name, width, height, self.format.pix_fmt, time_base, options,
                              self.format.bit_rate)
            if why is None:
                self.encoder = name
                return name, dict(options)
            failed.append(f"{name} ({why})")
        if failed:
            self.notes.append(f"{self.name}: hardware encoder {', '.join(failed)} did not "
                              f"open; encoded with {self.format.codec} instead")
        if self.format.codec == "libsvtav1":
            # SVT-AV1 writes a banner to stderr itself, past FFmpeg's log level; the user's
            # own SVT_LOG wins
            os.environ.setdefault("SVT_LOG", "1")
        return self.format.codec, dict(self.format.codec_options)

    def _open_sidecar_audio(self) -> None:
        assert self._tmp is not None and self._reader is not None
        sidecar = av.open(str(self._tmp / "audio.mka"), mode="w")
        self._container = sidecar
        self._audio = AudioCarrier(self._reader, sidecar, None)
        self._audio_where = " → audio.mka"

    # -- writing ------------------------------------------------------------------------------

    def write(self, packet: FramePacket) -> None:
        """Write ``packet.output``, the composed frame."""
        if packet.output is None:
            raise ValueError("FramePacket.output is empty: compose before writing")
        self.write_picture(packet, packet.output)

    def write_picture(self, packet: FramePacket, image: np.ndarray) -> None:
        """Write ``image`` (RGB, RGBA or a greyscale matte) at ``packet``'s timestamp: a run's
        second output (its matte, its foreground) is written through this. A frame outside the
        source's range (pre- or post-roll, ``in_range`` False) was only there for the temporal
        stage and is skipped."""
        if self._closed:
            raise SinkError(f"{self.label}: sink is closed")
        if not packet.in_range:
            return
        if self.format.even_size:
            padded = _pad_even(image)
            self.padded_to_even = self.padded_to_even or padded is not image
            image = padded
        if self._size is not None and (image.shape[1], image.shape[0]) != self._size:
            raise SinkError(
                f"{self.label}: frame {packet.index} is {image.shape[1]}×{image.shape[0]}, "
                f"expected {self._size[0]}×{self._size[1]} like the first frame"
            )
        try:
            if self._size is None:
                self._open(packet, image)
            if self.format.codec is None:
                self._write_png(packet, image)
            else:
                self._encode(packet, image)
            if self._audio is not None:
                self._audio.mux_until(packet.time_s)
        except (OSError, av.error.FFmpegError) as exc:
            raise self._error(exc) from exc
        self.frames_written += 1

    def _error(self, exc: BaseException) -> SinkError:
        if isinstance(exc, SinkError):
            return exc
        if isinstance(exc, OSError):
            return write_error(Path(self.label), exc)
        # FFmpeg's own text names the temporary file; its strerror names the reason
        return SinkError(f"{self.label}: cannot write: {getattr(exc, 'strerror', None) or exc}")

    def _write_png(self, packet: FramePacket, image: np.ndarray) -> None:
        assert self._tmp is not None
        if image.ndim == 3 and image.shape[2] == 4:
            bgr = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
        elif image.ndim == 3:
            bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        else:
            bgr = image
        ok, encoded = cv2.imencode(".png", bgr)
        if not ok:
            raise SinkError(f"{self.path}: cannot encode frame {packet.index} as PNG")
        # by hand, not cv2.imwrite, which says neither why it failed nor, at times, that it did
        (self._tmp / f"frame_{packet.index:06d}.png").write_bytes(encoded.tobytes())

    def _encode(self, packet: FramePacket, image: np.ndarray) -> None:
        assert self._container is not None
        if image.ndim == 2:
            frame = av.VideoFrame.from_ndarray(image, format="gray")
        else:
            frame = av.VideoFrame.from_ndarray(image, format="rgba" if image.shape[2] == 4
                                               else "rgb24")
        if packet.pts is not None and packet.time_base is not None:
            frame.pts = packet.pts
            frame.time_base = packet.time_base
        else:
            frame.pts = packet.index
            frame.time_base = 1 / self.frame_rate
        frames = ([frame] if self._gif is None
                  else self._gif.convert(image, frame.pts, frame.time_base))
        for each in frames:
            for out in self._stream.encode(each):
                self._container.mux(out)

    # -- finishing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Flush the encoders (unless ``finish`` did) and publish the finished output
        (publish.StagedOutput.publish: OutputExistsError if another run got there first).
        Safe to call twice; after ``abort`` it publishes nothing."""
        self.finish()
        if self._staged is not None and self._staged.temp is not None:
            self._staged.publish()

    def finish(self) -> None:
        """Flush the encoders and close the temporary output, complete but not yet in place:
        several outputs of one run are all finished before any is published
        (``publish.publish_all``). Any failure removes it. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.frames_written == 0:
                raise SinkError(f"{self.label}: no frame was written")
            if self._stream is not None and self._container is not None:
                for out in self._stream.encode(None):
                    self._container.mux(out)
            if self._audio is not None:
                self._audio.finish()
            if self._container is not None:
                self._container.close()
            if self.format.codec is None:
                assert self._tmp is not None
                write_manifest(self._tmp, self.frames_written)
        except (OSError, av.error.FFmpegError) as exc:
            self._discard()
            raise self._error(exc) from exc
        except BaseException:
            self._discard()
            raise
        self._tmp = None

    @property
    def staged(self) -> StagedOutput | None:
        """The temporary output and its publishing step (None on stdout, which is written as
        it goes)."""
        return self._staged

    def abort(self) -> None:
        """Stop without a result: the temporary output is removed. Safe to call twice."""
        self._closed = True
        self._discard()

    def _discard(self) -> None:
        for closable in (self._audio, self._container):
            try:
                if closable is not None:
                    closable.close()
            except (av.error.FFmpegError, OSError):
                pass  # the file is being thrown away; its trailer does not matter
        self._audio = None
        self._container = None
        self._tmp = None
        if self._staged is not None:
            self._staged.discard()

    def __enter__(self) -> FileSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
