"""Where composed frames go: files (file.py), virtual cameras and WebRTC peers."""

from __future__ import annotations

from typing import Protocol

from ..frames import FramePacket


class Sink(Protocol):
    """Takes composed frames (``FramePacket.output``) in order. ``close()`` flushes and
    finishes (a file sink renames its output into place then); safe to call twice."""

    def write(self, packet: FramePacket) -> None: ...

    def close(self) -> None: ...
