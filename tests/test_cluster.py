"""The cluster executor on a real local Ray: batches, the aggregated progress, lost workers.

Ray is the ``streammatte[ray]`` extra: these tests skip without it, except in CI
(``STREAMMATTE_REQUIRE_MODELS=1``), where a missing Ray is a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media import davis_clip, make_video

from streammatte.api import matte_video
from streammatte.chain import Chain
from streammatte.cli import main
from streammatte.cluster import Task, Worker
from streammatte.cluster.segments import matte_segment, plan_segments, roll_frames, stitch
from streammatte.config import MatteConfig
from streammatte.inference import open_engine
from streammatte.progress import ProgressLine

REPO = Path(__file__).resolve().parents[1]


def _partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*partial-*"))


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def _decoded(path: Path) -> list[tuple[int | None, bytes]]:
    """Every frame's timestamp and pixels, alpha included (libvpx-vp9 reads VP9's alpha)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.codec_context.name == "vp9":
            codec = av.CodecContext.create("libvpx-vp9", "r")
            codec.extradata = stream.codec_context.extradata
            # the demuxer's last, empty packet flushes the decoder
            frames = [f for packet in container.demux(stream) for f in codec.decode(packet)]
        else:
            frames = list(container.decode(stream))
        return [(f.pts, f.to_ndarray(format="rgba").tobytes()) for f in frames]


def _require_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("STREAMMATTE_REQUIRE_MODELS") == "1":
            raise
        pytest.skip("ray is not installed (pip install 'streammatte[ray]')")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray with two CPUs in this process, for the slow tests (started once: it takes
    seconds). Not for `make test`: after ray.init in a process, x264 there no longer gives the
    same bytes for the same frames (seen on DAVIS clips made by later tests), so the suite's
    Ray test runs the CLI in a process of its own."""
    _require_ray()
    import ray

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
    bar = ProgressLine(200, enabled=False)
    bar.update(10, 2.0)
    bar.update(50, 10.0)
    line = bar.render(50, "2/2 workers")
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


@pytest.mark.parametrize("flag", ["--output-matte", "-o"])
def test_ray_refuses_what_only_the_local_run_does(
        tmp_path: Path, flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "a.mp4"
    make_video(clip, frames=3)
    report = tmp_path / "r.json"
    value = "-" if flag == "-o" else str(tmp_path / "m.mp4")
    args = ["video", str(clip), "-o", str(tmp_path / "out.mp4"), "-e", "mog2", "--ray",
            "--report", str(report)]
    assert main([*args, flag, value]) == 2
    said = "- (stdin/stdout)" if flag == "-o" else flag
    error = f"--ray does not support {said} yet; run without --ray"
    assert error in capsys.readouterr().err
    # the report says why the run failed, as for any error
    assert json.loads(report.read_text())["error"] == error
    report.unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]


def test_a_trimmed_run_is_not_cut_into_segments(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from streammatte.cluster.executor import _plan

    clip = tmp_path / "a.mp4"
    make_video(clip, frames=12, gop=4)
    task = Task(key="a", kind="video", src=clip, dst=tmp_path / "out.mp4", frames=12)
    units, splits = _plan([task], MatteConfig(), 0.4)
    assert len(units) == 3 and len(splits) == 1  # cut at 0.4 and 0.8 s
    assert _plan([task], MatteConfig(start_s=0.2), 0.4) == ([task], {})


def _clips(folder: Path) -> list[Path]:
    folder.mkdir()
    clips = []
    for name, frames in (("a", 5), ("b", 7), ("c", 4)):
        # b has a keyframe every 4 frames (0.4 s): --segment-s 0.4 cuts it in two
        make_video(folder / f"{name}.mp4", frames=frames, size=(64, 48),
                   audio="aac" if name == "a" else None, gop=4 if name == "b" else None)
        clips.append(folder / f"{name}.mp4")
    return clips


def test_a_batch_on_ray_is_the_local_batch_byte_for_byte(
        tmp_path: Path, u2netp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Byte for byte on ProRes, b.mp4 cut in two segments and stitched included; H.264 and
    WebM are not reproducible byte for byte even from one local run to the next (x264 with
    automatic threads in a worker thread; Matroska's random UIDs), so for them the decoded
    frames are compared (the skip-existing test)."""
    _require_ray()
    clips = _clips(tmp_path / "clips")
    bad = tmp_path / "clips" / "bad.mp4"
    bad.write_bytes(b"not a video")
    common = ["--models-dir", str(u2netp_path.parent), "-b", "blue", "-f", "prores4444"]
    assert main(["video", *map(str, clips), "-o", str(tmp_path / "local"), *common]) == 0
    capsys.readouterr()
    # a local Ray of two CPUs, as on CI, started and stopped by the run
    log = tmp_path / "driver.log"
    code, err = _finish(_driver(log, "video", str(tmp_path / "clips"), "-o",
                                str(tmp_path / "ray"), "--ray", "--ray-workers", "2",
                                "--segment-s", "0.4", "--report", str(tmp_path / "r.json"),
                                *common), log)
    assert code == 2, err  # bad.mp4 failed; the others went on
    assert err.count("note: 2 segments of ~4 frames") == 1  # b.mp4, and only b
    names = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert names == ["a.mov", "b.mov", "c.mov"]
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == names
    for name in ("a.mov", "c.mov"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    # stitched, b's packets are the one run's; only its header says more (MOV's field atom)
    b_ray, b_local = tmp_path / "ray" / "b.mov", tmp_path / "local" / "b.mov"
    assert _video_packets(b_ray) == _video_packets(b_local)
    assert _frame_times(b_ray) == _frame_times(b_local)
    assert _codec_tag(b_ray) == _codec_tag(b_local) == "ap4h"
    assert err.count(f"{bad}: not a readable video") == 2  # as it failed, and in the tally
    assert "3 of 4 done; failed:" in err
    # the run report: per-worker counts that add up to the batch
    lines = [line.strip() for line in err.splitlines() if line.strip().startswith("worker ")]
    assert len(lines) == 2
    # a, c, bad, and b's two segments and its stitch
    assert sum(int(line.split(": ")[1].split(" task")[0]) for line in lines) == 6
    assert sum(int(line.split(", ")[-2].split()[0]) for line in lines) == 5 + 7 + 4
    assert "audio: aac (copied)" in err
    # and the --report file: an entry per input, the workers' counts as printed
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["status"] == "failed"
    runs = {Path(run["input"]).name: run for run in document["runs"]}
    assert sorted(runs) == ["a.mp4", "b.mp4", "bad.mp4", "c.mp4"]
    assert runs["bad.mp4"]["status"] == "failed"
    assert runs["bad.mp4"]["error"].startswith(f"{bad}: not a readable video")
    assert [runs[n]["frames_out"] for n in ("a.mp4", "b.mp4", "c.mp4")] == [5, 7, 4]
    assert all(runs[n]["outputs"][0]["path"] == str(tmp_path / "ray" / f"{n[0]}.mov")
               for n in ("a.mp4", "b.mp4", "c.mp4"))
    workers = document["workers"]
    assert [w["slot"] for w in workers] == [int(line.split()[1]) for line in lines]
    assert sum(w["tasks"] for w in workers) == 6
    assert sum(w["frames"] for w in workers) == 5 + 7 + 4
    assert _partials(tmp_path) == []


def _alphas_and_times(path: Path) -> tuple[list[np.ndarray], list[Fraction]]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
        return ([f.to_ndarray(format="rgba")[..., 3] for f in frames],
                [f.pts * f.time_base for f in frames])


@pytest.mark.slow
def test_a_long_real_clip_split_on_ray_matches_one_run_at_the_seams(
        tmp_path: Path, local_ray: None, shared_data: Path, u2netp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """DAVIS parkour with a tone, 72 frames with a keyframe every 12, cut every 0.96 s: three
    segments, the last with less history than the file holds before it (40 frames of 48).
    ProRes 4444 keeps the alpha and codes each frame alone, so equal mattes are equal frames."""
    clip = davis_clip(shared_data, tmp_path / "parkour.mp4", frames=72, gop=12, audio="aac")
    common = ["-f", "prores4444", "--models-dir", str(u2netp_path.parent)]
    assert main(["video", str(clip), "-o", str(tmp_path / "one.mov"), "-q", *common]) == 0
    assert main(["video", str(clip), "-o", str(tmp_path / "split.mov"), "--ray", "--segment-s",
                 "0.96", *common]) == 0
    err = capsys.readouterr().err
    with open_engine("mog2") as engine, Chain(MatteConfig(), engine=engine) as chain:
        delay = chain.delay  # the default temporal mode's look-ahead
    pre_roll, post_roll = roll_frames(MatteConfig())
    assert post_roll == delay and pre_roll >= delay
    assert (f"note: 3 segments of ~24 frames, {pre_roll} frames of history and {post_roll} of "
            "look-ahead") in err
    one, one_times = _alphas_and_times(tmp_path / "one.mov")
    split, split_times = _alphas_and_times(tmp_path / "split.mov")
    assert len(one) == len(split) == 72
    assert split_times == one_times
    errors = [float(np.abs(a.astype(np.int16) - b).mean()) for a, b in zip(one, split,
                                                                           strict=True)]
    assert errors[:24] == [0.0] * 24  # before the first seam: the same frames, the same run
    for seam in (24, 48):  # the frames the filter's look-ahead and history reach across it
        around = errors[seam - post_roll:seam + post_roll]
        assert float(np.mean(around)) <= 2.0, f"seam {seam}: {around}"  # mean |Δα|, in 1/255
    assert float(np.mean(errors)) <= 2.0
    # the audio once, from the source, as the one-process run carries it
    with av.open(str(tmp_path / "split.mov")) as container:
        assert len(container.streams.audio) == 1
    assert _audio_packets(tmp_path / "split.mov") == _audio_packets(tmp_path / "one.mov")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.mov", "parkour.mp4", "split.mov"]


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".mov", ""])
def test_stitched_segments_keep_the_frames_timestamps_and_audio_of_one_run(
        tmp_path: Path, suffix: str) -> None:
    """Variable frame rate and audio; the segments' packets are remuxed, not re-encoded.
    (MOG2 for speed: the pixels are not compared here, and a plan is cut whatever the
    engine; the look-ahead filter's roll frames for one format.)"""
    src = tmp_path / "vfr.mp4"
    gaps = [1, 1, 2, 1, 3, 1, 1, 2] * 5  # in 1/20 s
    pts = [sum(gaps[:i]) for i in range(len(gaps))]
    make_video(src, frames=len(pts), size=(64, 48), audio="aac", pts=pts,
               time_base=Fraction(1, 20), gop=6)
    config = MatteConfig(engine="mog2", background="blue" if suffix == ".mp4" else "auto",
                         temporal="bidirectional" if suffix == ".mp4" else "none")
    with open_engine("mog2") as engine:
        one = matte_video(src, tmp_path / f"one{suffix}", config, engine=engine)
        plan = plan_segments(src, tmp_path / f"split{suffix}", config, segment_s=1.0)
        assert plan is not None and len(plan.segments) >= 3
        for segment in plan.segments:
            engine.reset()
            matte_segment(plan, segment.index, config, engine)
    segment_packets = [p for s in plan.segments for p in _video_packets(plan.path(s.index))
                       ] if suffix else []
    joined = stitch(plan, config)
    assert joined.frames_out == one.frames_out == len(pts)
    assert joined.audio_tracks == one.audio_tracks
    assert not plan.work.exists()
    if suffix:
        assert _video_packets(plan.dst) == segment_packets
        assert _codec_tag(plan.dst) == _codec_tag(one.output)
        assert _frame_times(plan.dst) == _frame_times(one.output)
        assert _audio_packets(plan.dst) == _audio_packets(one.output)
    else:
        assert len(list(plan.dst.glob("frame_*.png"))) == len(pts)
        assert _audio_packets(plan.dst / "audio.mka") == _audio_packets(one.output / "audio.mka")


def _video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(video=0) if p.size]


def _codec_tag(path: Path) -> str:
    with av.open(str(path)) as container:
        return str(container.streams.video[0].codec_context.codec_tag)


def _frame_times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as container:
        return [f.pts * f.time_base for f in container.decode(video=0)]


def _audio_packets(path: Path) -> list[tuple[Fraction, bytes]]:
    with av.open(str(path)) as container:
        return [(p.pts * p.time_base, bytes(p)) for p in container.demux(audio=0) if p.size]


@pytest.mark.slow
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
    local = tmp_path / "local"
    assert main(["video", *map(str, clips), "-o", str(local), "-e", "mog2", "-q"]) == 0
    for name in ("a.webm", "b.webm", "c.webm"):
        assert _decoded(out / name) == _decoded(local / name)
    # --overwrite replaces, and without it an existing output is an error
    assert main([*args, "-q"]) == 2
    assert "already exists (pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "-q"]) == 0
    assert all((out / n).stat().st_mtime_ns != finished[n] for n in ("a.webm", "c.webm"))


@pytest.mark.slow
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
    assert all(p.done <= p.total for p in seen)
    # workers join as their engine opens: counted up to the two asked for, never down
    assert [p.workers for p in seen] == sorted(p.workers for p in seen)
    assert seen[-1].workers == 2
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert max(p.alive for p in seen) == 2
    assert sum(w.frames for w in report.workers) == 16
    assert {w.slot for w in report.workers} == {1, 2}


# -- faults: lost workers, a lost driver, an input that kills its worker ------------------------

def _driver(log: Path, *args: str) -> subprocess.Popen[bytes]:
    """The CLI as a user runs it, starting its own local Ray, its output into ``log``: a
    file, not a pipe, which Ray's own processes could hold open after the driver is gone."""
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "streammatte", *args], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "RAY_ADDRESS": ""})


def _finish(driver: subprocess.Popen[bytes], log: Path, timeout_s: float = 240
            ) -> tuple[int, str]:
    try:
        code = driver.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the driver did not finish: {log.read_text()}") from None
    finally:
        driver.kill()
    return code, log.read_text()


def _wait_for(what: str, check: Callable[[], object], timeout_s: float = 240.0) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _sequence_partial_with_frames(out: Path, frames: int) -> Path | None:
    """A worker's temporary PNG-sequence folder that already holds ``frames`` frames: its
    task is under way."""
    if not out.is_dir():
        return None
    for entry in out.iterdir():
        if ".partial-" in entry.name and entry.is_dir():
            try:
                if len(list(entry.glob("frame_*.png"))) >= frames:
                    return entry
            except FileNotFoundError:
                continue
    return None


def _live_actor_processes() -> list[int]:
    """The Ray worker processes running streammatte's actor (zombies not counted)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            title = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if title.startswith(b"ray::_Actor") and state != "Z":
            pids.append(int(proc.name))
    return pids


def _sequence_frames(folder: Path) -> int:
    assert (folder / ".streammatte-sequence.json").is_file(), f"{folder} is not whole"
    return len(list(folder.glob("frame_*.png")))


@pytest.mark.slow
def test_a_worker_killed_mid_task_is_retried_and_the_run_completes(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    lengths = {"a": 30, "b": 30, "c": 30}
    for name, frames in lengths.items():
        make_video(clips / f"{name}.mp4", frames=frames, size=(96, 64))
    out = tmp_path / "out"
    log = tmp_path / "driver.log"
    driver = _driver(log, "video", str(clips), "-o", str(out), "-f", "png", "-e", "mog2",
                     "--temporal", "bidirectional", "--ray", "--ray-workers", "2")
    try:
        partial = _wait_for("a task under way", lambda: _sequence_partial_with_frames(out, 3))
        assert isinstance(partial, Path)
        pid = int(partial.name.split(".partial-")[1].split("-")[0])
        assert pid != driver.pid
        os.kill(pid, signal.SIGKILL)  # the worker process, mid-task
    finally:
        code, err = _finish(driver, log)
    assert code == 0, err
    assert "3 of 3 done" in err
    assert "restarted 1×" in err  # the lost worker's slot, pids before and after
    for name, frames in lengths.items():
        assert _sequence_frames(out / name) == frames
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "c"]  # no leftovers


@pytest.mark.slow
def test_a_killed_driver_leaves_nothing_partial_and_a_rerun_does_only_the_rest(
        tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    names = ["a", "b", "c", "d", "e"]
    for name in names:
        make_video(clips / f"{name}.mp4", frames=24, size=(96, 64))
    out = tmp_path / "out"
    args = ["video", str(clips), "-o", str(out), "-f", "png", "-e", "mog2",
            "--temporal", "bidirectional", "--ray", "--ray-workers", "2"]
    driver = _driver(tmp_path / "driver.log", *args)
    try:
        # kill it once one result is published and another is under way
        _wait_for("a published result", lambda: [p for p in out.iterdir()
                                                  if ".partial-" not in p.name]
                  if out.is_dir() else None)
        _wait_for("another task under way", lambda: _sequence_partial_with_frames(out, 2))
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
        # Ray takes the driver's workers down with it; a task in its last frame may still
        # publish meanwhile, which is fine: whatever is published is whole
        _wait_for("the workers to go", lambda: not _live_actor_processes(), timeout_s=120)
    finally:
        driver.kill()
    published = {p.name: p.stat().st_mtime_ns for p in out.iterdir()
                 if ".partial-" not in p.name}
    assert 1 <= len(published) < len(names)
    for name in published:
        assert _sequence_frames(out / name) == 24  # whole, or not there at all
    code, err = _finish(_driver(tmp_path / "rerun.log", *args, "--skip-existing"),
                        tmp_path / "rerun.log")
    assert code == 0, err
    left = len(names) - len(published)
    assert f"{left} of {len(names)} done, {len(published)} skipped" in err
    tasks = [int(line.split(": ")[1].split(" task")[0])
             for line in err.splitlines() if line.strip().startswith("worker ")]
    assert sum(tasks) == left  # only what was left was run
    for name in names:
        assert _sequence_frames(out / name) == 24
    for name, mtime in published.items():
        assert (out / name).stat().st_mtime_ns == mtime
    assert sorted(p.name for p in out.iterdir()) == names  # the killed run's partials swept


_CRASH_HOOK = r"""
import os, signal
from streammatte.cluster import work

_run = work.Worker.run


def _crashing_run(self, task):
    if task.src.name.startswith("crash"):
        with open(task.src.with_name("attempts"), "a") as log:
            log.write(f"{os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)  # as a segfault on this input would
    return _run(self, task)


def install():
    work.Worker.run = _crashing_run
"""

_CRASH_DRIVER = """
import sys
from pathlib import Path
import ray
from streammatte.cluster import Task
from streammatte.cluster.executor import RayOptions, run_on_ray
from streammatte.config import MatteConfig

folder = Path(sys.argv[1])
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
         runtime_env={"worker_process_setup_hook": "crashhook.install",
                      "env_vars": {"PYTHONPATH": str(folder)}})
tasks = [Task(key=n, kind="video", src=folder / f"{n}.mp4", dst=folder / f"{n}.webm", frames=4)
         for n in ("a", "crash", "b")]
report = run_on_ray(tasks, MatteConfig(engine="mog2"), RayOptions(workers=1, task_retries=2))
for o in report.outcomes:
    print(o.task.key, o.ok, o.error)
print("restarts", report.workers[0].restarts)
"""


@pytest.mark.slow
def test_an_input_that_kills_its_worker_every_time_is_given_up_after_the_retries(
        tmp_path: Path) -> None:
    pytest.importorskip("ray")
    for name in ("a", "crash", "b"):
        make_video(tmp_path / f"{name}.mp4", frames=4, size=(64, 48))
    (tmp_path / "crashhook.py").write_text(_CRASH_HOOK)
    (tmp_path / "driver.py").write_text(_CRASH_DRIVER)
    log = tmp_path / "driver.log"
    with log.open("wb") as out:
        driver = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(tmp_path)],
                                  stdout=out, stderr=subprocess.STDOUT)
    code, output = _finish(driver, log)
    assert code == 0, output
    lines = output.splitlines()
    assert "a True None" in lines and "b True None" in lines
    (crash,) = [line for line in lines if line.startswith("crash ")]
    assert "crash False" in crash and "its worker was lost on every try" in crash
    # one try and two retries, each in a new process that it killed; then b ran
    attempts = (tmp_path / "attempts").read_text().split()
    assert len(attempts) == 3 and len(set(attempts)) == 3
    (restarts,) = [line for line in lines if line.startswith("restarts ")]
    assert int(restarts.split()[1]) >= 1
    assert (tmp_path / "a.webm").is_file() and (tmp_path / "b.webm").is_file()
    assert not (tmp_path / "crash.webm").exists() and _partials(tmp_path) == []
