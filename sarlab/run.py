"""``sarlab run PIPELINE``: execute a pipeline's notebooks with papermill and write a report folder.

reports/<run_id>/ receives, per step, the executed notebook (``<step>.ipynb``) and its
code-free offline HTML (``<step>.html``), plus ``run.json`` (see :mod:`sarlab.report`);
reports/index.html lists every run. Each file is written atomically and run.json is
rewritten after every step, so a crash leaves a record saying ``running``, never ``ok``.

Notebooks run in the kernel of this interpreter (the registered ``sarlab`` kernel when it
belongs to this environment, else ``python3``), with the notebook's own folder as working
directory, as in JupyterLab. ``SARLAB_RUN_DIR`` (absolute), ``SARLAB_RUN_ID`` and
``SARLAB_STEP`` are set in the kernel's environment so notebooks can save artifacts
(checkpoints, figures, tables) next to the report.

A failing cell fails its step and the run; the remaining steps are skipped and recorded as
such; the executed notebook, error included, is still exported to HTML. Ctrl-C records the
run as ``interrupted`` before the exception goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import papermill
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from papermill.exceptions import PapermillExecutionError

from sarlab.atomic import atomic_write_text
from sarlab.errors import InputError
from sarlab.html_offline import export_html
from sarlab.params import parse_overrides
from sarlab.pipeline import Pipeline, Step, load_pipeline
from sarlab.report import new_run_record, step_header_html, utc_now, write_index, write_run_record

__all__ = ["RunResult", "StepResult", "register_cli", "run_pipeline", "select_kernel"]

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PAPERMILL_TAGS = {"injected-parameters", "papermill-error-cell-tag"}


@dataclass(frozen=True)
class StepResult:
    name: str
    status: str  # ok | failed | skipped
    notebook: Path | None
    html: Path | None
    error: dict[str, Any] | None


@dataclass(frozen=True)
class RunResult:
    run_id: str
    run_dir: Path
    status: str  # ok | failed
    steps: tuple[StepResult, ...]
    record: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def select_kernel() -> tuple[str, str | None]:
    """(kernel name, executable): ``sarlab`` if it runs this interpreter's env, else ``python3``.

    jupyter_client starts ``python3`` (argv ``python``) with ``sys.executable``.
    """
    here = Path(os.path.abspath(sys.executable)).parent
    try:
        spec = KernelSpecManager().get_kernel_spec("sarlab")
        if spec.argv and Path(os.path.abspath(spec.argv[0])).parent == here:
            return "sarlab", spec.argv[0]
    except NoSuchKernel:
        pass
    return "python3", sys.executable


@contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


def _source_index(nb: nbformat.NotebookNode, cell_index: int) -> int:
    """Index of an executed-notebook cell in the source notebook (papermill's own cells skipped)."""
    inserted = sum(
        1
        for cell in nb.cells[:cell_index]
        if _PAPERMILL_TAGS & set(cell.get("metadata", {}).get("tags", []))
    )
    return cell_index - inserted


def _failing_cell(nb: nbformat.NotebookNode | None) -> dict[str, Any] | None:
    """The cell papermill marked as raising, else the last one started (timeout, dead kernel)."""
    if nb is None:
        return None
    meta = [cell.get("metadata", {}).get("papermill", {}) for cell in nb.cells]
    raised = [i for i, m in enumerate(meta) if m.get("exception")]
    started = [i for i, m in enumerate(meta) if m.get("start_time")]
    if not (raised or started):
        return None
    index = (raised or started)[-1]
    return {
        "index": _source_index(nb, index),
        "execution_count": nb.cells[index].get("execution_count"),
        "source": nb.cells[index].source[:2000],
    }


def _error_record(exc: BaseException, nb: nbformat.NotebookNode | None) -> dict[str, Any]:
    if isinstance(exc, PapermillExecutionError):
        traceback = _ANSI.sub("", "\n".join(exc.traceback or []))
        error = {"name": exc.ename, "message": _ANSI.sub("", str(exc.evalue))}
    else:
        traceback = ""
        error = {"name": type(exc).__name__, "message": _ANSI.sub("", str(exc))}
    error["cell"] = _failing_cell(nb)
    error["traceback"] = "\n".join(traceback.splitlines()[-60:])
    return error


def _execute(
    step: Step, run_dir: Path, kernel: str, progress: bool
) -> tuple[nbformat.NotebookNode, dict | None]:
    """Run one notebook into ``run_dir/<step>.ipynb``; returns (executed notebook, error)."""
    partial = run_dir / f".{step.name}.partial.ipynb"
    env = {"SARLAB_RUN_DIR": str(run_dir), "SARLAB_RUN_ID": run_dir.name, "SARLAB_STEP": step.name}
    failure: Exception | None = None
    with _environ(env):
        try:
            papermill.execute_notebook(
                str(step.notebook),
                str(partial),
                parameters=step.parameters,
                kernel_name=kernel,
                cwd=str(step.notebook.parent),
                execution_timeout=step.timeout,
                progress_bar=progress,
                request_save_on_cell_execute=True,
            )
        except Exception as exc:
            failure = exc
    nb = nbformat.read(partial, as_version=4) if partial.exists() else None
    error = None if failure is None else _error_record(failure, nb)
    if nb is not None:
        os.replace(partial, run_dir / f"{step.name}.ipynb")
    else:  # the kernel never started: keep the source, with the reason on top
        nb = nbformat.read(step.notebook, as_version=4)
        reason = f"{error['name']}: {error['message']}" if error else "unknown"
        message = f"**This notebook did not run.** `{reason}`"
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(message))
        atomic_write_text(run_dir / f"{step.name}.ipynb", nbformat.writes(nb))
    return nb, error


def _run_step(
    pipeline: Pipeline, step: Step, run_dir: Path, kernel: str, record: dict, progress: bool
) -> dict:
    """Execute and export one step; returns the fields to merge into its run.json entry."""
    started = time.perf_counter()
    nb, error = _execute(step, run_dir, kernel, progress)
    status = "failed" if error else "ok"
    outputs = {"notebook": f"{step.name}.ipynb"}
    offline: dict[str, list[str]] = {}
    try:
        shown = nbformat.from_dict(nb)
        entry = next(e for e in record["steps"] if e["name"] == step.name)
        header = step_header_html(record, entry, status)
        shown.cells.insert(0, nbformat.v4.new_markdown_cell(header))
        body, report = export_html(
            shown, title=f"{pipeline.name}: {step.name}", source_dir=step.notebook.parent
        )
        atomic_write_text(run_dir / f"{step.name}.html", body)
        outputs["html"] = f"{step.name}.html"
        offline = report.to_dict()
    except Exception as exc:  # the run result must still be recorded
        failure = f"{type(exc).__name__}: {exc}"
        if error is None:
            status, error = "failed", {"name": "HTMLExportError", "message": failure}
        else:
            error["html_export"] = failure
    return {
        "status": status,
        "ended": utc_now(),
        "duration_s": round(time.perf_counter() - started, 3),
        "outputs": outputs,
        "offline": offline,
        "error": error,
    }


def run_pipeline(
    pipeline_path: str | Path,
    reports_dir: str | Path = "reports",
    run_id: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    progress: bool = True,
) -> RunResult:
    """Validate the pipeline, run its steps in order, write reports/<run_id>/ and the index.

    A failing step does not raise: it is recorded, later steps are skipped and the result's
    ``status`` is ``failed``. Invalid pipelines raise PipelineError before anything is written.
    """
    pipeline = load_pipeline(pipeline_path, overrides)
    reports_dir = Path(reports_dir).resolve()  # papermill changes the working directory
    run_dir = _make_run_dir(reports_dir, run_id, pipeline.name)
    kernel = select_kernel()
    record = new_run_record(pipeline, run_dir.name, overrides, kernel)
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
            entry.update(_run_step(pipeline, step, run_dir, kernel[0], record, progress))
            if entry["status"] == "failed":
                record["error"] = {
                    "step": step.name,
                    **{k: entry["error"][k] for k in ("name", "message")},
                }
            write_run_record(run_dir, record)
        record["status"] = "failed" if record["error"] else "ok"
    except BaseException as exc:  # Ctrl-C or a bug: never leave "running" behind
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
        raise
    finally:
        record["ended"] = utc_now()
        record["duration_s"] = round(time.perf_counter() - started, 3)
        write_run_record(run_dir, record)
        write_index(reports_dir)
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


def _cli(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.set or [])
    if args.dry_run:
        pipeline = load_pipeline(args.pipeline, overrides)
        plan = {step.name: step.resolved_parameters() for step in pipeline.steps}
        print(json.dumps({"pipeline": pipeline.name, "steps": plan}, indent=2, default=str))
        return 0
    result = run_pipeline(
        args.pipeline, args.reports_dir, args.run_id, overrides, progress=not args.no_progress
    )
    for entry in result.record["steps"]:
        offline = entry.get("offline") or {}
        note = ""
        if offline.get("online_only"):
            note = " (WARNING: a figure loads BokehJS from a CDN; make it with INLINE resources)"
        elif offline.get("removed"):
            note = f" ({len(offline['removed'])} external resources left out of the HTML)"
        print(f"  {entry['name']}: {entry['status']}{note}", file=sys.stderr)
    index = result.run_dir.parent / "index.html"
    if result.ok:
        print(f"run {result.run_id}: ok; report: {result.run_dir} (all runs: {index})")
        return 0
    error = result.record["error"] or {}
    failed = next((s for s in result.steps if s.status == "failed"), None)
    where = failed.html if failed and failed.html else result.run_dir
    print(
        f"run {result.run_id} FAILED in step {error.get('step')}: {error.get('name')}: "
        f"{error.get('message')}\nreport: {where}\nrun record: {result.run_dir / 'run.json'}",
        file=sys.stderr,
    )
    return 1


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run a pipeline of notebooks, write reports/<run_id>/ (HTML, run.json)"
    )
    parser.add_argument("pipeline", help="pipeline YAML, e.g. pipelines/demo.yaml")
    parser.add_argument(
        "--run-id", help="folder name under the reports dir (default: time-pipeline)"
    )
    parser.add_argument("--reports-dir", default="reports")
    parser.add_argument(
        "--set",
        action="append",
        metavar="STEP.PARAM=VALUE",
        help="override a parameter (a YAML value); without STEP. for every step declaring it",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and print the resolved parameters"
    )
    parser.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")
    parser.set_defaults(func=_cli)
