"""environment.yml (conda users) and pyproject.toml (pip users) must list the same dependencies."""

from __future__ import annotations

import re
import tomllib

import yaml
from fixture_paths import REPO_DIR

# conda-forge names that differ from the PyPI ones
CONDA_TO_PYPI = {"pytorch": "torch", "dask": "dask[array]"}
NOT_PACKAGES = {"python", "pip"}


def _split(requirement: str) -> tuple[str, str]:
    match = re.match(r"\s*([A-Za-z0-9_.\-\[\]]+)\s*(.*)", requirement)
    assert match, requirement
    return match.group(1).lower(), match.group(2).replace(" ", "")


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    return dict(_split(r) for r in requirements)


def _conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((REPO_DIR / "environment.yml").read_text())
    result = {}
    for entry in env["dependencies"]:
        if isinstance(entry, dict):  # the pip: section installs sarlab itself
            continue
        name, spec = _split(entry)
        if name not in NOT_PACKAGES:
            result[CONDA_TO_PYPI.get(name, name)] = spec
    return result


def test_environment_yml_lists_the_same_dependencies_as_pyproject() -> None:
    pip, conda = _pyproject_requirements(), _conda_requirements()
    assert sorted(set(pip) - set(conda)) == [], "in pyproject.toml but not environment.yml"
    assert sorted(set(conda) - set(pip)) == [], "in environment.yml but not pyproject.toml"
    mismatched = {name: (pip[name], conda[name]) for name in pip if pip[name] != conda[name]}
    assert mismatched == {}, "version bounds differ (pyproject, environment.yml)"


def test_environment_yml_installs_sarlab_without_letting_pip_replace_conda_packages() -> None:
    env = yaml.safe_load((REPO_DIR / "environment.yml").read_text())
    pip_section = next(e for e in env["dependencies"] if isinstance(e, dict))["pip"]
    assert pip_section == ["--no-deps", "-e ."]
