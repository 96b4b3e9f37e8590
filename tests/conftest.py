"""Shared test fixtures: generated fixtures in real file formats, and ../shared/data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fixture_paths import REPO_DIR, SHARED_DATA, TESTS_DIR, load_maker

__all__ = ["REPO_DIR", "SHARED_DATA", "TESTS_DIR", "load_maker"]


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


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Iterator[Path]:
    """The embedded default dataset, generated once per session into a private data dir.

    ``SARLAB_DATA_DIR`` points there until the session ends, so notebooks run by the
    pipeline tests (kernels inherit the environment) find it instead of generating it
    again into the user's cache.
    """
    from sarlab.simulate.demo import ensure_demo_data

    data_dir = tmp_path_factory.mktemp("sarlab_data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SARLAB_DATA_DIR", str(data_dir))
        yield ensure_demo_data(data_dir, progress=False)
