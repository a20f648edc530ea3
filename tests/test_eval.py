"""`streammatte eval` / `compare` and the harness behind them; bad input names the file."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import davis_clip, make_video, square_frame

from streammatte import cli, matte_video
from streammatte.errors import ConfigError, SourceError
from streammatte.evaluate import (
    Clip,
    ClipProgress,
    EvalSpec,
    compare,
    evaluate_engine,
    find_clips,
    summarize,
)
from streammatte.inference import BUILTIN_ENGINES
from streammatte.refine import Upsampler
from streammatte.temporal import DEFAULT_FILE_MODE


@pytest.fixture()
def brightness_engine(monkeypatch: pytest.MonkeyPatch) -> str:
    """The BrightnessEngine test double, registered under a name the CLI can open."""
    monkeypatch.setitem(BUILTIN_ENGINES, "brightness", "media:BrightnessEngine")
    return "brightness"


def _sequence(root: Path, n: int = 6, size: tuple[int, int] = (64, 48)) -> Path:
    (root / "frames").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        frame, alpha = square_frame(i, *size)
        cv2.imwrite(str(root / "frames" / f"{i:05d}.jpg"), frame[..., ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 98])
        cv2.imwrite(str(root / "masks" / f"{i:05d}.png"), (alpha * 255).astype(np.uint8))
    return root


def test_eval_cli_writes_tables_and_plots(tmp_path: Path, brightness_engine: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    seq = _sequence(tmp_path / "squares")
    out = tmp_path / "report"
    status = cli.main(["eval", str(seq), "-e", brightness_engine, "-t", "none,bidirectional",
                       "-o", str(out), "-q"])
    assert status == 0
    table = capsys.readouterr().out
    assert "| brightness | bidirectional |" in table
    doc = json.loads((out / "report.json").read_text())
    rows = {r["mode"]: r for r in doc["summary"]}
    # the test double finds the bright square exactly (JPEG aside)
    assert rows["none"]["values"]["iou"] > 0.97
    assert rows["none"]["frames"] == 6
    assert "eval" in doc["command"]
    csv_lines = (out / "report.csv").read_text().splitlines()
    assert csv_lines[0].startswith("engine,temporal,upsample,clip,frames,iou")
    assert len(csv_lines) == 1 + 2 + 2  # header, 2 summary rows, 2 per-clip rows
    for png in ("report_iou_per_frame.png", "report_flicker_per_frame.png",
                "report_speed_vs_quality.png"):
        assert (out / png).stat().st_size > 1000


def test_dataset_folder_gives_one_clip_per_sequence(tmp_path: Path) -> None:
    _sequence(tmp_path / "a", 3)
    _sequence(tmp_path / "b", 3)
    clips = find_clips(tmp_path)
    assert [c.name for c in clips] == ["a", "b"]
    assert all(c.masks is not None for c in clips)


def test_compare_runs_every_engine_and_mode(tmp_path: Path) -> None:
    seq = _sequence(tmp_path / "s", 5)
    specs = [EvalSpec(engine=e, modes=("none", "adaptive"), slow_metrics=False)
             for e in ("mog2", "grabcut")]
    results = compare(specs, find_clips(seq), isolate=False)
    summary, per_clip = summarize(results)
    assert {(r.engine, r.mode) for r in summary} == {
        ("mog2", "none"), ("mog2", "adaptive"), ("grabcut", "none"), ("grabcut", "adaptive")}
    assert all(0.0 <= r.values["iou"] <= 1.0 and r.frames == 5 for r in summary)
    assert all(r.engine_ms > 0 and r.peak_rss_mb > 0 for r in summary)
    assert all(r.temporal_ms > 0 for r in summary if r.mode == "adaptive")
    assert len(per_clip) == 4


def test_video_without_ground_truth_measures_flicker(tmp_path: Path,
                                                     brightness_engine: str) -> None:
    video = tmp_path / "clip.mp4"
    make_video(video, frames=8)
    spec = EvalSpec(engine=brightness_engine, modes=("none",))
    (result,) = compare([spec], find_clips(video), isolate=False)
    assert not result.has_gt and result.frames == 8
    assert result.means().keys() == {"flicker"}


def test_video_with_masks_pairs_by_order(tmp_path: Path, brightness_engine: str) -> None:
    video = tmp_path / "clip.mp4"
    alphas = make_video(video, frames=5)
    masks = tmp_path / "gt"
    masks.mkdir()
    for i, a in enumerate(alphas):
        cv2.imwrite(str(masks / f"m{i}.png"), (a * 255).astype(np.uint8))
    (result,) = compare([EvalSpec(engine=brightness_engine)], find_clips(video, masks),
                        isolate=False)
    assert result.means()["iou"] > 0.8


def test_progress_is_reported_per_clip_with_its_length(tmp_path: Path,
                                                       brightness_engine: str) -> None:
    _sequence(tmp_path / "data" / "a", 3)
    _sequence(tmp_path / "data" / "b", 4)
    video = tmp_path / "clip.mp4"
    make_video(video, frames=5)
    calls: list[tuple[str, int, int | None]] = []
    spec = EvalSpec(engine=brightness_engine, max_frames=4)
    clips = [*find_clips(tmp_path / "data"), *find_clips(video)]
    evaluate_engine(spec, clips, on_frame=lambda *call: calls.append(call))
    assert calls == [("a", 0, 3), ("a", 1, 3), ("a", 2, 3), ("a", 3, 3),
                     ("b", 0, 4), ("b", 1, 4), ("b", 2, 4), ("b", 3, 4), ("b", 4, 4),
                     ("clip", 0, 4), ("clip", 1, 4), ("clip", 2, 4), ("clip", 3, 4),
                     ("clip", 4, 4)]


def test_clip_progress_draws_one_line_per_clip() -> None:
    import io

    class Terminal(io.StringIO):  # in place on a terminal; a log gets a line every few s
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    bar = ClipProgress(stream=stream, enabled=True)
    bar("a", 1, 2)
    bar("a", 2, 2)
    bar("b", 1, None)
    bar.finish()
    lines = stream.getvalue().split("\n")
    assert lines[0].rsplit("\r", 1)[-1].startswith("2/2 frames of a  100%")
    assert lines[1].lstrip("\r").startswith("1 frames of b  ")
    assert lines[2] == ""  # finished: the last line is closed


def _corner_sequence(root: Path, n: int = 3) -> Path:
    """A red block in the top-left corner on a grey-green background, away from the centre."""
    (root / "frames").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(7)
    for i in range(n):
        frame = np.full((64, 96, 3), (90, 140, 90), np.uint8)
        frame += rng.integers(0, 12, frame.shape, dtype=np.uint8)
        mask = np.zeros((64, 96), np.uint8)
        mask[4:28, 4 + i:36 + i] = 255
        frame[mask > 0] = (200, 40, 40)
        cv2.imwrite(str(root / "frames" / f"{i:05d}.png"), frame[..., ::-1])
        cv2.imwrite(str(root / "masks" / f"{i:05d}.png"), mask)
    return root


def test_grabcut_starts_from_the_users_box(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    seq = _corner_sequence(tmp_path / "corner")
    ious = {}
    for label, extra in (("centred", []), ("box", ["--grabcut-box", "1,1,42,32"])):
        out = tmp_path / label
        assert cli.main(["eval", str(seq), "-e", "grabcut", "-o", str(out), "--no-plots", "-q",
                         "--fast-metrics", *extra]) == 0
        doc = json.loads((out / "report.json").read_text())
        ious[label] = doc["summary"][0]["values"]["iou"]
    assert ious["box"] > 0.9 > ious["centred"] + 0.2, ious
    capsys.readouterr()
    # a box for another engine, or a malformed one, is refused before anything runs
    assert cli.main(["eval", str(seq), "-e", "mog2", "--grabcut-box", "1,1,42,32", "-q",
                     "-o", str(tmp_path / "x")]) == 2
    assert "a GrabCut box was given, but the engine is 'mog2'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["eval", str(seq), "-e", "grabcut", "--grabcut-box", "1,1,42"])
    assert "expected X,Y,WIDTH,HEIGHT" in capsys.readouterr().err


# -- bad input ------------------------------------------------------------------------------

def _run(clip_path: Path, gt: Path | None = None, engine: str = "mog2") -> None:
    compare([EvalSpec(engine=engine, slow_metrics=False)], find_clips(clip_path, gt),
            isolate=False)


def test_mask_of_another_size_names_the_mask(tmp_path: Path) -> None:
    seq = _sequence(tmp_path / "s", 3)
    cv2.imwrite(str(seq / "masks" / "00001.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(SourceError, match=r"00001\.png: ground truth is 10×10 but frame "
                                          r"00001\.jpg is 64×48"):
        _run(seq)


def test_missing_mask_names_the_frame(tmp_path: Path) -> None:
    seq = _sequence(tmp_path / "s", 3)
    (seq / "masks" / "00002.png").unlink()
    with pytest.raises(SourceError, match=r"00002\.jpg: no ground-truth mask"):
        _run(seq)


def test_extra_mask_names_the_mask(tmp_path: Path) -> None:
    seq = _sequence(tmp_path / "s", 3)
    cv2.imwrite(str(seq / "masks" / "00009.png"), np.zeros((48, 64), np.uint8))
    with pytest.raises(SourceError, match=r"00009\.png: ground-truth mask without a frame"):
        _run(seq)


def test_more_masks_than_video_frames_names_the_first_extra(tmp_path: Path,
                                                           brightness_engine: str) -> None:
    video = tmp_path / "clip.mp4"
    alphas = make_video(video, frames=3)
    masks = tmp_path / "gt"
    masks.mkdir()
    for i in range(4):
        cv2.imwrite(str(masks / f"m{i}.png"), (alphas[0] * 255).astype(np.uint8))
    with pytest.raises(SourceError, match=r"m3\.png: ground-truth mask without a frame"):
        _run(video, masks, brightness_engine)


def test_empty_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"empty: empty folder"):
        _run(tmp_path / "empty")


def test_non_image_file_is_named(tmp_path: Path) -> None:
    seq = _sequence(tmp_path / "s", 3)
    (seq / "frames" / "notes.txt").write_text("hello")
    with pytest.raises(SourceError, match=r"notes\.txt: not an image file"):
        _run(seq)


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    seq = _sequence(tmp_path / "s", 3)
    (seq / "frames" / "00001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(SourceError, match=r"00001\.jpg: not a readable image"):
        _run(seq)


def test_unknown_mode_and_tiny_limits_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown temporal mode 'blur'"):
        EvalSpec(engine="mog2", modes=("blur",))
    with pytest.raises(ConfigError, match="max_frames"):
        EvalSpec(engine="mog2", max_frames=1)


def test_cli_reports_bad_input_in_one_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["eval", str(tmp_path / "nope"), "-e", "mog2", "-q", "--no-plots"])
    assert status == 2
    assert "nope: no such file or folder" in capsys.readouterr().err


def test_real_u2netp_eval_on_davis(tmp_path: Path, shared_data: Path, u2netp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    status = cli.main(["eval", str(shared_data / "davis" / "car-shadow"), "--model-file",
                       str(u2netp_path), "--max-frames", "4", "-t", "none,flow",
                       "--upsample", "guided", "-o", str(out), "-q", "--no-plots"])
    assert status == 0
    doc = json.loads((out / "report.json").read_text())
    none = next(r for r in doc["summary"] if r["mode"] == "none")
    # u2netp finds the car: IoU well above what an empty or full mask would score
    assert none["values"]["iou"] > 0.85
    assert none["engine_ms"] > 0


@pytest.mark.parametrize("upsample", ["bilinear", pytest.param("guided", marks=pytest.mark.slow)])
def test_eval_scores_the_alphas_the_file_path_writes(
        tmp_path: Path, shared_data: Path, u2netp_path: Path, upsample: Upsampler) -> None:
    # the PNG frames `streammatte video` writes become eval's ground truth: eval's own alphas
    # must then match them to the rounding of 8-bit alpha, in the look-ahead default mode
    clip = davis_clip(shared_data, tmp_path / "parkour.mp4", frames=12)
    matte_video(clip, tmp_path / "written", engine="u2netp", model_file=u2netp_path,
                upsample=upsample)
    spec = EvalSpec(engine="u2netp", model_file=u2netp_path, modes=(DEFAULT_FILE_MODE, "none"),
                    upsample=upsample, slow_metrics=False)
    results = {r.mode: r for r in evaluate_engine(spec, [Clip("parkour", clip,
                                                                tmp_path / "written")])}
    same = results[DEFAULT_FILE_MODE]
    assert same.frames == 12
    assert max(float(f["mad"] or 0) for f in same.per_frame) <= 0.5 / 255 * 1e3  # × 1e3
    # another mode's alphas are told apart: the comparison can fail
    assert results["none"].means()["mad"] > 4 * same.means()["mad"]
