"""RGB(A) frames → palette frames for the GIF encoder, one palette per frame.

GIF holds 256 colours a frame. FFmpeg's ``palettegen`` (``stats_mode=single``: a palette of
each frame's own colours) and ``paletteuse`` (``new=1``: each frame its own palette, dithered)
run as one filter graph, so frames stream through it and nothing waits for the end of the
clip. With alpha, one palette entry is kept for transparency and a pixel is transparent where
its alpha is below half (GIF has no partial transparency).
"""

from __future__ import annotations

from fractions import Fraction

import av
import av.filter
import numpy as np


class PaletteFrames:
    """``convert(image, pts, time_base)`` → the pal8 frame(s) ready for the GIF encoder."""

    def __init__(self, width: int, height: int, *, alpha: bool, time_base: Fraction) -> None:
        self._format = "rgba" if alpha else "rgb24"
        graph = av.filter.Graph()
        source = graph.add_buffer(width=width, height=height,
                                  format=av.VideoFormat(self._format), time_base=time_base)
        split = graph.add("split")
        palette = graph.add("palettegen",
                            f"stats_mode=single:reserve_transparent={int(alpha)}")
        use = graph.add("paletteuse", "new=1:alpha_threshold=128")
        sink = graph.add("buffersink")
        source.link_to(split)
        split.link_to(palette, 0, 0)
        split.link_to(use, 1, 0)
        palette.link_to(use, 0, 1)
        use.link_to(sink)
        graph.configure()
        self._graph = graph

    def convert(self, image: np.ndarray, pts: int, time_base: Fraction) -> list[av.VideoFrame]:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=self._format)
        frame.pts = pts
        frame.time_base = time_base
        self._graph.push(frame)
        out: list[av.VideoFrame] = []
        while True:
            try:
                pulled = self._graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return out
            assert isinstance(pulled, av.VideoFrame)
            out.append(pulled)
