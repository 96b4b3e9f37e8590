"""One step of ``sarlab run``: execute a notebook with papermill, then export its HTML.

Notebooks run in the kernel of this interpreter (the registered ``sarlab`` kernel when it
belongs to this environment, else ``python3``), with the notebook's own folder as working
directory, as in JupyterLab. ``SARLAB_RUN_DIR`` (absolute), ``SARLAB_RUN_ID`` and
``SARLAB_STEP`` are set in the kernel's environment so notebooks can save artifacts next
to the report. A step's ``timeout`` bounds each cell (papermill); its ``time_limit``
bounds the whole notebook: a watchdog kills the kernel and the step fails saying so.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import nbformat
import papermill
import psutil
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from papermill.exceptions import PapermillExecutionError

from sarlab.atomic import atomic_write_text
from sarlab.html_offline import export_html
from sarlab.report import step_header_html, utc_now

__all__ = ["execute_notebook", "export_step", "select_kernel"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PAPERMILL_TAGS = {"injected-parameters", "papermill-error-cell-tag"}


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


class _Watchdog:
    """Kills this step's kernel (found by its SARLAB_* environment) after ``seconds``."""

    def __init__(self, seconds: float | None, env: Mapping[str, str]) -> None:
        self.seconds, self.env, self.fired = seconds, dict(env), False
        self._timer = None if seconds is None else threading.Timer(seconds, self._kill)
        if self._timer is not None:
            self._timer.daemon = True

    def _kill(self) -> None:
        self.fired = True
        for child in psutil.Process().children(recursive=True):
            try:
                environ = child.environ()
            except (psutil.Error, OSError):
                continue
            if all(environ.get(k) == v for k, v in self.env.items()):
                with suppress(psutil.Error):
                    child.kill()

    def __enter__(self) -> _Watchdog:
        if self._timer is not None:
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()


def execute_notebook(
    notebook: Path,
    step_name: str,
    parameters: Mapping[str, Any],
    run_dir: Path,
    kernel: str,
    *,
    timeout: float | None = None,
    time_limit: float | None = None,
    progress: bool = False,
    notebook_dir: Path | None = None,
) -> tuple[nbformat.NotebookNode, dict | None]:
    """Run one notebook into ``run_dir/<step>.ipynb``; returns (executed notebook, error).

    ``notebook_dir`` puts the executed notebook elsewhere while the kernel still writes
    its artifacts to ``run_dir`` (torchrun ranks other than 0 share rank 0's run folder).
    """
    notebook_dir = run_dir if notebook_dir is None else notebook_dir
    partial = notebook_dir / f".{step_name}.partial.ipynb"
    env = {"SARLAB_RUN_DIR": str(run_dir), "SARLAB_RUN_ID": run_dir.name, "SARLAB_STEP": step_name}
    failure: Exception | None = None
    with _environ(env), _Watchdog(time_limit, env) as watchdog:
        try:
            papermill.execute_notebook(
                str(notebook),
                str(partial),
                parameters=dict(parameters),
                kernel_name=kernel,
                cwd=str(notebook.parent),
                execution_timeout=timeout,
                progress_bar=progress,
                request_save_on_cell_execute=True,
            )
        except Exception as exc:
            failure = exc
    nb = nbformat.read(partial, as_version=4) if partial.exists() else None
    error = None if failure is None else _error_record(failure, nb)
    if watchdog.fired and error is not None:
        error.update(
            name="TimeLimitExceeded",
            message=f"the notebook ran past its time_limit of {time_limit:g} s; kernel stopped",
        )
    if nb is not None:
        os.replace(partial, notebook_dir / f"{step_name}.ipynb")
    else:  # the kernel never started: keep the source, with the reason on top
        nb = nbformat.read(notebook, as_version=4)
        reason = f"{error['name']}: {error['message']}" if error else "unknown"
        message = f"**This notebook did not run.** `{reason}`"
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(message))
        atomic_write_text(notebook_dir / f"{step_name}.ipynb", nbformat.writes(nb))
    return nb, error


def export_step(
    nb: nbformat.NotebookNode,
    record: dict[str, Any],
    entry: dict[str, Any],
    status: str,
    run_dir: Path,
    source_dir: Path,
) -> tuple[str | None, dict[str, Any], str | None]:
    """Write ``<step>.html`` with the run header; (file name, offline report, export error)."""
    try:
        shown = nbformat.from_dict(nb)
        header = step_header_html(record, entry, status)
        shown.cells.insert(0, nbformat.v4.new_markdown_cell(header))
        title = f"{record['pipeline']['name']}: {entry['name']}"
        body, report = export_html(shown, title=title, source_dir=source_dir)
        atomic_write_text(run_dir / f"{entry['name']}.html", body)
        return f"{entry['name']}.html", report.to_dict(), None
    except Exception as exc:  # the run result must still be recorded
        return None, {}, f"{type(exc).__name__}: {exc}"


def finished(started: float) -> dict[str, Any]:
    return {"ended": utc_now(), "duration_s": round(time.perf_counter() - started, 3)}
