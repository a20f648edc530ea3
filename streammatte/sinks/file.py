"""Matted video out, through PyAV.

Nothing is lost: the sink stages its output (publish.py) as a hidden temporary file or folder
beside the output, created before the first frame (a read-only or missing folder fails at
once), and publishes it only when ``close()`` has flushed every encoder; ``abort()`` (and any
exception) removes it, so a stopped run leaves a finished file or none. A PNG sequence gets
a small manifest, which is what lets ``overwrite`` replace it later. Every OS error while
writing (a full disk included) is a SinkError naming the output and the reason.

Audio is carried over from the input: copied as it is where the container takes the codec,
re-encoded (AAC, or Opus for WebM) where it does not, interleaved with the video as it goes.
A PNG sequence has no container for audio, so its audio goes to ``audio.mka`` beside the frames.
An audio packet the muxer refuses (damaged input: timestamps that go back) is dropped and
counted in the track's description.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import av.audio.resampler
import av.container
import av.packet
import cv2
import numpy as np

from ..errors import SinkError
from ..frames import FramePacket
from .formats import OutputFormat
from .publish import StagedOutput, write_error, write_manifest

_AUDIO_LEAD_S = 0.5  # mux audio up to this far ahead of the video written so far


def _pad_even(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    pad_h, pad_w = h % 2, w % 2
    if not (pad_h or pad_w):
        return image
    pad = ((0, pad_h), (0, pad_w)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, pad, mode="edge")


class _AudioTrack:
    """One input audio stream carried into an output container."""

    def __init__(self, source: av.container.InputContainer, index: int,
                 out: av.container.OutputContainer, fmt: OutputFormat | None) -> None:
        self.in_stream = source.streams.audio[index]
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

    def packets_for(self, packet: av.packet.Packet[Any]) -> list[av.packet.Packet[Any]]:
        if self.copy:
            if packet.dts is None:
                return []  # the demuxer's flush packet
            packet.stream = self.out_stream
            return [packet]
        out: list[av.packet.Packet[Any]] = []
        assert self._resampler is not None
        try:
            frames: list[Any] = list(packet.decode())
        except av.error.FFmpegError:
            return []  # a damaged audio packet is dropped; the video is what we are here for
        for frame in frames:
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
    """Copies or re-encodes every audio stream of ``source_path`` into ``out``, interleaved."""

    def __init__(self, source_path: Path, out: av.container.OutputContainer,
                 fmt: OutputFormat | None) -> None:
        self._input = av.open(str(source_path))
        self.tracks = [_AudioTrack(self._input, i, out, fmt)
                       for i in range(len(self._input.streams.audio))]
        self._out = out
        self._by_index = {t.in_stream.index: t for t in self.tracks}
        self._packets = self._input.demux(*[t.in_stream for t in self.tracks])
        self._pending: av.packet.Packet[Any] | None = None
        self._done = not self.tracks

    def mux_until(self, time_s: float | None) -> None:
        """Mux audio packets up to ``time_s`` (None: all that remain)."""
        while not self._done:
            if self._pending is None:
                try:
                    self._pending = next(self._packets)
                except (StopIteration, av.error.FFmpegError):
                    self._done = True
                    break
            packet = self._pending
            if (time_s is not None and packet.pts is not None and packet.time_base is not None
                    and float(packet.pts * packet.time_base) > time_s + _AUDIO_LEAD_S):
                return
            self._pending = None
            track = self._by_index[packet.stream.index]
            for out_packet in track.packets_for(packet):
                self._mux(track, out_packet)

    def finish(self) -> None:
        self.mux_until(None)
        for track in self.tracks:
            for packet in track.flush():
                self._mux(track, packet)
        self._input.close()

    def _mux(self, track: _AudioTrack, packet: av.packet.Packet[Any]) -> None:
        try:
            self._out.mux(packet)
        except ValueError:  # EINVAL: timestamps the container cannot take; not a disk error
            track.dropped += 1

    def close(self) -> None:
        self._input.close()


class FileSink:
    """Writes composed frames (``FramePacket.output``) to a video file or PNG directory."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        fmt: OutputFormat,
        *,
        frame_rate: Fraction | None = None,
        audio_from: Path | None = None,
        overwrite: bool = False,
        inputs: Sequence[Path] = (),
    ) -> None:
        """Check ``path`` (publish.check_output: ``inputs`` are never written over) and create
        the temporary output; SinkError or ConfigError says why it cannot be."""
        self.path = Path(path)
        self.format = fmt
        self.frame_rate = frame_rate or Fraction(30)
        self.audio_from = audio_from
        self.overwrite = overwrite
        self.frames_written = 0
        self.padded_to_even = False
        self._audio_where = ""
        self._staged = StagedOutput(self.path, folder=fmt.codec is None, overwrite=overwrite,
                                    suffix=fmt.extension, inputs=inputs)
        self._tmp: Path | None = self._staged.temp
        self._container: av.container.OutputContainer | None = None
        self._stream: Any = None
        self._audio: AudioCarrier | None = None
        self._size: tuple[int, int] | None = None
        self._closed = False

    @property
    def audio_tracks(self) -> list[str]:
        """What became of each input audio track (``aac (copied)``), damaged packets said."""
        if self._audio is None:
            return []
        return [t.description + self._audio_where for t in self._audio.tracks]

    # -- opening ------------------------------------------------------------------------------

    def _open(self, packet: FramePacket, image: np.ndarray) -> None:
        assert self._tmp is not None
        h, w = image.shape[:2]
        self._size = (w, h)
        if self.format.codec is None:
            if self.audio_from is not None:
                self._open_sidecar_audio()
            return
        container = av.open(str(self._tmp), mode="w", options=self.format.container_options)
        self._container = container
        stream: Any = container.add_stream(self.format.codec, rate=self.frame_rate,
                                           options=dict(self.format.codec_options))
        stream.width, stream.height = w, h
        stream.pix_fmt = self.format.pix_fmt
        # Encode in the source's own time base so every timestamp (VFR included) survives.
        if packet.time_base is not None:
            stream.codec_context.time_base = packet.time_base
            stream.time_base = packet.time_base
        self._stream = stream
        if self.audio_from is not None:
            self._audio = AudioCarrier(self.audio_from, container, self.format)

    def _open_sidecar_audio(self) -> None:
        assert self._tmp is not None and self.audio_from is not None
        with av.open(str(self.audio_from)) as probe:
            if not probe.streams.audio:
                return
        sidecar = av.open(str(self._tmp / "audio.mka"), mode="w")
        self._container = sidecar
        self._audio = AudioCarrier(self.audio_from, sidecar, None)
        self._audio_where = " → audio.mka"

    # -- writing ------------------------------------------------------------------------------

    def write(self, packet: FramePacket) -> None:
        """Write one composed frame; a frame outside the source's range (pre- or post-roll,
        ``in_range`` False) was only there for the temporal stage and is skipped."""
        if self._closed:
            raise SinkError(f"{self.path}: sink is closed")
        if not packet.in_range:
            return
        image = packet.output
        if image is None:
            raise ValueError("FramePacket.output is empty: compose before writing")
        if self.format.even_size:
            padded = _pad_even(image)
            self.padded_to_even = self.padded_to_even or padded is not image
            image = padded
        if self._size is not None and (image.shape[1], image.shape[0]) != self._size:
            raise SinkError(
                f"{self.path}: frame {packet.index} is {image.shape[1]}×{image.shape[0]}, "
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
            return write_error(self.path, exc)
        # FFmpeg's own text names the temporary file; its strerror names the reason
        return SinkError(f"{self.path}: cannot write: {getattr(exc, 'strerror', None) or exc}")

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
        for out in self._stream.encode(frame):
            self._container.mux(out)

    # -- finishing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Flush the encoders and publish the finished output (publish.StagedOutput.publish:
        OutputExistsError if another run got there first). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.frames_written == 0:
                raise SinkError(f"{self.path}: no frame was written")
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
        self._staged.publish()

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
