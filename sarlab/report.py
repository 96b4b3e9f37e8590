"""Run records (run.json) and the reports index page.

run.json is what makes a report reproducible (dinov2 saves its resolved config and git SHA
with every run for the same reason): the pipeline, the resolved parameters of every step,
the code version (git SHA, dirty flag) and the package versions, with timings and status.
It is rewritten atomically after every step, so a crash leaves ``running``, never ``ok``.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sarlab.atomic import atomic_write_json

if TYPE_CHECKING:
    from sarlab.pipeline import Pipeline

__all__ = [
    "RUN_RECORD",
    "environment_info",
    "git_info",
    "new_run_record",
    "read_runs",
    "step_header_html",
    "utc_now",
    "when",
    "write_run_record",
]

RUN_RECORD = "run.json"
PACKAGES = (
    "sarlab", "numpy", "scipy", "pandas", "xarray", "dask", "rasterio", "rioxarray", "zarr",
    "torch", "scikit-learn", "papermill", "nbconvert", "nbformat", "ipykernel", "bokeh",
    "holoviews", "panel", "folium",
)  # fmt: skip


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def git_info(folder: str | Path) -> dict[str, Any]:
    """SHA, dirty flag (tracked files changed) and branch of the repository holding ``folder``."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=20
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if sha is None:
        return {"sha": None, "dirty": None, "branch": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "sha": sha,
        "dirty": None if status is None else bool(status),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
    }


def environment_info(kernel: str, kernel_argv0: str | None = None) -> dict[str, Any]:
    """Interpreter, platform, kernel and versions of the packages a report depends on."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "kernel": {"name": kernel, "executable": kernel_argv0},
        "packages": versions,
    }


def new_run_record(
    pipeline: Pipeline, run_id: str, overrides: Mapping[str, Any] | None, kernel: tuple
) -> dict[str, Any]:
    """The run.json of a run that has just started: every step ``pending``."""

    def relative(path: Path) -> str:
        try:
            return path.relative_to(pipeline.root).as_posix()
        except ValueError:
            return str(path)

    text = pipeline.text or pipeline.path.read_text(encoding="utf-8")
    return {
        "schema_version": 2,
        "run_id": run_id,
        "status": "running",
        "pipeline": {
            "name": pipeline.name,
            "description": pipeline.description,
            "file": relative(pipeline.path),
            "path": str(pipeline.path),
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "text": text,  # what --rerun runs, even if the file has changed since
        },
        "overrides": dict(overrides or {}),
        "started": utc_now(),
        "ended": None,
        "duration_s": None,
        "git": git_info(pipeline.root),
        "environment": environment_info(*kernel),
        "error": None,
        "steps": [
            {
                "name": step.name,
                "notebook": relative(step.notebook),
                "notebook_sha256": hashlib.sha256(step.notebook.read_bytes()).hexdigest(),
                "parameters": step.resolved_parameters(),
                "injected": step.parameters,
                "timeout": step.timeout,
                "time_limit": step.time_limit,
                "declared_outputs": list(step.outputs),
                "needs": list(step.needs),
                "status": "pending",
                "started": None,
                "ended": None,
                "duration_s": None,
                "outputs": {},
                "error": None,
            }
            for step in pipeline.steps
        ],
    }


def when(timestamp: Any) -> str:
    return str(timestamp or "")[:19].replace("T", " ")


def step_header_html(run: dict[str, Any], step: dict[str, Any], status: str) -> str:
    """A header for a step's HTML report: what ran, with which parameters, from which code."""
    git = run.get("git") or {}
    sha = (git.get("sha") or "unknown")[:10] + (" (dirty)" if git.get("dirty") else "")
    rows = "".join(
        f"<tr><td><code>{html.escape(name)}</code></td>"
        f"<td><code>{html.escape(repr(value))}</code></td></tr>"
        for name, value in step["parameters"].items()
    )
    return (
        '<div class="sarlab-run-info" '
        'style="color:#555;border-bottom:1px solid #ddd;padding-bottom:.5em">'
        f"Step <b>{html.escape(step['name'])}</b> of pipeline "
        f"<b>{html.escape(run['pipeline']['name'])}</b>, "
        f"run <code>{html.escape(run['run_id'])}</code>, "
        f"status <b>{html.escape(status)}</b>, code <code>{html.escape(sha)}</code>, "
        f"started {html.escape(when(run['started']))} UTC. "
        '<a href="../index.html">All reports</a>.'
        f"<details><summary>Parameters</summary><table>{rows}</table></details></div>"
    )


def write_run_record(run_dir: str | Path, record: dict[str, Any]) -> Path:
    return atomic_write_json(Path(run_dir) / RUN_RECORD, record)


def _effective_status(record: dict[str, Any]) -> str:
    """``running`` records whose process is gone (same host) read as ``interrupted``."""
    status = str(record.get("status", "unknown"))
    env = record.get("environment") or {}
    if status == "running" and env.get("host") == socket.gethostname():
        try:
            os.kill(int(env.get("pid")), 0)
        except (OSError, TypeError, ValueError):
            return "interrupted"
    return status


def read_runs(reports_dir: str | Path) -> list[dict[str, Any]]:
    """Every readable run record under ``reports_dir``, newest first (``_dir`` added)."""
    runs = []
    for path in Path(reports_dir).glob(f"*/{RUN_RECORD}"):
        if path.parent.name.startswith("."):
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = {"run_id": path.parent.name, "status": "unreadable run.json"}
        if not isinstance(record, dict):
            continue
        record["_dir"] = path.parent.name
        record["status"] = _effective_status(record)
        runs.append(record)
    return sorted(runs, key=lambda r: (str(r.get("started", "")), r["_dir"]), reverse=True)
