"""Pipeline files: which notebooks a run executes, with which parameters, checked up front.

A pipeline is YAML (read with ``yaml.safe_load``)::

    name: smoke
    description: every notebook on tiny data
    defaults: {smoke: true}          # given to every notebook that declares the parameter
    steps:
      - notebook: notebooks/00_sar_primer.ipynb   # relative to the pipeline file or the repo root
        name: primer                               # optional; default: the notebook's stem
        parameters: {n_looks: 4}
        timeout: 600                               # optional: seconds any one cell may run

Mistakes are caught here, not twenty minutes into a run: unknown keys, missing notebooks,
parameters the notebook's ``parameters`` cell does not declare, and values that do not match
the cell's type hints (``n: int = 3`` rejects ``"three"``). Every error names the pipeline
file, the step and the parameter. A default (or a ``--set`` without a step) goes to every
notebook that declares it, and must be declared by at least one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sarlab.errors import PipelineError
from sarlab.params import NotebookParameter, conform, notebook_parameters

__all__ = ["Pipeline", "Step", "find_repo_root", "load_pipeline"]

PIPELINE_KEYS = {"name", "description", "defaults", "steps"}
STEP_KEYS = {"notebook", "name", "parameters", "timeout"}
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Step:
    """One notebook execution; ``parameters`` are the values injected (already type-checked)."""

    name: str
    notebook: Path
    parameters: dict[str, Any]
    declared: dict[str, NotebookParameter]
    timeout: float | None = None

    def resolved_parameters(self) -> dict[str, Any]:
        """Every declared parameter with the value it runs with (source text if not a literal)."""
        values: dict[str, Any] = {}
        for name, declared in self.declared.items():
            values[name] = (
                declared.default if declared.has_literal_default else declared.default_source
            )
        values.update(self.parameters)
        return values


@dataclass(frozen=True)
class Pipeline:
    name: str
    description: str
    path: Path
    root: Path
    defaults: dict[str, Any]
    steps: tuple[Step, ...]


def find_repo_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` holding pyproject.toml or .git (else ``start``)."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() or (folder / ".git").exists():
            return folder
    return start


def load_pipeline(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Pipeline:
    """Read and validate a pipeline file; ``overrides`` keys are ``step.param`` or ``param``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise PipelineError(path, "pipeline file does not exist") from error
    except yaml.YAMLError as error:
        raise PipelineError(path, f"not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise PipelineError(path, "expected a mapping with name, description and steps")
    _check_keys(path, "pipeline", data, PIPELINE_KEYS)
    for key in ("name", "description"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise PipelineError(path, f"'{key}' must be a non-empty string")
    if not SAFE_NAME.match(data["name"]):
        raise PipelineError(path, f"name {data['name']!r} may use only letters, digits, _ and -")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise PipelineError(path, "'defaults' must be a mapping of parameter: value")
    steps_data = data.get("steps")
    if not isinstance(steps_data, list) or not steps_data:
        raise PipelineError(path, "'steps' must be a non-empty list")

    root = find_repo_root(path.parent)
    raw_steps = [_read_step(path, root, i, s) for i, s in enumerate(steps_data)]
    names = [name for name, *_ in raw_steps]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PipelineError(path, f"step names must be unique; give 'name' to {duplicates}")

    global_overrides, step_overrides = _split_overrides(path, overrides or {}, names)
    declared = {name: notebook_parameters(notebook) for name, notebook, *_ in raw_steps}
    for source, values in (("defaults", defaults), ("--set", global_overrides)):
        for param in values:
            if not any(param in d for d in declared.values()):
                raise PipelineError(
                    path, f"{source}: parameter {param!r} is not declared by any step's notebook"
                )

    steps = []
    for name, notebook, parameters, timeout in raw_steps:
        known = declared[name]
        merged = {k: v for k, v in defaults.items() if k in known}
        merged.update(parameters)
        merged.update({k: v for k, v in global_overrides.items() if k in known})
        merged.update(step_overrides.get(name, {}))
        from_set = set(step_overrides.get(name, {})) | (set(global_overrides) & set(known))
        checked = {}
        for param, value in merged.items():
            where = f"step {name!r} ({notebook.name})" + (" --set" if param in from_set else "")
            if param not in known:
                declared_names = ", ".join(sorted(known)) or "none"
                raise PipelineError(
                    path,
                    f"{where}: unknown parameter {param!r}; "
                    f"the notebook's parameters cell declares: {declared_names}",
                )
            try:
                checked[param] = conform(value, known[param])
            except TypeError as error:
                raise PipelineError(path, f"{where}: parameter {param!r}: {error}") from error
        steps.append(Step(name, notebook, checked, known, timeout))
    return Pipeline(data["name"], data["description"], path.resolve(), root, defaults, tuple(steps))


def _check_keys(path: Path, where: str, data: dict, allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise PipelineError(
            path, f"{where}: unknown key(s) {unknown}; allowed: {', '.join(sorted(allowed))}"
        )


def _read_step(
    path: Path, root: Path, index: int, data: Any
) -> tuple[str, Path, dict, float | None]:
    where = f"step {index + 1}"
    if not isinstance(data, dict):
        raise PipelineError(path, f"{where}: expected a mapping with 'notebook'")
    _check_keys(path, where, data, STEP_KEYS)
    if not isinstance(data.get("notebook"), str):
        raise PipelineError(path, f"{where}: 'notebook' (a path) is required")
    relative = Path(data["notebook"])
    candidates = [relative] if relative.is_absolute() else [path.parent / relative, root / relative]
    notebook = next((c.resolve() for c in candidates if c.is_file()), None)
    if notebook is None:
        tried = " or ".join(str(c) for c in dict.fromkeys(candidates))
        raise PipelineError(
            path, f"{where}: notebook {data['notebook']!r} not found (tried {tried})"
        )
    name = data.get("name", notebook.stem)
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise PipelineError(
            path, f"{where}: step name {name!r} may use only letters, digits, _ and - (set 'name')"
        )
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise PipelineError(path, f"step {name!r}: 'parameters' must be a mapping")
    timeout = data.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise PipelineError(path, f"step {name!r}: 'timeout' must be a positive number of seconds")
    return name, notebook, dict(parameters), None if timeout is None else float(timeout)


def _split_overrides(
    path: Path, overrides: Mapping[str, Any], step_names: list[str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    global_overrides: dict[str, Any] = {}
    per_step: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        step, dot, param = key.rpartition(".")
        if not dot:
            global_overrides[key] = value
            continue
        if step not in step_names:
            raise PipelineError(
                path, f"--set {key}: no step named {step!r}; steps: {', '.join(step_names)}"
            )
        per_step.setdefault(step, {})[param] = value
    return global_overrides, per_step
