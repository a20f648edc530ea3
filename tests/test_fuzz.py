"""Fuzzed input through the real CLI (issue 12): mutated copies of real clips (byte flips,
truncations, zeroed headers) never give a traceback or a hang, never leave output behind on
failure, and a short output always says why.

The mutations come from a fixed seed, so a failure names a case that can be run again. A few
cases run in ``make test``; the rest are marked slow (``make test-all``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import SHARED_DATA
from media import make_video

from streammatte.sources.file import FileSource

ROOT = Path(__file__).resolve().parents[1]
SEED = 20240612
TIMEOUT_S = 180
#: what a short output must say: the input ended early, or packets could not be decoded
EXPLAINED = ("input ends early", "could not be decoded and were skipped")


@dataclass(frozen=True)
class Clip:
    name: str
    make: str  # how the seed clip is made: "real:<file>:<packets>", "sample" or "gen:<codec>"


CLIPS = [
    Clip("vtest.avi", "real:vtest.avi:30"),  # msmpeg4v2 768×576
    Clip("tree.avi", "real:tree.avi:90"),  # cinepak with empty (repeat) chunks
    Clip("megamind.avi", "real:Megamind_bugy.avi:60"),  # packed B-frames, decode-order stamps
    Clip("vtest-excerpt.mp4", "sample"),  # H.264 MP4, its index at the end
    Clip("aac.mp4", "gen:libx264:aac"),
    Clip("opus.webm", "gen:libvpx-vp9:libopus"),
    Clip("aac.mkv", "gen:libx264:aac"),
]
MUTATIONS = ["flip-few", "flip-many", "cut-30", "cut-60", "cut-90", "zero-head",
             "zero-header-block", "zero-middle"]
QUICK = {("aac.mkv", "cut-60"), ("opus.webm", "flip-few"), ("vtest.avi", "cut-60"),
         ("megamind.avi", "flip-many"), ("vtest-excerpt.mp4", "zero-middle"),
         ("aac.mp4", "zero-head")}


def _excerpt(src: Path, dst: Path, packets: int) -> None:
    """The first ``packets`` video packets of a real clip, copied as they are (no re-encode)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for n, packet in enumerate(inp.demux(inp.streams.video[0])):
            if n >= packets:
                break
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)


def _make_seed(clip: Clip, folder: Path) -> Path:
    path = folder / clip.name
    kind, _, rest = clip.make.partition(":")
    if kind == "real":
        name, packets = rest.split(":")
        src = SHARED_DATA / "media" / name
        if not src.is_file():
            pytest.skip(f"real clip {src} not found (../shared/data beside the repo)")
        _excerpt(src, path, int(packets))
    elif kind == "sample":
        path.write_bytes((ROOT / "samples" / "vtest-excerpt.mp4").read_bytes())
    else:
        codec, audio = rest.split(":")
        make_video(path, frames=24, size=(160, 120), codec=codec, audio=audio)
    return path


def _mutate(data: bytes, mutation: str, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    n = len(out)
    if mutation.startswith("flip-"):
        count = 8 if mutation == "flip-few" else 200
        for offset in rng.integers(n // 10, n, count):
            out[int(offset)] ^= int(rng.integers(1, 256))
    elif mutation.startswith("cut-"):
        del out[n * int(mutation[4:]) // 100:]
    elif mutation == "zero-head":
        out[:64] = bytes(64)
    elif mutation == "zero-header-block":
        out[64:1024] = bytes(len(out[64:1024]))
    elif mutation == "zero-middle":
        start = n // 2
        out[start:start + n // 20] = bytes(len(out[start:start + n // 20]))
    return bytes(out)


def _frames_in(path: Path) -> int:
    """Frames of a finished output (a file, or a PNG-sequence folder)."""
    if path.is_dir():
        return len(list(path.glob("frame_*.png")))
    with av.open(str(path)) as container:
        return sum(1 for p in container.demux(video=0) if p.size)


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, int]]:
    """A seed clip by name, made on first use, and the frames its whole copy gives."""
    folder = tmp_path_factory.mktemp("fuzz-seeds")
    made: dict[str, tuple[Path, int]] = {}

    def get(name: str) -> tuple[Path, int]:
        if name not in made:
            path = _make_seed(next(c for c in CLIPS if c.name == name), folder)
            with FileSource(path) as source:
                made[name] = (path, sum(1 for _ in source))
        return made[name]

    return get


def _cli(src: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "streammatte", "video", str(src), "-o", str(out), "-e", "mog2",
         "--temporal", "none"],
        capture_output=True, text=True, timeout=TIMEOUT_S, env=env)


def _cases() -> Sequence[object]:
    cases = []
    for i, clip in enumerate(CLIPS):
        for j, mutation in enumerate(MUTATIONS):
            marks = [] if (clip.name, mutation) in QUICK else [pytest.mark.slow]
            cases.append(pytest.param(clip.name, mutation, SEED + 100 * i + j, marks=marks,
                                      id=f"{clip.name}-{mutation}"))
    return cases


@pytest.mark.parametrize(("clip", "mutation", "rng_seed"), _cases())
def test_mutated_clip(seed: Callable[[str], tuple[Path, int]], tmp_path: Path, clip: str,
                      mutation: str, rng_seed: int) -> None:
    original, whole_frames = seed(clip)
    src = tmp_path / f"fuzzed{original.suffix}"
    src.write_bytes(_mutate(original.read_bytes(), mutation, np.random.default_rng(rng_seed)))
    out = tmp_path / "out.mp4"
    try:
        result = _cli(src, out)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{clip} {mutation}: no answer in {TIMEOUT_S} s (a hang)")
    err = result.stderr
    assert "Traceback" not in err, err
    assert result.returncode in (0, 2), (result.returncode, err)
    left = sorted(p.name for p in tmp_path.iterdir() if p != src)
    if result.returncode == 2:
        errors = [line for line in err.splitlines() if line.startswith("streammatte: error: ")]
        assert len(errors) == 1 and src.name in errors[0], err
        assert left == [], f"a failed run left {left}"
        return
    assert left == ["out.mp4"], left
    frames = _frames_in(out)
    if frames < whole_frames:
        assert any(reason in err for reason in EXPLAINED), (
            f"{frames} of {whole_frames} frames and no note saying why:\n{err}")
