"""Where frames come from: files (file.py), cameras and WebRTC peers."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Protocol

from ..frames import FramePacket


class Source(Protocol):
    """Iterates upright RGB frames with their timestamps. A context manager; ``close()`` is
    safe to call twice. ``is_live`` sources are run with the ``latest`` back-pressure."""

    is_live: bool
    frame_rate: Fraction | None

    def __iter__(self) -> Iterator[FramePacket]: ...

    def close(self) -> None: ...
