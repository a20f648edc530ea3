"""TFLite → ONNX: the converted MediaPipe selfie models match Google's TFLite interpreter on
real frames, the conversion is byte-for-byte reproducible, and bad input fails clearly."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from streammatte.errors import ModelError, ModelFetchError
from streammatte.models.catalog import PyPISource, get_spec
from streammatte.models.store import ModelStore, sha256_of
from streammatte.models.tflite import _Table, convert_tflite, read_tflite, tflite_to_onnx

MODELS = ("mediapipe-selfie", "mediapipe-selfie-landscape")


def _raw_tflite(name: str, models_dir: Path) -> Path:
    """The .tflite a catalog entry converts, fetched once from its PyPI source."""
    spec = get_spec(name)
    source = next(s for s in spec.sources if isinstance(s, PyPISource))
    assert source.sha256 is not None
    path = models_dir / ".sources" / f"{name}.tflite"
    if path.is_file() and sha256_of(path) == source.sha256:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        ModelStore(models_dir).fetch_source(source, path)
    except ModelFetchError as exc:
        if os.environ.get("STREAMMATTE_REQUIRE_MODELS") == "1":
            raise
        pytest.skip(f"cannot fetch {source.describe()} (offline?): {exc}")
    return path


@pytest.fixture(scope="session", params=MODELS)
def tflite_model(request: pytest.FixtureRequest, models_dir: Path) -> tuple[str, Path]:
    name: str = request.param
    return name, _raw_tflite(name, models_dir)


def _frames(shared_data: Path, size: tuple[int, int]) -> list[np.ndarray]:
    """Model-ready NHWC float inputs from real DAVIS frames (the catalog's recipe: /255)."""
    out = []
    for seq, picks in (("parkour", (0, 40, 99)), ("car-shadow", (0, 20, 39))):
        for i in picks:
            bgr = cv2.imread(str(shared_data / "davis" / seq / "frames" / f"{i:05d}.jpg"))
            assert bgr is not None
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            out.append(small.astype(np.float32) / 255.0)
    return out


def test_conversion_is_reproducible_and_matches_the_catalog(
    tflite_model: tuple[str, Path], tmp_path: Path
) -> None:
    name, tflite = tflite_model
    first, second = tmp_path / "a.onnx", tmp_path / "b.onnx"
    convert_tflite(tflite, first)
    convert_tflite(tflite, second)
    assert first.read_bytes() == second.read_bytes()
    assert sha256_of(first) == get_spec(name).sha256


def test_onnx_matches_the_tflite_interpreter_on_real_frames(
    tflite_model: tuple[str, Path], shared_data: Path, tmp_path: Path
) -> None:
    interpreter_mod = pytest.importorskip("ai_edge_litert.interpreter")
    name, tflite = tflite_model
    onnx_path = tmp_path / "m.onnx"
    convert_tflite(tflite, onnx_path)
    interpreter = interpreter_mod.Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    _, h, w, _ = inp["shape"]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    foreground = 0.0
    for x in _frames(shared_data, (int(w), int(h))):
        interpreter.set_tensor(inp["index"], x[None])
        interpreter.invoke()
        expected = interpreter.get_tensor(out["index"])[0, :, :, 0]
        (got,) = session.run(None, {"input_1": x.transpose(2, 0, 1)[None]})
        worst = max(worst, float(np.abs(got[0, 0] - expected).max()))
        foreground = max(foreground, float(expected.max()))
    assert worst <= 1e-3, f"{name}: max abs diff {worst}"
    assert foreground > 0.9  # real frames with a person: the comparison is not of two zeros


def test_converted_graph_takes_a_batch(tflite_model: tuple[str, Path], tmp_path: Path) -> None:
    _, tflite = tflite_model
    onnx_path = tmp_path / "m.onnx"
    convert_tflite(tflite, onnx_path)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    assert shape[0] == "batch" and shape[1] == 3
    batch = np.random.default_rng(1).random((3, 3, shape[2], shape[3]), dtype=np.float32)
    (together,) = session.run(None, {"input_1": batch})
    apart = [session.run(None, {"input_1": batch[i:i + 1]})[0] for i in range(3)]
    np.testing.assert_allclose(together, np.concatenate(apart), atol=1e-5)


def test_store_adds_a_users_tflite_by_converting_it(tflite_model: tuple[str, Path],
                                                   tmp_path: Path) -> None:
    name, tflite = tflite_model
    store = ModelStore(tmp_path)
    path = store.add_file(get_spec(name), tflite)
    assert path.name == f"{name}.onnx"
    assert store.verify(get_spec(name)) == path


def test_not_a_tflite_file_is_rejected() -> None:
    with pytest.raises(ModelError, match=r"x\.bin: not a TFLite flatbuffer"):
        read_tflite(b"\x08\x00\x00\x00ONNX" + bytes(64), "x.bin")


def test_truncated_tflite_is_rejected(tflite_model: tuple[str, Path]) -> None:
    _, tflite = tflite_model
    data = tflite.read_bytes()
    with pytest.raises(ModelError, match="malformed TFLite flatbuffer"):
        read_tflite(data[: len(data) // 3], "cut.tflite")


def test_unsupported_operator_is_named(tflite_model: tuple[str, Path]) -> None:
    _, tflite = tflite_model
    data = bytearray(tflite.read_bytes())
    model = _Table(bytes(data), struct.unpack_from("<I", data, 0)[0])
    for code in model.tables(1):
        if code.scalar(3, "i") == 117:  # HARD_SWISH → FULLY_CONNECTED (9)
            struct.pack_into("<i", data, code.pos + code._offset(3), 9)
            struct.pack_into("<b", data, code.pos + code._offset(0), 9)
    with pytest.raises(ModelError, match=r"TFLite operator #9 is not supported"):
        tflite_to_onnx(bytes(data), "patched.tflite")


def test_catalog_sha256_is_of_the_onnx_not_the_tflite(tflite_model: tuple[str, Path]) -> None:
    name, tflite = tflite_model
    assert hashlib.sha256(tflite.read_bytes()).hexdigest() != get_spec(name).sha256
