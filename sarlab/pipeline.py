"""Pipeline files: which notebooks a run executes, with which parameters, checked up front.

A pipeline is YAML (read with ``yaml.safe_load``)::

    name: smoke
    description: every notebook on tiny data
    defaults: {smoke: true}          # given to every notebook that declares the parameter
    sweep:                           # optional: one run per point (see sarlab.sweep)
      grid: {finetune.seed: [0, 1, 2]}   # cartesian product of the lists
      points: [{regime: frozen}, {regime: full}]   # explicit points (times the grid)
      workers: 2                     # runs at once (default: CPU cores)
    steps:
      - notebook: notebooks/01_pretrain.ipynb   # relative to the pipeline file or the repo root
        name: pretrain                           # optional; default: the notebook's stem
        parameters: {steps: 300}
        outputs: [checkpoint]                    # files/folders it must leave in the run folder
        timeout: 600                             # optional: seconds any one cell may run
        time_limit: 1800                         # optional: seconds the whole notebook may run
      - notebook: notebooks/03_finetune.ipynb
        name: finetune
        parameters: {checkpoint: "${pretrain.checkpoint}"}   # an artifact, by name
        needs: [pretrain]                        # optional: whose artifacts it reads

``${STEP.OUTPUT}`` is replaced at run time by the path of that step's output in the run
folder, and makes the step depend on it. ``needs`` lists the earlier steps whose artifacts a
step reads (their hashes are part of its cache key, see :mod:`sarlab.run_cache`); without
it a step depends on every earlier step.

Mistakes are caught here, not twenty minutes into a run: unknown keys, missing notebooks,
parameters the notebook's ``parameters`` cell does not declare, and values that do not match
the cell's type hints (``n: int = 3`` rejects ``"three"``), references to outputs no earlier
step declares. Every error names the pipeline file, the step and the parameter. A default
(or a ``--set`` without a step) goes to every notebook that declares it, and must be
declared by at least one.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sarlab.errors import PipelineError
from sarlab.params import NotebookParameter, conform, notebook_parameters

__all__ = ["Pipeline", "Step", "SweepSpec", "find_repo_root", "load_pipeline", "resolve_refs"]

PIPELINE_KEYS = {"name", "description", "defaults", "sweep", "steps"}
STEP_KEYS = {"notebook", "name", "parameters", "timeout", "time_limit", "outputs", "needs"}
SWEEP_KEYS = {"grid", "points", "workers"}
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
REF = re.compile(r"^\$\{([A-Za-z0-9][A-Za-z0-9_-]*)\.([^{}]+)\}$")


@dataclass(frozen=True)
class Step:
    """One notebook execution; ``parameters`` are the values injected (already type-checked)."""

    name: str
    notebook: Path
    parameters: dict[str, Any]
    declared: dict[str, NotebookParameter]
    timeout: float | None = None  # seconds per cell
    time_limit: float | None = None  # seconds for the whole notebook
    outputs: tuple[str, ...] = ()  # paths under the run folder the step must leave
    needs: tuple[str, ...] = ()  # earlier steps whose artifacts it reads

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
class SweepSpec:
    """The runs a sweep expands to: each point is a mapping of ``--set`` style overrides."""

    points: tuple[dict[str, Any], ...]
    workers: int | None = None

    @property
    def varied(self) -> list[str]:
        """The override keys whose value differs between points (for tables)."""
        keys = dict.fromkeys(k for point in self.points for k in point)
        return [k for k in keys if len({repr(p.get(k)) for p in self.points}) > 1]


@dataclass(frozen=True)
class Pipeline:
    name: str
    description: str
    path: Path
    root: Path
    defaults: dict[str, Any]
    steps: tuple[Step, ...]
    sweep: SweepSpec | None = None
    text: str = ""  # the YAML as read: run.json keeps it so a run can be rerun exactly


def resolve_refs(parameters: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """Parameters with every ``${STEP.OUTPUT}`` replaced by that output's path in ``run_dir``."""
    resolved = {}
    for key, value in parameters.items():
        match = REF.match(value) if isinstance(value, str) else None
        resolved[key] = str(run_dir / match.group(2)) if match else value
    return resolved


def find_repo_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` holding pyproject.toml or .git (else ``start``)."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() or (folder / ".git").exists():
            return folder
    return start


def load_pipeline(
    path: str | Path, overrides: Mapping[str, Any] | None = None, *, text: str | None = None
) -> Pipeline:
    """Read and validate a pipeline file; ``overrides`` keys are ``step.param`` or ``param``.

    ``text`` replaces the file's content (a rerun uses the YAML its run.json kept); notebook
    paths are still resolved from ``path``.
    """
    path = Path(path)
    try:
        if text is None:
            text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
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
    names = [raw["name"] for raw in raw_steps]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PipelineError(path, f"step names must be unique; give 'name' to {duplicates}")
    sweep = _read_sweep(path, data.get("sweep"))

    global_overrides, step_overrides = _split_overrides(path, overrides or {}, names)
    declared = {raw["name"]: notebook_parameters(raw["notebook"]) for raw in raw_steps}
    for source, values in (("defaults", defaults), ("--set", global_overrides)):
        for param in values:
            if not any(param in d for d in declared.values()):
                raise PipelineError(
                    path, f"{source}: parameter {param!r} is not declared by any step's notebook"
                )

    steps: list[Step] = []
    for raw in raw_steps:
        name, notebook, known = raw["name"], raw["notebook"], declared[raw["name"]]
        merged = {k: v for k, v in defaults.items() if k in known}
        merged.update(raw["parameters"])
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
        needs = _needs(path, name, raw, checked, steps)
        timeouts = raw["timeout"], raw["time_limit"]
        steps.append(Step(name, notebook, checked, known, *timeouts, raw["outputs"], needs))
    info = data["name"], data["description"], path.resolve(), root, defaults
    return Pipeline(*info, tuple(steps), sweep, text)


def _needs(path: Path, name: str, raw: dict, parameters: dict, earlier: list[Step]) -> tuple:
    """The earlier steps this one reads: ``needs`` plus referenced ones (default: all)."""
    outputs = {step.name: step.outputs for step in earlier}
    referenced = []
    for param, value in parameters.items():
        match = REF.match(value) if isinstance(value, str) else None
        if not match:
            continue
        source, output = match.groups()
        if source not in outputs:
            raise PipelineError(
                path, f"step {name!r}: parameter {param!r}: {value} names no earlier step"
            )
        if output not in outputs[source]:
            declared = ", ".join(outputs[source]) or "none"
            raise PipelineError(
                path,
                f"step {name!r}: parameter {param!r}: step {source!r} declares no output "
                f"{output!r} (its outputs: {declared})",
            )
        referenced.append(source)
    if raw["needs"] is None:
        return tuple(outputs)
    for need in raw["needs"]:
        if need not in outputs:
            raise PipelineError(path, f"step {name!r}: needs {need!r}, which is no earlier step")
    return tuple(dict.fromkeys([*raw["needs"], *referenced]))


def _read_sweep(path: Path, data: Any) -> SweepSpec | None:
    """The sweep section -> every point (``points`` times the cartesian ``grid``)."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise PipelineError(path, "'sweep' must be a mapping with 'grid' and/or 'points'")
    _check_keys(path, "sweep", data, SWEEP_KEYS)
    grid = data.get("grid") or {}
    points = data.get("points") or [{}]
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise PipelineError(path, "sweep: 'grid' must map STEP.PARAM (or PARAM) to a list")
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise PipelineError(path, "sweep: 'points' must be a list of mappings")
    if not grid and points == [{}]:
        raise PipelineError(path, "sweep: give a 'grid' or 'points'")
    workers = data.get("workers")
    if workers is not None and (not isinstance(workers, int) or workers < 1 or workers is True):
        raise PipelineError(path, "sweep: 'workers' must be a positive integer")
    expanded = [
        {**point, **dict(zip(grid, values, strict=True))}
        for point in points
        for values in itertools.product(*grid.values())
    ]
    return SweepSpec(tuple(expanded), workers)


def _check_keys(path: Path, where: str, data: dict, allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise PipelineError(
            path, f"{where}: unknown key(s) {unknown}; allowed: {', '.join(sorted(allowed))}"
        )


def _seconds(path: Path, name: str, data: dict, key: str) -> float | None:
    value = data.get(key)
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
    ):
        raise PipelineError(path, f"step {name!r}: '{key}' must be a positive number of seconds")
    return None if value is None else float(value)


def _names(path: Path, name: str, data: dict, key: str) -> tuple[str, ...] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PipelineError(path, f"step {name!r}: '{key}' must be a list of names")
    return tuple(value)


def _read_step(path: Path, root: Path, index: int, data: Any) -> dict[str, Any]:
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
    outputs = _names(path, name, data, "outputs") or ()
    for output in outputs:
        parts = Path(output).parts
        if Path(output).is_absolute() or ".." in parts or output.startswith("."):
            raise PipelineError(
                path, f"step {name!r}: output {output!r} must be a path inside the run folder"
            )
    return {
        "name": name,
        "notebook": notebook,
        "parameters": dict(parameters),
        "timeout": _seconds(path, name, data, "timeout"),
        "time_limit": _seconds(path, name, data, "time_limit"),
        "outputs": outputs,
        "needs": _names(path, name, data, "needs"),
    }


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
