"""The wheel carries what an installed streammatte needs, declares its extras honestly, and
installs for a user without the development tools."""

from __future__ import annotations

import email
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from streammatte.errors import EngineUnavailableError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "-w", str(out), str(REPO)], check=True, capture_output=True)
    (built,) = out.glob("streammatte-*.whl")
    return built


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(zf.read(name))


def _requires(wheel: Path) -> dict[str | None, set[str]]:
    """Requirements by extra (None: the core), markers other than the extra kept."""
    by_extra: dict[str | None, set[str]] = {}
    for line in _metadata(wheel).get_all("Requires-Dist") or []:
        requirement, _, marker = line.partition(";")
        extra = None
        if "extra ==" in marker:
            extra = marker.split("extra ==")[1].strip().strip("'\"")
        by_extra.setdefault(extra, set()).add(requirement.strip())
    return by_extra


def test_wheel_carries_catalog_and_static_files(wheel: Path, tmp_path: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    catalog = {Path(n).name for n in names if n.startswith("streammatte/_catalog/")}
    assert catalog == {p.name for p in (REPO / "engines").glob("*.toml")}
    assert "streammatte/server/static/index.html" in names
    assert "streammatte/py.typed" in names  # type checkers read the package's annotations
    # installed away from the checkout, the catalog is read from inside the package
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = ("import streammatte.models.catalog as c; "
            "print(sorted(c.load_catalog())[:3], c._catalog_dirs())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(target)})
    assert str(target / "streammatte" / "_catalog") in out.stdout
    assert str(REPO / "engines") not in out.stdout
    assert "birefnet-general" in out.stdout


def test_onnx_belongs_to_the_mediapipe_extra_and_pillow_to_the_core(wheel: Path) -> None:
    requires = _requires(wheel)
    with_onnx = {extra for extra, reqs in requires.items() if "onnx>=1.16" in reqs}
    assert with_onnx == {"mediapipe", "all", "dev"}
    assert "pillow>=10" in requires[None]  # resample.py needs it for --rembg-compat


def test_all_extra_is_every_extra_but_trt_and_dev(wheel: Path) -> None:
    requires = _requires(wheel)
    extras = set(_metadata(wheel).get_all("Provides-Extra") or [])
    assert extras >= {"all", "server", "webrtc", "vcam", "mediapipe", "bench", "eval", "trt"}
    others = set().union(*(requires[e] for e in extras - {"all", "trt", "dev"}))
    assert requires["all"] == others


def test_classifiers_and_keywords(wheel: Path) -> None:
    meta = _metadata(wheel)
    classifiers = meta.get_all("Classifier") or []
    assert "Topic :: Multimedia :: Video" in classifiers
    assert "Typing :: Typed" in classifiers
    assert f"Programming Language :: Python :: {sys.version_info[0]}.{sys.version_info[1]}" in (
        classifiers)
    assert "background removal" in (meta["Keywords"] or "")


def test_the_core_runs_without_onnx(tmp_path: Path, shared_data: Path, u2netp_path: Path) -> None:
    """onnx is only for converting MediaPipe models: images and videos run without it."""
    code = ("import sys; sys.modules['onnx'] = None; sys.argv[0] = 'streammatte'; "
            "from streammatte.cli import entry; entry()")
    out = tmp_path / "cut.png"
    image = shared_data / "rembg-golden" / "anime-girl-1.jpg"
    result = subprocess.run(
        [sys.executable, "-c", code, "image", str(image), "-o", str(out),
         "--models-dir", str(u2netp_path.parent)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0


def test_converting_mediapipe_without_onnx_names_the_extra(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from streammatte.models.tflite import tflite_to_onnx

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(EngineUnavailableError, match=r"pip install 'streammatte\[mediapipe\]'"):
        tflite_to_onnx(b"", "selfie_segmentation.tflite")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_make_install_gives_a_user_command_without_dev_tools(
        tmp_path: Path, shared_data: Path, u2netp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    done = subprocess.run(["make", "-C", str(REPO), "install", f"PREFIX={prefix}"],
                          capture_output=True, text=True, timeout=1700)
    assert done.returncode == 0, done.stdout + done.stderr
    command = prefix / "bin" / "streammatte"
    out = tmp_path / "cut.png"
    result = subprocess.run([str(command), "image",
                             str(shared_data / "rembg-golden" / "anime-girl-1.jpg"), "-o", str(out),
                             "--models-dir", str(u2netp_path.parent)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0
    bin_dir = prefix / "share" / "streammatte" / "venv" / "bin"
    assert (bin_dir / "python").exists()
    assert not any((bin_dir / tool).exists() for tool in ("pytest", "ruff", "mypy"))
    doctor = subprocess.run([str(command), "doctor"], capture_output=True, text=True,
                            timeout=300)
    assert "OK       aiohttp" in doctor.stdout  # serve works out of the box
