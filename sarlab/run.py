"""``sarlab run PIPELINE``: execute a pipeline's notebooks with papermill and write a report folder.

reports/<run_id>/ receives, per step, the executed notebook (``<step>.ipynb``) and its
code-free offline HTML (``<step>.html``), the whole run as one document (``report.html``,
see :mod:`sarlab.report_html`), the artifacts the notebooks write (checkpoints,
embeddings, tables) and ``run.json`` (see :mod:`sarlab.report`); reports/index.html lists
every run. Each file is written atomically and run.json is rewritten after every step, so
a crash leaves a record saying ``running``, never ``ok``.

A step whose inputs did not change since an earlier successful run in the same reports
folder is restored from it instead of run again (:mod:`sarlab.run_cache`); ``force``
reruns everything or the named steps. A pipeline with a ``sweep`` section expands into one
run per point, executed in parallel (:mod:`sarlab.sweep`). ``--rerun RUN_ID`` runs a
recorded run again from its run.json and says whether the metrics came out identical.
Under torchrun every rank executes the notebooks and rank 0 alone writes the run
(:mod:`sarlab.run_ranks`).

A failing cell fails its step and the run; the remaining steps are skipped and recorded as
such; the executed notebook, error included, is still exported to HTML. Ctrl-C records the
run as ``interrupted`` before the exception goes on.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from sarlab.errors import InputError, PipelineError
from sarlab.pipeline import Pipeline, Step, load_pipeline, resolve_refs
from sarlab.provenance import data_provenance, hardware_info, read_step_metrics, seeds_of
from sarlab.report import new_run_record, utc_now, write_run_record
from sarlab.report_html import REPORT_FILE, write_run_report
from sarlab.report_index import write_index
from sarlab.run_cache import (
    cache_key,
    code_version,
    find_cached,
    new_artifacts,
    restore_cached,
    snapshot,
    step_lock,
)
from sarlab.run_ranks import follow_run, torchrun_rank, torchrun_run_id
from sarlab.run_step import execute_notebook, export_step, finished, select_kernel

__all__ = ["RunResult", "StepResult", "run_pipeline", "select_kernel"]

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class StepResult:
    name: str
    status: str  # ok | cached | failed | skipped
    notebook: Path | None
    html: Path | None
    error: dict[str, Any] | None


@dataclass(frozen=True)
class RunResult:
    run_id: str
    run_dir: Path
    status: str  # ok | failed | interrupted
    steps: tuple[StepResult, ...]
    record: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def report(self) -> Path:
        return self.run_dir / REPORT_FILE


def _make_run_dir(reports_dir: Path, run_id: str | None, pipeline_name: str) -> Path:
    reports_dir.mkdir(parents=True, exist_ok=True)
    if run_id is not None:
        if not RUN_ID.match(run_id):
            raise InputError(None, f"run id {run_id!r} may use only letters, digits, _ . and -")
        run_dir = reports_dir / run_id
        try:
            run_dir.mkdir()
        except FileExistsError as error:
            raise InputError(run_dir, "a run with this id already exists") from error
        return run_dir
    base = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{pipeline_name}"
    for suffix in ["", *(f"-{i}" for i in range(2, 1000))]:
        try:
            (reports_dir / (base + suffix)).mkdir()
            return reports_dir / (base + suffix)
        except FileExistsError:
            continue
    raise InputError(reports_dir, f"cannot find a free run folder name for {base}")


def _run_step(
    pipeline: Pipeline, step: Step, run_dir: Path, kernel: str, record: dict, progress: bool
) -> dict:
    """Execute and export one step; returns the fields to merge into its run.json entry."""
    started = time.perf_counter()
    before = snapshot(run_dir)
    nb, error = execute_notebook(
        step.notebook, step.name, resolve_refs(step.parameters, run_dir), run_dir, kernel,
        timeout=step.timeout, time_limit=step.time_limit, progress=progress,
    )  # fmt: skip
    artifacts = new_artifacts(run_dir, before, {s.name for s in pipeline.steps})
    missing = [output for output in step.outputs if not (run_dir / output).exists()]
    if missing and error is None:
        error = {
            "name": "MissingOutput",
            "message": f"the notebook did not write its declared output(s) {missing} "
            "in the run folder",
        }
    status = "failed" if error else "ok"
    entry = next(e for e in record["steps"] if e["name"] == step.name)
    html, offline, export_error = export_step(
        nb, record, entry, status, run_dir, step.notebook.parent
    )
    if export_error and error is None:
        status, error = "failed", {"name": "HTMLExportError", "message": export_error}
    elif export_error:
        error["html_export"] = export_error
    outputs = {"notebook": f"{step.name}.ipynb", **({"html": html} if html else {})}
    return {
        "status": status,
        **finished(started),
        "outputs": outputs,
        "offline": offline,
        "error": error,
        "artifacts": artifacts,
        "metrics": read_step_metrics(run_dir, step.name),
    }


def _restore_step(step: Step, record: dict, run_dir: Path, source_dir: Path, source: dict) -> dict:
    """A cache hit: copy the earlier run's notebook and artifacts, export with this header."""
    started = time.perf_counter()
    notebook = restore_cached(source_dir, source, run_dir)
    entry = next(e for e in record["steps"] if e["name"] == step.name)
    nb = nbformat.read(notebook, as_version=4)
    html, offline, export_error = export_step(
        nb, record, entry, "cached", run_dir, step.notebook.parent
    )
    error = {"name": "HTMLExportError", "message": export_error} if export_error else None
    return {
        "status": "failed" if error else "cached",
        **finished(started),
        "outputs": {"notebook": notebook.name, **({"html": html} if html else {})},
        "offline": offline,
        "error": error,
        "artifacts": dict(source.get("artifacts") or {}),
        "metrics": read_step_metrics(run_dir, step.name) or dict(source.get("metrics") or {}),
        "cached_from": {"run_id": source_dir.name, "step": source["name"]},
    }


def _step_or_cache(
    pipeline: Pipeline, step: Step, run_dir: Path, kernel: str, record: dict, *,
    progress: bool, cache: bool, forced: bool,
) -> None:  # fmt: skip
    """Restore the step from an earlier run when its cache key matches, else run it.

    The entry is updated and run.json written before the lock is released, so a parallel
    run waiting for the same key finds this one's result.
    """
    entries = {e["name"]: e for e in record["steps"]}
    upstream = {name: entries[name].get("artifacts") or {} for name in step.needs}
    packages = record["environment"]["packages"]
    manifests = {d["name"]: d["manifest_sha256"] for d in data_provenance([entries[step.name]])}
    definition = {
        "name": step.name, "outputs": step.outputs, "parameters": step.parameters,
        "manifests": manifests,  # a data manifest edited (new seed, new files) reruns the step
    }  # fmt: skip
    key = cache_key(step.notebook, definition, upstream, packages, kernel)
    entries[step.name]["cache_key"] = key
    with step_lock(run_dir.parent, key):  # a parallel sweep run with the same step waits here
        hit = find_cached(run_dir.parent, key, run_dir.name) if cache and not forced else None
        if hit is not None:
            result = _restore_step(step, record, run_dir, *hit)
        else:
            result = _run_step(pipeline, step, run_dir, kernel, record, progress)
        entries[step.name].update(result)
        write_run_record(run_dir, record)


def _finish_record(record: dict, run_dir: Path, started: float) -> None:
    record["ended"] = utc_now()
    record["duration_s"] = round(time.perf_counter() - started, 3)
    record["data"] = data_provenance(record["steps"])  # the demo data exists only now
    write_run_record(run_dir, record)
    try:
        write_run_report(run_dir, record)
    except Exception as exc:  # a report problem must not hide the run's own result
        record["report_error"] = f"{type(exc).__name__}: {exc}"
        write_run_record(run_dir, record)
    write_index(run_dir.parent)


def _mark_interrupted(record: dict, run_dir: Path, exc: BaseException, current: dict | None):
    record["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
    record["error"] = {
        "step": current["name"] if current else None,
        "name": type(exc).__name__,
        "message": str(exc),
    }
    for entry in record["steps"]:
        if entry["status"] == "running":
            entry.update(status="failed", ended=utc_now(), error=dict(record["error"]))
            partial = run_dir / f".{entry['name']}.partial.ipynb"
            if partial.exists():  # keep what ran, under the usual name
                os.replace(partial, run_dir / f"{entry['name']}.ipynb")
                entry["outputs"] = {"notebook": f"{entry['name']}.ipynb"}
        elif entry["status"] == "pending":
            entry["status"] = "skipped"


def run_pipeline(
    pipeline_path: str | Path,
    reports_dir: str | Path = "reports",
    run_id: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    progress: bool = True,
    cache: bool = True,
    force: bool | Collection[str] = False,
    text: str | None = None,
    sweep: Mapping[str, Any] | None = None,
    rerun_of: str | None = None,
) -> RunResult:
    """Validate the pipeline, run its steps in order, write reports/<run_id>/ and the index.

    A failing step does not raise: it is recorded, later steps are skipped and the result's
    ``status`` is ``failed``. Invalid pipelines raise PipelineError before anything is
    written. ``force``: True reruns every step, a collection of step names reruns those
    (their dependants rerun when the artifacts they read change). ``sweep`` is the point of
    a sweep this run belongs to (:func:`sarlab.sweep.run_sweep` passes it).
    """
    pipeline = load_pipeline(pipeline_path, overrides, text=text)
    if pipeline.sweep is not None and sweep is None:
        raise PipelineError(
            pipeline.path, "has a sweep section: run it with sarlab.sweep.run_sweep"
        )
    names = {step.name for step in pipeline.steps}
    if not isinstance(force, bool) and set(force) - names:
        raise PipelineError(pipeline.path, f"--force-step: no step {sorted(set(force) - names)}")
    reports_dir = Path(reports_dir).resolve()  # papermill changes the working directory
    kernel = select_kernel()
    rank, world = torchrun_rank()
    if world > 1:  # one DDP job across the ranks: one run folder, every step executed
        run_id, cache = run_id or torchrun_run_id(pipeline.name), False
        if rank > 0:
            status = follow_run(pipeline, reports_dir / run_id, rank, kernel[0])
            return RunResult(run_id, reports_dir / run_id, status["status"], (), status)
    run_dir = _make_run_dir(reports_dir, run_id, pipeline.name)
    record = new_run_record(pipeline, run_dir.name, overrides, kernel)
    record.update(
        hardware=hardware_info(), code_version=code_version(), seeds=seeds_of(record["steps"]),
        data=data_provenance(record["steps"]), sweep=dict(sweep) if sweep else None,
        rerun_of=rerun_of, metrics={},
    )  # fmt: skip
    write_run_record(run_dir, record)
    write_index(reports_dir)
    started = time.perf_counter()
    current: dict[str, Any] | None = None
    try:
        for step, entry in zip(pipeline.steps, record["steps"], strict=True):
            if record["error"] is not None:
                entry["status"] = "skipped"
                continue
            current = entry
            entry.update(status="running", started=utc_now())
            write_run_record(run_dir, record)
            forced = force if isinstance(force, bool) else step.name in force
            _step_or_cache(pipeline, step, run_dir, kernel[0], record, progress=progress,
                           cache=cache, forced=forced)  # fmt: skip
            if entry.get("metrics"):
                record["metrics"][step.name] = entry["metrics"]
            if entry["status"] == "failed":
                record["error"] = {
                    "step": step.name,
                    **{k: entry["error"][k] for k in ("name", "message")},
                }
            write_run_record(run_dir, record)
        record["status"] = "failed" if record["error"] else "ok"
    except BaseException as exc:  # Ctrl-C or a bug: never leave "running" behind
        _mark_interrupted(record, run_dir, exc, current)
        raise
    finally:
        _finish_record(record, run_dir, started)
    steps = tuple(
        StepResult(
            name=entry["name"],
            status=entry["status"],
            notebook=run_dir / entry["outputs"]["notebook"]
            if "notebook" in entry["outputs"]
            else None,
            html=run_dir / entry["outputs"]["html"] if "html" in entry["outputs"] else None,
            error=entry["error"],
        )
        for entry in record["steps"]
    )
    return RunResult(run_dir.name, run_dir, record["status"], steps, record)
