"""Every catalog engine behind one interface.

Models whose weights cannot be fetched here (RMBG, BiRefNet, ISNet, silueta, human_seg) run
the full path on a generated graph with the entry's input name, shape and dtype, and a
user-supplied file is checked against the published checksum before use. MODNet and the
MediaPipe selfie models run for real on DAVIS frames.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

import streammatte
from streammatte.errors import ChecksumError, ConfigError, ModelError, ModelFetchError
from streammatte.inference import NonCommercialModelWarning, open_engine
from streammatte.inference.ort import OrtEngine
from streammatte.models.catalog import ModelSpec, get_spec
from streammatte.models.store import ModelStore, sha256_of
from streammatte.preprocess import resize_rgb

UNFETCHABLE = ("rmbg-1.4", "rmbg-1.4-fp16", "rmbg-1.4-quantized", "rmbg-2.0", "birefnet-general",
               "birefnet-general-lite", "birefnet-portrait", "isnet-general-use", "silueta",
               "u2net_human_seg")
GAIN = 4.0


def make_standin(path: Path, spec: ModelSpec, *, input_name: str | None = None,
                 shape: list[int | str] | None = None, dtype: str = "float32",
                 outputs: int = 2) -> None:
    """A graph shaped like ``spec``'s model: out0 = GAIN·mean over channels (+ a sigmoid
    where the catalog reads a probability), extra outputs are decoys."""
    import onnx
    from onnx import TensorProto, helper

    w, h = spec.input.size or (64, 64)
    name = input_name or spec.input.name or "input"
    elem = TensorProto.FLOAT16 if dtype == "float16" else (
        TensorProto.UINT8 if dtype == "uint8" else TensorProto.FLOAT)
    shape_in = shape or [1, 3, h, w]
    nodes = [helper.make_node("Cast", [name], ["x32"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["x32", "axes"], ["m"], keepdims=1),
             helper.make_node("Mul", ["m", "gain"], ["logit"])]
    last = "logit"
    if spec.output.activation == "none":
        nodes.append(helper.make_node("Sigmoid", ["logit"], ["prob"]))
        last = "prob"
    nodes.append(helper.make_node("Cast", [last], ["out0"], to=elem))
    for k in range(1, outputs):
        nodes.append(helper.make_node("Neg", ["logit"], [f"neg{k}"]))
        nodes.append(helper.make_node("Cast", [f"neg{k}"], [f"out{k}"], to=elem))
    out_shape: list[int | str] = [shape_in[0], 1, *shape_in[2:]] if len(shape_in) == 4 else [1]
    graph = helper.make_graph(
        nodes, "standin",
        [helper.make_tensor_value_info(name, elem, shape_in)],
        [helper.make_tensor_value_info(f"out{k}", elem, out_shape) for k in range(outputs)],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("gain", TensorProto.FLOAT, [], [GAIN])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _pinned(spec: ModelSpec, path: Path) -> ModelSpec:
    """``spec`` with its checksum replaced by the stand-in's (the catalog's own is kept for
    the verification tests)."""
    return dataclasses.replace(spec, sha256=sha256_of(path), md5=None, size_bytes=None)


def _frame(shared_data: Path, seq: str = "parkour", index: int = 40) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    bgr = cv2.imread(str(shared_data / "davis" / seq / "frames" / f"{index:05d}.jpg"))
    mask = cv2.imread(str(shared_data / "davis" / seq / "masks" / f"{index:05d}.png"), 0)
    assert bgr is not None and mask is not None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (mask > 127).astype(np.float32)


def iou(alpha: np.ndarray, truth: np.ndarray) -> float:
    # kept local so this file does not depend on streammatte.metrics (issue 4, landing apart)
    p, t = alpha >= 0.5, truth >= 0.5
    union = np.count_nonzero(p | t)
    return float(np.count_nonzero(p & t) / union) if union else 1.0


def _expected_alpha(spec: ModelSpec, image: np.ndarray) -> np.ndarray:
    """The stand-in's alpha worked out by hand from the catalog's recipe."""
    w, h = spec.input.size or (image.shape[1], image.shape[0])
    small = resize_rgb(image, (w, h)).astype(np.float64) / 255.0
    sample = (small - np.asarray(spec.input.mean)) / np.asarray(spec.input.std)
    alpha = 1.0 / (1.0 + np.exp(-GAIN * sample.mean(axis=2)))
    full: np.ndarray = cv2.resize(alpha.astype(np.float32), (image.shape[1], image.shape[0]),
                                  interpolation=cv2.INTER_LINEAR)
    return full


# -- stand-ins for the models that cannot be fetched here -------------------------------------

@pytest.mark.parametrize("name", UNFETCHABLE)
def test_standin_drives_the_full_path(name: str, tmp_path: Path, shared_data: Path) -> None:
    spec = get_spec(name)
    model = tmp_path / spec.file
    make_standin(model, spec, dtype="float16" if name.endswith("fp16") else "float32")
    image, _ = _frame(shared_data)
    with OrtEngine(_pinned(spec, model), model, device="cpu") as engine:
        alpha = streammatte.Matter(engine).alpha(image)
    assert alpha.shape == image.shape[:2] and alpha.dtype == np.float32
    tol = 2e-3 if name.endswith("fp16") else 1e-4
    np.testing.assert_allclose(alpha, _expected_alpha(spec, image), atol=tol)


@pytest.mark.parametrize("name", UNFETCHABLE)
def test_users_file_is_checked_against_the_published_checksum(name: str, tmp_path: Path) -> None:
    spec = get_spec(name)
    model = tmp_path / spec.file
    make_standin(model, spec)
    algorithm, digest = spec.checksum
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonCommercialModelWarning)
        with pytest.raises(ChecksumError, match=rf"{spec.file}: {algorithm} .* does not match "
                           rf"the catalog's {digest} for {name}"):
            open_engine(name, model_file=model, models_dir=tmp_path / "cache", device="cpu")
    assert not (tmp_path / "cache").exists()  # the file was neither used nor cached


def test_users_file_is_not_added_to_the_cache_when_it_does_not_verify(tmp_path: Path) -> None:
    spec = get_spec("birefnet-general-lite")
    model = tmp_path / "download.onnx"
    make_standin(model, spec)
    with pytest.raises(ChecksumError, match="md5"):
        ModelStore(tmp_path / "cache").add_file(spec, model)
    assert list((tmp_path / "cache").iterdir()) == []


def test_rmbg_2_warns_that_it_is_non_commercial(tmp_path: Path) -> None:
    model = tmp_path / "rmbg-2.0.onnx"
    make_standin(model, get_spec("rmbg-2.0"))
    with pytest.warns(NonCommercialModelWarning, match="CC-BY-NC-4.0: not for commercial use"), \
            pytest.raises(ChecksumError):
        open_engine("rmbg-2.0", model_file=model, device="cpu")


def test_fixed_batch_standin_splits_a_batch(tmp_path: Path) -> None:
    spec = get_spec("birefnet-general")
    model = tmp_path / "b.onnx"
    make_standin(model, spec)
    with OrtEngine(_pinned(spec, model), model, device="cpu") as engine:
        assert engine.max_batch == 1
        batch = np.random.default_rng(2).random((3, 3, 1024, 1024), dtype=np.float32)
        assert engine.infer(batch).shape == (3, 1, 1024, 1024)


# -- graphs that do not match their catalog entry ---------------------------------------------

def _open_standin(tmp_path: Path, spec: ModelSpec, **kwargs: object) -> None:
    model = tmp_path / "m.onnx"
    make_standin(model, spec, **kwargs)  # type: ignore[arg-type]
    OrtEngine(_pinned(spec, model), model, device="cpu").close()


def test_graph_without_the_catalogs_input_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"m\.onnx: no input named 'input' as the catalog entry "
                       r"rmbg-1.4 expects \(graph inputs: pixel_values\)"):
        _open_standin(tmp_path, get_spec("rmbg-1.4"), input_name="pixel_values")


def test_graph_with_other_channels_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"has 1 channels; the catalog entry silueta feeds RGB"):
        _open_standin(tmp_path, get_spec("silueta"), shape=[1, 1, 320, 320])


def test_graph_with_another_size_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"input shape \(1, 3, 512, 512\) does not fit the "
                       r"catalog's nchw \(3, 1024, 1024\) for isnet-general-use"):
        _open_standin(tmp_path, get_spec("isnet-general-use"), shape=[1, 3, 512, 512])


def test_graph_with_a_flat_input_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"expects a 4-D nchw image batch"):
        _open_standin(tmp_path, get_spec("u2net_human_seg"), shape=[1, 3 * 320 * 320])


def test_graph_with_uint8_input_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"input 'input' is uint8; the catalog entry rmbg-1.4 "
                       r"feeds float32"):
        _open_standin(tmp_path, get_spec("rmbg-1.4"), dtype="uint8")


def test_fixed_graph_under_a_short_side_entry_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"is fixed, but the catalog entry modnet sizes its "
                       r"input from each frame \(short side 512, ×32\)"):
        _open_standin(tmp_path, get_spec("modnet"), shape=[1, 3, 512, 512])


def test_file_that_is_not_onnx_is_rejected(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"<html>403 Forbidden</html>")
    spec = _pinned(get_spec("silueta"), junk)
    with pytest.raises(ModelError, match=r"junk\.onnx: not a loadable ONNX model"):
        OrtEngine(spec, junk, device="cpu")


def test_missing_model_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"gone\.onnx: model file not found \(expected silueta"):
        open_engine("silueta", model_file=tmp_path / "gone.onnx")


def test_unknown_engine_name_lists_the_choices() -> None:
    with pytest.raises(ModelError, match=r"unknown engine 'rmbg-3' \(choose from: .*modnet"):
        open_engine("rmbg-3")


def test_uncached_model_without_reachable_source_writes_nothing(tmp_path: Path) -> None:
    spec = dataclasses.replace(get_spec("silueta"),
                               sources=get_spec("silueta").sources[:0])
    with pytest.raises(ModelFetchError, match="lists no source"):
        ModelStore(tmp_path / "cache").pull(spec)
    assert not (tmp_path / "cache").exists()


# -- real models: MODNet, MediaPipe selfie ----------------------------------------------------

@pytest.mark.network
def test_modnet_mattes_a_person_at_a_chosen_short_side(
        models_dir: Path, shared_data: Path, pull_model: Callable[[str], Path]) -> None:
    pull_model("modnet")
    # frames where the runner is large enough for a portrait model at 256 px
    frames = [_frame(shared_data, "parkour", i) for i in (40, 60)]
    # 256 instead of the native 512: the user-chosen size path, and 4× less CPU for CI
    with open_engine("modnet", models_dir=models_dir, device="cpu", short_side=256) as engine:
        assert engine.input_spec.target_size(854, 480) == (448, 256)
        assert engine.max_batch > 1
        matter = streammatte.Matter(engine)
        samples = [matter.preprocess(image) for image, _ in frames]
        assert samples[0].shape == (3, 256, 448)
        together = engine.infer(np.stack(samples)).copy()
        apart = np.concatenate([engine.infer(s[None]).copy() for s in samples])
        np.testing.assert_allclose(together, apart, atol=1e-4)
        scores = [iou(matter.postprocess(raw, (854, 480)), truth)
                  for raw, (_, truth) in zip(together, frames, strict=True)]
    assert min(scores) > 0.8, scores


@pytest.mark.network
@pytest.mark.parametrize("name", ["mediapipe-selfie", "mediapipe-selfie-landscape"])
def test_mediapipe_selfie_finds_the_person(name: str, models_dir: Path,
                                           shared_data: Path,
                                           pull_model: Callable[[str], Path]) -> None:
    pull_model(name)
    image, truth = _frame(shared_data, "parkour", 40)
    with open_engine(name, models_dir=models_dir, device="cpu") as engine:
        alpha = streammatte.Matter(engine).alpha(image)
    assert alpha.shape == truth.shape
    assert iou(alpha, truth) > 0.3
    assert alpha[truth == 0].mean() < 0.05  # background stays background


def test_input_size_a_fixed_graph_cannot_take_is_refused(u2netp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"input shape \(1, 3, 320, 320\) does not fit the "
                       r"catalog's nchw \(3, 512, 512\) for u2netp"):
        open_engine("u2netp", model_file=u2netp_path, device="cpu", input_size=(512, 512))


def test_input_size_breaking_multiple_of_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="short side 300: this model needs a multiple of 32"):
        open_engine("modnet", short_side=300)


@pytest.mark.network
def test_bench_scores_a_real_model_against_davis(models_dir: Path, shared_data: Path,
                                                pull_model: Callable[[str], Path]) -> None:
    pytest.importorskip("streammatte.metrics")
    from streammatte.models.bench import format_table, run_bench

    path = pull_model("mediapipe-selfie-landscape")
    spec = get_spec("mediapipe-selfie-landscape")
    (result,) = run_bench([(spec, path)], shared_data / "davis", sequences=["parkour"],
                          stride=50, threads=1)
    assert result.input_size == "256×144"
    assert result.infer_ms > 0 and result.total_ms >= result.infer_ms
    (score,) = result.scores
    assert score.frames == 2
    with open_engine("mediapipe-selfie-landscape", models_dir=models_dir, device="cpu") as e:
        matter = streammatte.Matter(e)
        expected = np.mean([iou(matter.alpha(img), truth)
                            for img, truth in (_frame(shared_data, "parkour", i) for i in (0, 50))])
    assert score.iou == pytest.approx(expected, abs=1e-6)
    assert "| mediapipe-selfie-landscape | 256×144 |" in format_table([result])
