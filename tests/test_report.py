"""The machine-readable run report (#16 item 6): ``--report FILE.json`` on video, image and
batches, written whole at the end however the run ends."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from media import make_video

from streammatte.cli import main
from streammatte.report import SCHEMA

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "vtest-excerpt.mp4"


def _read(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def test_video_report_holds_what_the_run_did(tmp_path: Path) -> None:
    src, out, report = tmp_path / "in.mp4", tmp_path / "out.mp4", tmp_path / "run.json"
    make_video(src, frames=10, size=(96, 64), audio="aac")
    assert main(["video", str(src), "-o", str(out), "-e", "mog2", "-b", "blur", "-q",
                 "--report", str(report)]) == 0
    document = _read(report)
    assert (document["schema"], document["command"], document["status"]) == (
        SCHEMA, "video", "done")
    assert document["argv"][:4] == ["video", str(src), "-o", str(out)]
    (run,) = document["runs"]
    assert (run["input"], run["status"], run["frames_in"], run["frames_out"]) == (
        str(src), "done", 10, 10)
    assert run["engine"].startswith("mog2 on cpu") and run["device"] == "cpu"
    # the default smoothing (keyframes) adds its motion stage ahead of the engine
    assert [s["name"] for s in run["stages"]] == ["decode", "motion", "preprocess", "infer",
                                                  "compose", "encode"]
    assert all(s["frames"] == 10 and s["busy_s"] > 0 for s in run["stages"])
    assert run["outputs"] == [{"kind": "composite", "path": str(out), "format": "h264",
                               "encoder": "libx264", "audio_tracks": ["aac (copied)"]}]
    assert run["audio_tracks"] == ["aac (copied)"]
    assert run["elapsed_s"] > 0 and run["fps"] > 0
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_a_batch_report_lists_every_input_and_fails_when_one_did(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    make_video(clips / "a.mp4", frames=4)
    (clips / "b.mp4").write_text("not a video")
    make_video(clips / "c.mp4", frames=4)
    out, report = tmp_path / "out", tmp_path / "batch.json"
    out.mkdir()
    (out / "c.webm").write_bytes(b"done by an earlier run")
    assert main(["video", str(clips), "-o", str(out), "-e", "mog2", "-q", "--skip-existing",
                 "--report", str(report)]) == 2
    document = _read(report)
    assert document["status"] == "failed"
    runs = {Path(r["input"]).name: r for r in document["runs"]}
    assert (runs["a.mp4"]["status"], runs["b.mp4"]["status"], runs["c.mp4"]["status"]) == (
        "done", "failed", "skipped")
    assert "b.mp4: not a readable video" in runs["b.mp4"]["error"]
    assert runs["a.mp4"]["frames_out"] == 4


def test_image_report_times_each_step(tmp_path: Path, shared_data: Path,
                                      u2netp_path: Path) -> None:
    frame = shared_data / "davis/parkour/frames/00030.jpg"
    out, report = tmp_path / "cut.png", tmp_path / "image.json"
    assert main(["image", str(frame), "-o", str(out), "--model-file", str(u2netp_path), "-q",
                 "--report", str(report)]) == 0
    (run,) = _read(report)["runs"]
    assert [s["name"] for s in run["stages"]] == ["read", "matte", "compose", "write"]
    assert run["engine"].startswith("u2netp on cpu") and run["frames_out"] == 1
    assert run["outputs"][0]["path"] == str(out)


def test_a_failed_run_still_writes_its_report(tmp_path: Path) -> None:
    bad, report = tmp_path / "bad.mp4", tmp_path / "r.json"
    bad.write_text("hello")
    assert main(["video", str(bad), "-o", str(tmp_path / "o.mp4"), "-e", "mog2", "-q",
                 "--report", str(report)]) == 2
    document = _read(report)
    assert document["status"] == "failed"
    (run,) = document["runs"]
    assert run["status"] == "failed" and "bad.mp4: not a readable video" in run["error"]


def test_an_existing_report_is_refused_before_any_work(tmp_path: Path) -> None:
    report, out = tmp_path / "r.json", tmp_path / "o.mp4"
    report.write_text("{}")
    result = subprocess.run([sys.executable, "-m", "streammatte", "video", str(SAMPLE), "-o",
                             str(out), "--report", str(report)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"streammatte: error: {report}: already exists (pass "
                                     "--overwrite to replace it)")
    assert report.read_text() == "{}" and not out.exists()


def test_the_report_may_not_be_an_output(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.mp4"
    assert main(["video", str(SAMPLE), "-o", str(out), "--report", str(out)]) == 2
    assert "the report would overwrite an output" in capsys.readouterr().err


def test_every_field_is_documented(tmp_path: Path) -> None:
    src, report = tmp_path / "in.mp4", tmp_path / "r.json"
    make_video(src, frames=3)
    assert main(["video", str(src), "-o", str(tmp_path / "o.webm"), "-e", "mog2", "-q",
                 "--report", str(report)]) == 0
    document = _read(report)
    docs = (ROOT / "docs" / "run-report.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)`", docs, flags=re.MULTILINE))
    keys = set(document) | set(document["runs"][0]) | set(document["runs"][0]["stages"][0]) \
        | set(document["runs"][0]["outputs"][0])
    assert keys <= documented, sorted(keys - documented)
    assert SCHEMA in docs


def test_an_interrupted_run_writes_its_report_and_no_output(tmp_path: Path,
                                                            shared_data: Path) -> None:
    import signal
    import time

    out, report = tmp_path / "out.mp4", tmp_path / "r.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "streammatte", "video", str(shared_data / "media" / "vtest.avi"),
         "-o", str(out), "-e", "mog2", "-b", "blur", "--report", str(report)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".out.mp4.partial-") for p in tmp_path.iterdir()):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the run never staged its output"
        time.sleep(0.05)
    time.sleep(2)  # into the run: 795 frames take far longer
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert _read(report)["status"] == "interrupted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
