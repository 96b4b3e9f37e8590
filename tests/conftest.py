"""Shared test fixtures: generated fixtures in real file formats, and ../shared/data."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_DIR = TESTS_DIR.parent
SHARED_DATA = REPO_DIR.parent / "shared" / "data"


def load_maker(name: str):
    """Import tests/data/<name>/make.py as a module (it exposes ``make(out_dir)``)."""
    path = TESTS_DIR / "data" / name / "make.py"
    spec = importlib.util.spec_from_file_location(f"fixture_make_{name}", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def make_fixture(tmp_path_factory) -> Callable[[str], Path]:
    """Return ``make(name) -> folder``: runs tests/data/<name>/make.py once per session."""
    cache: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in cache:
            out = tmp_path_factory.mktemp(f"fixture_{name}")
            load_maker(name).make(out)
            cache[name] = out
        return cache[name]

    return make


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout (skips the test where it is absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA
