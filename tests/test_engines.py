"""Engines: ONNX Runtime on generated graphs, MOG2 on a real static-camera clip, parity with
rembg on real models."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from media import imread, make_tiny_onnx, make_video, square_frame

import streammatte
from streammatte.errors import ChecksumError, EngineUnavailableError, ModelError
from streammatte.inference import BACKENDS, open_engine
from streammatte.inference.ort import OrtEngine, choose_providers
from streammatte.models.catalog import ModelSpec, parse_spec
from streammatte.models.store import sha256_of


def _tiny_spec(path: Path, **overrides: object) -> ModelSpec:
    table: dict[str, object] = {
        "name": "tiny", "licence": "MIT", "file": path.name, "sha256": sha256_of(path),
        "input": {"name": "input.1", "size": [32, 32], "mean": [0, 0, 0], "std": [1, 1, 1]},
        "output": {"index": 0},
    }
    table.update(overrides)
    return parse_spec(table, "tiny.toml")


def test_ort_engine_runs_a_generated_graph(tmp_path: Path) -> None:
    model = tmp_path / "tiny.onnx"
    make_tiny_onnx(model)
    with OrtEngine(_tiny_spec(model), model, device="cpu") as engine:
        assert engine.provider == "onnxruntime CPUExecutionProvider"
        assert engine.device == "cpu"
        assert engine.max_batch == 1
        matter = streammatte.Matter(engine)
        frame, truth = square_frame(3, 96, 64)
        alpha = matter.alpha(frame)
    assert alpha.shape == (64, 96)
    assert alpha.dtype == np.float32
    # the same arithmetic done by hand: area-resize to 32×32, /255, the graph, bilinear back
    small = cv2.resize(frame, (32, 32), interpolation=cv2.INTER_AREA) / 255.0
    expected = 1 / (1 + np.exp(-8 * (small.mean(axis=2) - 0.5)))
    expected = cv2.resize(expected.astype(np.float32), (96, 64), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(alpha, expected, atol=1e-5)
    inner = cv2.erode(truth, np.ones((7, 7), np.uint8)).astype(bool)
    assert alpha[inner].min() > 0.9


def test_fixed_batch_graph_runs_a_larger_batch_sample_by_sample(tmp_path: Path) -> None:
    model = tmp_path / "tiny.onnx"
    make_tiny_onnx(model, batch=1)
    with OrtEngine(_tiny_spec(model), model, device="cpu") as engine:
        batch = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
        out = engine.infer(batch)
        one = [engine.infer(batch[i:i + 1]).copy() for i in range(3)]
    assert out.shape == (3, 1, 32, 32)
    np.testing.assert_allclose(out, np.concatenate(one))


def test_dynamic_batch_graph_takes_a_batch_at_once(tmp_path: Path) -> None:
    model = tmp_path / "tiny.onnx"
    make_tiny_onnx(model, batch="N")
    with OrtEngine(_tiny_spec(model), model, device="cpu") as engine:
        assert engine.max_batch > 1
        assert engine.infer(np.zeros((4, 3, 32, 32), np.float32)).shape == (4, 1, 32, 32)


def test_graph_that_does_not_match_its_catalog_entry(tmp_path: Path) -> None:
    model = tmp_path / "tiny.onnx"
    make_tiny_onnx(model, input_name="image")
    with pytest.raises(ModelError, match=r"no input named 'input\.1'.*graph inputs: image"):
        OrtEngine(_tiny_spec(model), model, device="cpu")
    make_tiny_onnx(model, size=(16, 16))
    with pytest.raises(ModelError, match=r"input shape .* does not fit the catalog"):
        OrtEngine(_tiny_spec(model), model, device="cpu")


def test_not_an_onnx_file(tmp_path: Path) -> None:
    model = tmp_path / "junk.onnx"
    model.write_bytes(b"definitely not protobuf" * 10)
    with pytest.raises(ModelError, match=r"junk\.onnx: not a loadable ONNX model"):
        OrtEngine(_tiny_spec(model), model, device="cpu")


def test_provider_choice_is_explicit() -> None:
    assert choose_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == \
        "CUDAExecutionProvider"
    with pytest.raises(ModelError, match=r"no CUDA provider.*onnxruntime-gpu"):
        choose_providers("cuda", ["CPUExecutionProvider"])
    with pytest.raises(ModelError, match="unknown device 'tpu'"):
        choose_providers("tpu", ["CPUExecutionProvider"])


def test_unknown_engine_names_the_choices() -> None:
    with pytest.raises(ModelError, match=r"unknown engine 'u3net' \(choose from: .*u2netp"):
        open_engine("u3net")


def test_model_file_is_verified_against_the_catalog(tmp_path: Path) -> None:
    fake = tmp_path / "u2netp.onnx"
    make_tiny_onnx(fake)
    with pytest.raises(ChecksumError, match=r"u2netp\.onnx: sha256 .* does not match"):
        open_engine("u2netp", model_file=fake)


def test_missing_backend_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         u2netp_path: Path) -> None:
    monkeypatch.setitem(BACKENDS, "fake-trt", ("streammatte_missing_module:Engine", "trt"))
    with pytest.raises(EngineUnavailableError, match=r"pip install 'streammatte\[trt\]'"):
        open_engine("u2netp", model_file=u2netp_path, backend="fake-trt")


def test_importing_streammatte_loads_no_optional_backend() -> None:
    import subprocess
    import sys

    code = ("import sys, streammatte; "
            "print([m for m in ('tensorrt', 'pycuda', 'aiortc', 'aiohttp', 'pyvirtualcam') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_mog2_finds_the_people_in_vtest(shared_data: Path, tmp_path: Path) -> None:
    """Static camera, people walking: after learning the background, MOG2 marks a small,
    non-empty foreground, and it moves with the people."""
    import av

    engine = open_engine("mog2")
    fractions = []
    with av.open(str(shared_data / "media" / "vtest.avi")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= 120:
                break
            alpha = engine.infer(frame.to_ndarray(format="rgb24")[None])[0]
            fractions.append(float(alpha.mean()))
    late = fractions[60:]
    assert 0.002 < np.mean(late) < 0.2
    assert engine.stateful


def test_u2netp_end_to_end_on_a_real_clip(u2netp_path: Path, shared_data: Path,
                                          tmp_path: Path) -> None:
    """The real model through the whole pipeline on DAVIS parkour, checked against its ground
    truth: the matte must find the runner."""
    frames_dir = shared_data / "davis" / "parkour" / "frames"
    clip = tmp_path / "parkour.mkv"
    import av

    names = sorted(frames_dir.glob("*.jpg"))[:6]
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("ffv1", rate=24)
        first = imread(names[0], 1)
        stream.width, stream.height = first.shape[1], first.shape[0]
        stream.pix_fmt = "yuv444p"
        for i, name in enumerate(names):
            rgb = np.asarray(cv2.cvtColor(imread(name, 1), cv2.COLOR_BGR2RGB), np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    out = tmp_path / "matte"
    report = streammatte.matte_video(clip, out, engine="u2netp", model_file=u2netp_path,
                                     output_format="png", background="transparent")
    assert report.frames_out == 6
    ious = []
    for i, png in enumerate(sorted(out.glob("*.png"))):
        alpha = imread(png)[..., 3] > 127
        truth = imread(shared_data / "davis" / "parkour" / "masks" / f"{i:05d}.png", 0) > 127
        ious.append((alpha & truth).sum() / (alpha | truth).sum())
    assert np.mean(ious) > 0.7


@pytest.mark.parametrize("model", ["u2netp", "u2net"])
def test_parity_with_rembg_golden_mattes(model: str, shared_data: Path,
                                         request: pytest.FixtureRequest) -> None:
    """Same ONNX file, rembg's pre/post-processing reproduced: alpha within 2/255."""
    model_path: Path = request.getfixturevalue(f"{model}_path")
    golden_dir = shared_data / "rembg-golden"
    out = streammatte.matte_image(golden_dir / "anime-girl-1.jpg", None, engine=model,
                                  model_file=model_path, rembg_compat=True)
    golden = imread(golden_dir / f"anime-girl-1.{model}.png")
    diff = np.abs(out[..., 3].astype(int) - golden[..., 3].astype(int))
    assert diff.max() <= 2


def test_default_mode_differs_from_rembg_by_design(shared_data: Path, u2netp_path: Path) -> None:
    """Without rembg_compat there is no per-image min/max stretch: the result is the model's
    own probability, so it must differ from rembg's stretched matte somewhere."""
    golden_dir = shared_data / "rembg-golden"
    out = streammatte.matte_image(golden_dir / "anime-girl-1.jpg", None, engine="u2netp",
                                  model_file=u2netp_path)
    golden = imread(golden_dir / "anime-girl-1.u2netp.png")
    diff = np.abs(out[..., 3].astype(int) - golden[..., 3].astype(int))
    assert diff.max() > 2
    # …while agreeing on what is foreground
    agree = ((out[..., 3] > 127) == (golden[..., 3] > 127)).mean()
    assert agree > 0.98


def test_video_and_webm_from_real_model(u2netp_path: Path, tmp_path: Path) -> None:
    src = tmp_path / "clip.mp4"
    make_video(src, frames=3, size=(96, 64), audio="aac")
    report = streammatte.matte_video(src, tmp_path / "out.webm", model_file=u2netp_path)
    assert report.frames_out == 3
    assert report.engine.startswith("u2netp on cpu")


def test_input_size_option_reaches_the_engine(shared_data: Path, u2netp_path: Path) -> None:
    """u2netp's graph is fixed at 320×320: asking for another size must be refused, which
    shows the option is not silently dropped on its way from matte_image to the engine."""
    image = shared_data / "rembg-golden" / "anime-girl-1.jpg"
    with pytest.raises(ModelError, match=r"does not fit the catalog's nchw \(3, 256, 256\)"):
        streammatte.matte_image(image, None, engine="u2netp", model_file=u2netp_path,
                                input_size=(256, 256))
