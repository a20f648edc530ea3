"""Shared fixtures: the real data beside the project, real models, generated media."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cuda_emulation import emulated, emulated_gpu  # noqa: F401 - fixtures for the GPU tests

from streammatte.errors import ModelFetchError
from streammatte.models.catalog import get_spec
from streammatte.models.store import ModelStore, default_models_dir

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (../shared/data beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return default_models_dir()


def _pull(name: str, models_dir: Path) -> Path:
    try:
        return ModelStore(models_dir).ensure(get_spec(name))
    except ModelFetchError as exc:
        # CI sets STREAMMATTE_REQUIRE_MODELS=1: there a failed pull is a failure, not a skip
        if os.environ.get("STREAMMATTE_REQUIRE_MODELS") == "1":
            raise
        pytest.skip(f"cannot pull the real {name} model (offline?): {exc}")


@pytest.fixture(scope="session")
def pull_model(models_dir: Path) -> Callable[[str], Path]:
    """Pull a catalog model by name into the test cache (skips offline, fails in CI)."""
    return lambda name: _pull(name, models_dir)


@pytest.fixture(scope="session")
def u2netp_path(models_dir: Path) -> Path:
    return _pull("u2netp", models_dir)


@pytest.fixture(scope="session")
def u2net_path(models_dir: Path) -> Path:
    return _pull("u2net", models_dir)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
