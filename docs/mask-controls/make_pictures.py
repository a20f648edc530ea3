"""Makes the pictures of docs/mask-controls.md: a DAVIS frame through u2netp, each mask
control beside the plain matte (the chain the CLI runs: ``matte_image``).

    .venv/bin/python docs/mask-controls/make_pictures.py ../shared/data
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

import streammatte

HERE = Path(__file__).resolve().parent
#: the swan's neck, back and water line (rows, columns of blackswan frame 20)
SWAN = (slice(190, 430), slice(250, 570))
#: the dog's fur against the grass (dog frame 20)
DOG = (slice(40, 300), slice(300, 520))
CONTROLS: dict[str, tuple[str, dict[str, object]]] = {
    "threshold": ("--threshold 0.5", {"threshold": 0.5}),
    "shrink": ("--shrink 3", {"shrink_px": 3}),
    "grow": ("--grow 3", {"grow_px": 3}),
    "feather": ("--feather 8", {"feather_px": 8}),
}


def _frame(data: Path, sequence: str) -> np.ndarray:
    bgr = cv2.imread(str(data / "davis" / sequence / "frames" / "00020.jpg"))
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    out = np.ascontiguousarray(tile)
    cv2.rectangle(out, (0, 0), (9 * len(text) + 10, 24), (0, 0, 0), -1)
    cv2.putText(out, text, (5, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                cv2.LINE_AA)
    return out


def _save(name: str, grid: np.ndarray) -> None:
    cv2.imwrite(str(HERE / f"{name}.jpg"), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 85])


def main(data: Path) -> None:
    swan, dog = _frame(data, "blackswan"), _frame(data, "dog")
    with streammatte.open_engine("u2netp") as engine:

        def tiles(frame: np.ndarray, crop: tuple[slice, slice], background: str,
                  **options: object) -> tuple[np.ndarray, np.ndarray]:
            composite = streammatte.matte_image(frame, engine=engine, background=background,
                                                **options)[..., :3]
            matte = streammatte.matte_image(frame, engine=engine, output_format="matte",
                                            **options)
            return composite[crop], cv2.cvtColor(matte[crop], cv2.COLOR_GRAY2RGB)

        plain = tiles(swan, SWAN, "white")
        for name, (label, options) in CONTROLS.items():
            changed = tiles(swan, SWAN, "white", **options)
            _save(name, np.vstack([
                np.hstack([_label(plain[0], "plain u2netp"), _label(changed[0], label)]),
                np.hstack([plain[1], changed[1]])]))
        # despill changes the colour, not the matte: the composites, twice the size
        before, _ = tiles(dog, DOG, "#0047bb")
        after, _ = tiles(dog, DOG, "#0047bb", despill=True)
        zoom = [cv2.resize(t, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
                for t in (before, after)]
        _save("despill", np.hstack([_label(zoom[0], "plain u2netp"),
                                    _label(zoom[1], "--despill")]))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
