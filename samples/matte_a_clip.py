"""The public API on the sample clip: open the engine once, write three kinds of output.

    python samples/matte_a_clip.py [CLIP] [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import streammatte


def main() -> None:
    here = Path(__file__).parent
    clip = Path(sys.argv[1]) if len(sys.argv) > 1 else here / "vtest-excerpt.mp4"
    out_dir = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("out")
    out_dir.mkdir(exist_ok=True)
    with streammatte.open_engine("u2netp") as engine:
        print(f"engine: {engine.describe()}")
        for name, background in (("blur.mp4", "blur"), ("cutout.webm", "transparent"),
                                 ("matte.mp4", "auto")):
            fmt = "matte" if name == "matte.mp4" else "auto"
            report = streammatte.matte_video(clip, out_dir / name, engine=engine,
                                             background=background, output_format=fmt,
                                             overwrite=True)
            print(f"{report.output}: {report.frames_out} frames at {report.fps:.1f} fps")


if __name__ == "__main__":
    main()
