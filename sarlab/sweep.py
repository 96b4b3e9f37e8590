"""Parameter sweeps: one pipeline, many runs, in parallel, and nothing lost when one fails.

A pipeline's ``sweep`` section (see :mod:`sarlab.pipeline`) expands into points; each
point is a complete ``sarlab run`` of the pipeline with the point's values as ``--set``
overrides, in its own ``reports/<sweep_id>-NN/`` folder with its own run.json and report.
Runs execute as separate processes, ``workers`` at a time (default: the CPU cores, each
run's BLAS/torch threads capped so the cores are shared, not oversubscribed), or on a Dask
distributed cluster given its address (the workers must see the same checkout and
reports folder, e.g. on a shared file system). Steps shared by the points (the same
pretraining) run once: the others wait on its cache lock and restore it.

A failing run is recorded as failed and the others go on. Ctrl-C (SIGINT) is passed to
the running runs, which record themselves as ``interrupted``; runs not yet started are
listed as ``not started``; finished runs are never touched. ``reports/<sweep_id>/``
holds ``sweep.json`` and ``sweep.html`` (one row per point: values, status, metrics).
"""

from __future__ import annotations

import html
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sarlab.atomic import atomic_write_json, atomic_write_text
from sarlab.errors import InputError, PipelineError
from sarlab.pipeline import load_pipeline
from sarlab.report import RUN_RECORD, utc_now
from sarlab.report_html import REPORT_FILE
from sarlab.report_index import write_index

__all__ = ["SWEEP_RECORD", "SweepResult", "run_sweep"]

SWEEP_RECORD = "sweep.json"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_STOP_GRACE_S = 120.0


@dataclass(frozen=True)
class SweepResult:
    sweep_id: str
    folder: Path
    status: str  # ok | failed (some run failed) | interrupted
    runs: tuple[dict[str, Any], ...]  # one per point: index, run_id, point, status, metrics

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _command(
    pipeline: Path, reports_dir: Path, run_id: str, payload: dict, flags: list[str]
) -> list[str]:
    return [
        sys.executable, "-m", "sarlab.cli", "run", str(pipeline), "--run-id", run_id,
        "--reports-dir", str(reports_dir), "--sweep-point", json.dumps(payload), *flags,
    ]  # fmt: skip


def _child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    return env


def _run_command(command: list[str], env: Mapping[str, str], log: str) -> int:
    """Run one point to the end (used on Dask workers too); its output goes to ``log``."""
    with open(log, "ab") as handle:
        return subprocess.run(command, env=dict(env), stdout=handle, stderr=handle).returncode


def _point_record(reports_dir: Path, row: dict[str, Any]) -> dict[str, Any]:
    """The point's row, updated from its run.json if the run got that far."""
    path = reports_dir / row["run_id"] / RUN_RECORD
    row = dict(row)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        if row["status"] == "running":  # stopped before its run folder was made
            row["status"] = "not started"
        return row
    row["status"] = record.get("status", row["status"])
    row["metrics"] = record.get("metrics") or {}
    row["error"] = record.get("error")
    row["duration_s"] = record.get("duration_s")
    return row


def _write_sweep(folder: Path, sweep: dict[str, Any]) -> None:
    atomic_write_json(folder / SWEEP_RECORD, sweep)
    atomic_write_text(folder / "sweep.html", sweep_html(sweep))


def sweep_html(sweep: Mapping[str, Any]) -> str:
    """One table: a row per point with its varied values, status, metrics and report link."""
    varied = list(sweep.get("varied") or [])
    metric_names = sorted(
        {f"{s}.{m}" for row in sweep["runs"] for s, ms in (row.get("metrics") or {}).items()
         for m in ms}
    )  # fmt: skip

    def metric(row: Mapping[str, Any], name: str) -> str:
        step, _, key = name.partition(".")
        value = ((row.get("metrics") or {}).get(step) or {}).get(key)
        return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["run", *varied, "status", *metric_names])
    rows = []
    for row in sweep["runs"]:
        status = html.escape(str(row["status"]))
        link = f'<a href="../{html.escape(row["run_id"])}/{REPORT_FILE}">{row["run_id"]}</a>'
        cells = [link, *(html.escape(repr(row["point"].get(k))) for k in varied)]
        error = row.get("error") or {}
        note = f" {html.escape(str(error.get('name', '')))}" if error and status != "ok" else ""
        cells.append(f'<span class="{status}">{status}</span>{note}')
        cells += [metric(row, name) for name in metric_names]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>sweep {html.escape(sweep['id'])}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em}td,th{padding:.3em .7em;"
        "border-bottom:1px solid #ddd;text-align:left}.ok{color:#1a7f37}"
        ".failed,.interrupted{color:#cf222e}</style></head><body>"
        f"<h1>Sweep <code>{html.escape(sweep['id'])}</code> · {html.escape(sweep['status'])}</h1>"
        f"<p>Pipeline <code>{html.escape(sweep['pipeline'])}</code>, {len(sweep['runs'])} runs, "
        f'started {html.escape(sweep["started"][:19])} UTC. <a href="../index.html">All runs</a>'
        f"</p><table><tr>{head}</tr>{''.join(rows)}</table></body></html>"
    )


def _sweep_id(reports_dir: Path, name: str, sweep_id: str | None) -> str:
    if sweep_id is None:
        sweep_id = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{name}"
    if (reports_dir / sweep_id).exists():
        raise InputError(reports_dir / sweep_id, "a sweep or run with this id already exists")
    return sweep_id


def run_sweep(
    pipeline_path: str | Path,
    reports_dir: str | Path = "reports",
    overrides: Mapping[str, Any] | None = None,
    *,
    workers: int | None = None,
    dask_address: str | None = None,
    sweep_id: str | None = None,
    force: bool = False,
    cache: bool = True,
) -> SweepResult:
    """Run every point of the pipeline's sweep; never raises for a failing run.

    Every point is validated before the first run starts (a typo in point 7 fails now,
    not in an hour). Ctrl-C interrupts the running points and re-raises after the sweep
    record and the index are written.
    """
    base = load_pipeline(pipeline_path, overrides)
    if base.sweep is None:
        raise PipelineError(base.path, "has no sweep section; run it with sarlab run")
    overrides = dict(overrides or {})
    clash = sorted({k for point in base.sweep.points for k in point} & set(overrides))
    if clash:
        raise PipelineError(base.path, f"--set {clash} would override what the sweep varies")
    for index, point in enumerate(base.sweep.points):
        try:
            load_pipeline(base.path, {**overrides, **point}, text=base.text)
        except PipelineError as error:
            problem = f"sweep point {index + 1} {point}: {error.problem}"
            raise PipelineError(base.path, problem) from error
    reports_dir = Path(reports_dir).resolve()
    reports_dir.mkdir(parents=True, exist_ok=True)
    sweep_id = _sweep_id(reports_dir, base.name, sweep_id)
    folder = reports_dir / sweep_id
    folder.mkdir()
    points = base.sweep.points
    width = len(str(len(points) - 1))
    sweep: dict[str, Any] = {
        "id": sweep_id, "pipeline": base.name, "pipeline_file": str(base.path),
        "overrides": overrides, "varied": base.sweep.varied, "status": "running",
        "started": utc_now(), "ended": None,
        "runs": [
            {"index": i, "run_id": f"{sweep_id}-{i:0{width}d}", "point": dict(point),
             "status": "not started", "metrics": {}, "error": None}
            for i, point in enumerate(points)
        ],
    }  # fmt: skip
    _write_sweep(folder, sweep)
    n_workers = max(1, min(workers or base.sweep.workers or os.cpu_count() or 1, len(points)))
    env = _child_env(max(1, (os.cpu_count() or 1) // n_workers))
    flags = ["--no-progress", *(["--force"] if force else []), *([] if cache else ["--no-cache"])]
    commands = []
    for row in sweep["runs"]:
        info = {"id": sweep_id, "index": row["index"], "of": len(points), "point": row["point"]}
        payload = {"sweep": info, "overrides": {**overrides, **row["point"]}}
        commands.append(_command(base.path, reports_dir, row["run_id"], payload, flags))
    runner = _dask_points if dask_address else _local_points
    try:
        runner(sweep, commands, env, folder, n_workers, dask_address)
        sweep["status"] = "ok"
    except KeyboardInterrupt:
        sweep["status"] = "interrupted"
        raise
    finally:
        sweep["runs"] = [_point_record(reports_dir, row) for row in sweep["runs"]]
        if sweep["status"] == "ok" and any(r["status"] != "ok" for r in sweep["runs"]):
            sweep["status"] = "failed"
        sweep["ended"] = utc_now()
        _write_sweep(folder, sweep)
        write_index(reports_dir)
    return SweepResult(sweep_id, folder, sweep["status"], tuple(sweep["runs"]))


def _local_points(
    sweep: dict, commands: list[list[str]], env: dict, folder: Path, workers: int, _: Any
) -> None:
    """A pool of ``workers`` child processes; SIGINT is forwarded to the running ones."""
    pending = list(range(len(commands)))
    running: dict[int, subprocess.Popen] = {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                index = pending.pop(0)
                with open(folder / f"{sweep['runs'][index]['run_id']}.log", "ab") as log:
                    running[index] = subprocess.Popen(
                        commands[index], env=env, stdout=log, stderr=subprocess.STDOUT
                    )
                sweep["runs"][index]["status"] = "running"
            for index, process in list(running.items()):
                if process.poll() is not None:
                    del running[index]
                    sweep["runs"][index]["returncode"] = process.returncode
            time.sleep(0.2)
    except KeyboardInterrupt:
        for process in running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + _STOP_GRACE_S
        for process in running.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        raise


def _dask_points(
    sweep: dict, commands: list[list[str]], env: dict, folder: Path, _: int, address: str
) -> None:
    """Each point as a task on a Dask distributed cluster (running tasks cannot be stopped)."""
    from distributed import Client, as_completed

    with Client(address) as client:
        futures = {
            client.submit(
                _run_command, command, env, str(folder / f"{row['run_id']}.log"),
                key=f"sarlab-{row['run_id']}", pure=False,
            ): row
            for command, row in zip(commands, sweep["runs"], strict=True)
        }  # fmt: skip
        try:
            for future in as_completed(futures):
                futures[future]["returncode"] = future.result()
        except KeyboardInterrupt:
            client.cancel(list(futures))
            raise
