"""The cluster executor on a real local Ray: batches, the aggregated progress, lost workers.

Ray is the ``streammatte[ray]`` extra: these tests skip without it, except in CI
(``STREAMMATTE_REQUIRE_MODELS=1``), where a missing Ray is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from media import make_video

from streammatte.cli import main
from streammatte.cluster import Task, Worker
from streammatte.config import MatteConfig
from streammatte.progress import ProgressLine

REPO = Path(__file__).resolve().parents[1]


def _partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*partial-*"))


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray with two CPUs for this module's tests (started once: it takes seconds)."""
    try:
        import ray
    except ImportError:
        if os.environ.get("STREAMMATTE_REQUIRE_MODELS") == "1":
            raise
        pytest.skip("ray is not installed (pip install 'streammatte[ray]')")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_importing_streammatte_or_its_cli_loads_no_ray() -> None:
    code = ("import sys, streammatte, streammatte.cli, streammatte.cluster; "
            "streammatte.cli.build_parser(); "
            "print([m for m in sys.modules if m.split('.')[0] == 'ray'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_the_progress_line_ends_with_the_workers_alive() -> None:
    line = ProgressLine(200, enabled=False).render(50, 10.0, "2/2 workers")
    assert line == "50/200 frames  25%  5.0 fps  ETA 0:30  2/2 workers"


def test_a_worker_reports_a_bad_input_instead_of_raising(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    worker = Worker(MatteConfig(engine="mog2"), slot=3)
    outcome = worker.run(Task(key="k", kind="video", src=bad, dst=tmp_path / "out.mp4"))
    assert not outcome.ok and outcome.frames == 0
    assert outcome.error is not None and outcome.error.startswith(f"{bad}: not a readable video")
    assert outcome.worker.slot == 3 and outcome.worker.pid == os.getpid()
    assert worker.current() is None
    assert list(tmp_path.iterdir()) == [bad]


def _clips(folder: Path) -> list[Path]:
    folder.mkdir()
    clips = []
    for name, frames in (("a", 5), ("b", 7), ("c", 4)):
        make_video(folder / f"{name}.mp4", frames=frames, size=(64, 48),
                   audio="aac" if name == "a" else None)
        clips.append(folder / f"{name}.mp4")
    return clips


def test_a_batch_on_ray_is_the_local_batch_byte_for_byte(
        tmp_path: Path, local_ray: None, u2netp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    clips = _clips(tmp_path / "clips")
    bad = tmp_path / "clips" / "bad.mp4"
    bad.write_bytes(b"not a video")
    common = ["--models-dir", str(u2netp_path.parent), "-b", "blue"]
    assert main(["video", *map(str, clips), "-o", str(tmp_path / "local"), *common]) == 0
    capsys.readouterr()
    assert main(["video", str(tmp_path / "clips"), "-o", str(tmp_path / "ray"), "--ray",
                 *common]) == 2  # bad.mp4 failed; the others went on
    err = capsys.readouterr().err
    for clip in clips:
        name = clip.name
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == ["a.mp4", "b.mp4", "c.mp4"]
    assert err.count(f"{bad}: not a readable video") == 2  # as it failed, and in the tally
    assert "3 of 4 done; failed:" in err
    # the run report: per-worker counts that add up to the batch
    lines = [line.strip() for line in err.splitlines() if line.strip().startswith("worker ")]
    assert len(lines) == 2
    assert sum(int(line.split(": ")[1].split(" task")[0]) for line in lines) == 4
    assert sum(int(line.split(", ")[-2].split()[0]) for line in lines) == 5 + 7 + 4
    assert "audio: aac (copied)" in err
    assert _partials(tmp_path) == []


def test_skip_existing_on_ray_does_only_what_is_left(
        tmp_path: Path, local_ray: None, capsys: pytest.CaptureFixture[str]) -> None:
    clips = _clips(tmp_path / "clips")
    out = tmp_path / "out"
    args = ["video", *map(str, clips), "-o", str(out), "-e", "mog2", "--ray"]
    assert main(args) == 0
    finished = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "b.webm").unlink()  # as if the run had stopped before b
    capsys.readouterr()
    assert main([*args, "--skip-existing"]) == 0
    err = capsys.readouterr().err
    assert "1 of 3 done, 2 skipped (output exists)" in err
    assert "[1/1]" in err and "1 worker(s)" in err  # one task, so one worker
    for name in ("a.webm", "c.webm"):
        assert (out / name).stat().st_mtime_ns == finished[name]
    assert _frames(out / "b.webm") == 7
    # --overwrite replaces, and without it an existing output is an error
    assert main([*args, "-q"]) == 2
    assert "already exists (pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "-q"]) == 0
    assert all((out / n).stat().st_mtime_ns != finished[n] for n in ("a.webm", "c.webm"))


def test_the_progress_adds_up_frames_across_workers(tmp_path: Path, local_ray: None) -> None:
    from streammatte.cluster.executor import RayOptions, run_on_ray
    from streammatte.cluster.report import ClusterProgress

    clips = _clips(tmp_path / "clips")
    tasks = [Task(key=clip.stem, kind="video", src=clip, dst=tmp_path / f"{clip.stem}.webm",
                  frames=frames) for clip, frames in zip(clips, (5, 7, 4), strict=True)]
    seen: list[ClusterProgress] = []
    report = run_on_ray(tasks, MatteConfig(engine="mog2"), RayOptions(workers=2),
                        on_progress=seen.append, progress_interval_s=0.1)
    assert [o.ok for o in report.outcomes] == [True] * 3
    assert seen[-1].done == seen[-1].total == 16
    assert all(p.workers == 2 and p.done <= p.total for p in seen)
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert max(p.alive for p in seen) == 2
    assert sum(w.frames for w in report.workers) == 16
    assert {w.slot for w in report.workers} == {1, 2}
