"""The CPU image as a user runs it: ``make docker`` builds it, ``docker run -p … -v …:/models``
starts ``streammatte serve``, which prints its token, and ``POST /api/remove`` answers with the
same cut-out the library makes."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from media import imread

import streammatte

REPO = Path(__file__).resolve().parents[1]
IMAGE = "streammatte:test"
#: the unprivileged user the image runs as (Dockerfile)
IMAGE_UID = 1000


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def _sample_client() -> Any:
    spec = importlib.util.spec_from_file_location("api_client", REPO / "samples" / "api_client.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def docker_image() -> str:
    if shutil.which("docker") is None:
        pytest.skip("docker is not installed (Debian: apt install docker.io)")
    info = _docker("info")
    if info.returncode != 0:
        pytest.skip(f"no Docker daemon to talk to (start dockerd): {info.stderr.strip()[:200]}")
    build = subprocess.run(["make", "-C", str(REPO), "docker", f"DOCKER_IMAGE={IMAGE}"],
                           capture_output=True, text=True, timeout=3000)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return IMAGE


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_image_serves_api_remove(docker_image: str, tmp_path: Path, shared_data: Path,
                                     u2netp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the models folder is handed to the image's user with chown: needs root")
    models = tmp_path / "models"  # what -v models:/models holds after a first pull
    models.mkdir()
    shutil.copyfile(u2netp_path, models / "u2netp.onnx")
    for path in (models, models / "u2netp.onnx"):
        os.chown(path, IMAGE_UID, IMAGE_UID)
    started = _docker("run", "--detach", "--publish", "127.0.0.1::8080",
                      "--volume", f"{models}:/models", docker_image)
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        port = _docker("port", container, "8080/tcp").stdout.split(":")[-1].strip()
        token = None
        deadline = time.monotonic() + 120
        while token is None and time.monotonic() < deadline:
            logs = _docker("logs", container)
            found = re.search(r"serving on http://127\.0\.0\.1:8080/\?token=(\S+)", logs.stdout)
            token = found.group(1) if found else None
            if token is None:
                time.sleep(0.5)
        assert token is not None, f"no token printed:\n{logs.stdout}\n{logs.stderr}"

        api = _sample_client()
        server = f"http://127.0.0.1:{port}"
        image = shared_data / "rembg-golden" / "anime-girl-1.jpg"
        with pytest.raises(api.ApiError, match="HTTP 401"):
            api.Client(server).remove_background(image)
        png = tmp_path / "cut.png"
        png.write_bytes(api.Client(server, token=token).remove_background(image))

        served = imread(png)
        here = streammatte.matte_image(image, None, engine="u2netp", model_file=u2netp_path)
        assert served.shape == here.shape == (601, 850, 4)
        # the image installs the same wheels this machine runs: the same matte, give or take
        # a rounding step between ONNX Runtime builds
        diff = np.abs(served[..., 3].astype(int) - here[..., 3].astype(int))
        assert diff.max() <= 2
        assert 0.1 < (served[..., 3] > 127).mean() < 0.9
    finally:
        _docker("rm", "--force", container)
