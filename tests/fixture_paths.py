"""Paths and the fixture-maker loader shared by tests (a plain module: test files import it).

Kept out of conftest.py because a second conftest.py (tests/finetune/) would shadow
``from conftest import ...`` when the whole suite runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

TESTS_DIR = Path(__file__).resolve().parent
REPO_DIR = TESTS_DIR.parent
SHARED_DATA = REPO_DIR.parent / "shared" / "data"


def load_maker(name: str) -> ModuleType:
    """Import tests/data/<name>/make.py as a module (it exposes ``make(out_dir)``)."""
    path = TESTS_DIR / "data" / name / "make.py"
    spec = importlib.util.spec_from_file_location(f"fixture_make_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
