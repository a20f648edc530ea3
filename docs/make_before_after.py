"""Makes docs/before-after.jpg, the README's picture: frame 15 of samples/vtest-excerpt.mp4
as it was and as ``streammatte video … -b blur`` wrote it.

    streammatte video samples/vtest-excerpt.mp4 -o /tmp/vtest-blur -b blur   # PNG frames
    .venv/bin/python docs/make_before_after.py /tmp/vtest-blur
"""

from __future__ import annotations

import sys
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FRAME = 15


def main(frames: Path) -> None:
    with av.open(str(ROOT / "samples" / "vtest-excerpt.mp4")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == FRAME:
                before = cv2.cvtColor(frame.to_ndarray(format="rgb24"), cv2.COLOR_RGB2BGR)
                break
    after = cv2.imread(str(frames / f"frame_{FRAME:06d}.png"), cv2.IMREAD_COLOR)
    pair = np.hstack([before, np.full((before.shape[0], 8, 3), 255, np.uint8), after])
    half = cv2.resize(pair, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(ROOT / "docs" / "before-after.jpg"), half, [cv2.IMWRITE_JPEG_QUALITY, 85])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
