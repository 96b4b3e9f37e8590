"""Throwaway projects for runner tests: a git repository with the test notebooks and pipelines.

A plain module (test files import it), like fixture_paths.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fixture_paths import TESTS_DIR

NOTEBOOKS = TESTS_DIR / "data" / "notebooks"
GIT = ["git", "-c", "user.name=sarlab", "-c", "user.email=t@example.invalid"]
GIT += ["-c", "commit.gpgsign=false"]

CHAIN = """name: chain
description: a producer writes a model folder, a consumer reads it by reference
steps:
  - notebook: notebooks/producer.ipynb
    name: produce
    parameters: {seed: 3, value: 1.5}
    outputs: [model]
  - notebook: notebooks/consumer.ipynb
    name: consume
    parameters: {model: "${produce.model}"}
"""


def make_project(root: Path, pipelines: Mapping[str, str]) -> Path:
    """``root`` with notebooks/, pipelines/<name>.yaml, a pyproject.toml and one git commit."""
    shutil.copytree(NOTEBOOKS, root / "notebooks")
    (root / "pipelines").mkdir()
    for name, text in pipelines.items():
        (root / "pipelines" / f"{name}.yaml").write_text(text)
    (root / "README.md").write_text("test project\n")
    (root / "pyproject.toml").write_text("[project]\nname = 'fixture'\n")  # marks the root
    if shutil.which("git"):
        for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "fixture"]):
            subprocess.run([*GIT, *command], cwd=root, check=True, capture_output=True)
    return root


def record(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "run.json").read_text())


def statuses(run: Mapping[str, Any]) -> dict[str, str]:
    return {step["name"]: step["status"] for step in run["steps"]}
