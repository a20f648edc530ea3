"""Several outputs from one run (#16 item 4): the composite, the matte and the foreground with
alpha from one decode and one engine run, published together or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from media import BrightnessEngine, davis_clip, imread, make_video
from mounts import small_tmpfs

from streammatte import matte_video
from streammatte.cli import main
from streammatte.compose import blend
from streammatte.errors import ConfigError
from streammatte.sinks.publish import OutputExistsError, StagedOutput, publish_all


def _pngs(folder: Path) -> list[np.ndarray]:
    return [imread(p) for p in sorted(folder.glob("frame_*.png"))]


def _partials(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial-" in p.name]


def test_composite_matte_and_foreground_from_one_engine_run(
        tmp_path: Path, shared_data: Path, u2netp_path: Path) -> None:
    src = davis_clip(shared_data, tmp_path / "parkour.mp4", 6)
    composite, matte, foreground = tmp_path / "out", tmp_path / "matte", tmp_path / "fg"
    report = tmp_path / "report.json"
    assert main(["video", str(src), "-o", str(composite), "-b", "#00b140",
                 "--output-matte", str(matte), "--output-foreground", str(foreground),
                 "--model-file", str(u2netp_path), "--temporal", "none", "-q",
                 "--report", str(report)]) == 0
    (run,) = json.loads(report.read_text())["runs"]
    stages = {s["name"]: s["frames"] for s in run["stages"]}
    assert stages["decode"] == stages["infer"] == 6  # decoded and matted once, not per output
    assert [(o["kind"], o["path"]) for o in run["outputs"]] == [
        ("composite", str(composite)), ("matte", str(matte)), ("foreground", str(foreground))]
    mattes, cutouts, composites = _pngs(matte), _pngs(foreground), _pngs(composite)
    assert len(mattes) == len(cutouts) == len(composites) == 6
    truths = [cv2.resize(imread(p, cv2.IMREAD_GRAYSCALE), (428, 240)) > 127
              for p in sorted((shared_data / "davis/parkour/masks").glob("*.png"))[:6]]
    for m, fg, comp, truth in zip(mattes, cutouts, composites, truths, strict=True):
        assert m.ndim == 2 and fg.shape[2] == 4
        np.testing.assert_array_equal(fg[..., 3], m)  # one alpha behind every output
        # the composite is that foreground over the green, by that alpha (PNG: lossless)
        colour = np.ascontiguousarray(fg[..., :3])  # BGR, as OpenCV read it
        green = np.empty_like(colour)
        green[:] = (64, 177, 0)
        expected = blend(colour, green, (m / 255).astype(np.float32))
        assert np.abs(comp[..., :3].astype(int) - expected).max() <= 1
        found = m > 127
        assert (found & truth).sum() / (found | truth).sum() > 0.5  # the runner is found


def test_a_failing_output_publishes_none_of_them(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    make_video(src, frames=40, size=(320, 240))
    with small_tmpfs(tmp_path / "small", "200k") as small:
        main_out, foreground = tmp_path / "out.mp4", small / "fg"
        status = main(["video", str(src), "-o", str(main_out), "-b", "white",
                       "--output-foreground", str(foreground), "-e", "mog2", "-q"])
        assert status == 2
        assert not foreground.exists() and not _partials(small)
    assert not main_out.exists() and not _partials(tmp_path)


def test_publish_all_publishes_the_rest_and_names_what_failed(tmp_path: Path) -> None:
    first, second, third = (StagedOutput(tmp_path / name, folder=False, overwrite=False,
                                         suffix=".mp4") for name in ("a.mp4", "b.mp4", "c.mp4"))
    for staged in (first, second, third):
        assert staged.temp is not None
        staged.temp.write_bytes(b"finished")
    (tmp_path / "b.mp4").write_bytes(b"another run's")  # appeared while this run wrote
    with pytest.raises(OutputExistsError, match=r"b\.mp4: appeared while this run was writing "
                       r"it .* kept as .*b-1\.mp4 \(the run's other outputs published: "
                       r".*a\.mp4, .*c\.mp4\)") as caught:
        publish_all([first, second, third])
    assert caught.value.kept == tmp_path / "b-1.mp4"
    assert (tmp_path / "b.mp4").read_bytes() == b"another run's"
    for name in ("a.mp4", "b-1.mp4", "c.mp4"):
        assert (tmp_path / name).read_bytes() == b"finished"
    assert not _partials(tmp_path)


@pytest.mark.parametrize(("matte", "foreground", "message"), [
    ("out.mp4", None, "two outputs of this run would be the same file"),
    (None, "fg.mp4", "the foreground output needs a format with alpha"),
    ("m.webm", None, "format matte writes .mp4 or .m4v or .mov or .mkv files"),
])
def test_outputs_are_checked_before_any_work(tmp_path: Path, matte: str | None,
                                             foreground: str | None, message: str) -> None:
    src = tmp_path / "in.mp4"
    make_video(src, frames=3)
    engine = BrightnessEngine()
    with pytest.raises(ConfigError, match=message):
        matte_video(src, tmp_path / "out.mp4", engine=engine, background="white",
                    matte_output=None if matte is None else tmp_path / matte,
                    foreground_output=None if foreground is None else tmp_path / foreground)
    assert engine.calls == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_library_run_reports_every_output(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    make_video(src, frames=5, size=(64, 48), audio="aac")
    report = matte_video(src, tmp_path / "out.mp4", engine=BrightnessEngine(), background="blue",
                         matte_output=tmp_path / "matte.mov",
                         foreground_output=tmp_path / "fg.webm")
    assert [(o.kind, o.path.name, o.format, o.encoder) for o in report.outputs] == [
        ("composite", "out.mp4", "h264", "libx264"), ("matte", "matte.mov", "matte", "libx264"),
        ("foreground", "fg.webm", "vp9", "libvpx-vp9")]
    assert report.device == "cpu"
    for output in report.outputs:  # each a whole clip, its audio carried
        with av.open(str(output.path)) as container:
            assert len(list(container.decode(video=0))) == 5
            assert len(container.streams.audio) == 1


def test_a_batch_writes_each_kind_into_its_own_folder(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a", "b"):
        make_video(clips / f"{name}.mp4", frames=4)
    out, mattes = tmp_path / "out", tmp_path / "mattes"
    assert main(["video", str(clips), "-o", str(out), "--output-matte", str(mattes),
                 "-e", "mog2", "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.webm", "b.webm"]
    assert sorted(p.name for p in mattes.iterdir()) == ["a.mp4", "b.mp4"]


def test_a_batch_refuses_one_folder_for_two_kinds(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    make_video(clips / "a.mp4", frames=2)
    assert main(["video", str(clips), "-o", str(tmp_path / "out"), "--output-matte",
                 str(tmp_path / "out"), "-e", "mog2"]) == 2
    assert "give -o, --output-matte and --output-foreground different folders" in \
        capsys.readouterr().err
