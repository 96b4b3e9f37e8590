"""Sweeps: many runs in parallel, one made to fail, one shared step, Ctrl-C, and Dask."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from run_helpers import CHAIN, make_project, record, statuses
from test_html_offline import external_resources

from sarlab.errors import PipelineError
from sarlab.report import read_runs
from sarlab.run_cache import file_sha256
from sarlab.sweep import run_sweep

SIX = (
    CHAIN
    + """sweep:
  points:
    - {produce.seed: 0}
    - {produce.seed: 1}
    - {produce.seed: 2, produce.fail: true}
    - {produce.seed: 3}
    - {produce.seed: 4}
    - {produce.seed: 5}
  workers: 2
"""
)
SHARED = CHAIN.replace("{seed: 3, value: 1.5}", "{seed: 3, value: 1.5, sleep_s: 3.0}") + (
    "sweep:\n  grid: {consume.smoke: [false, true]}\n  workers: 2\n"
)
SLOW = (
    CHAIN
    + """sweep:
  grid: {produce.sleep_s: [0.0, 0.0, 120.0, 120.0, 120.0]}
  workers: 2
"""
)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    pipelines = {"six": SIX, "shared": SHARED, "slow": SLOW}
    return make_project(tmp_path_factory.mktemp("sweep_project"), pipelines)


@pytest.fixture(scope="module")
def six(project):
    return run_sweep(project / "pipelines" / "six.yaml", project / "reports", sweep_id="six")


def test_a_failing_run_does_not_stop_the_others(six, project):
    reports = project / "reports"
    assert six.status == "failed" and len(six.runs) == 6
    by_seed = {row["point"]["produce.seed"]: row for row in six.runs}
    assert by_seed[2]["status"] == "failed"
    assert by_seed[2]["error"]["name"] == "RuntimeError"
    assert "deliberate sweep failure for seed 2" in by_seed[2]["error"]["message"]
    for seed in (0, 1, 3, 4, 5):
        row = by_seed[seed]
        assert row["status"] == "ok", row
        assert row["metrics"]["produce"] == {"score": 3.0 + seed, "seed": seed}
        assert row["metrics"]["consume"] == {"read_value": 1.5, "read_seed": seed}
        run = record(reports / row["run_id"])
        assert run["sweep"]["id"] == "six" and run["sweep"]["point"] == {"produce.seed": seed}
        assert run["overrides"] == {"produce.seed": seed}
        assert (reports / row["run_id"] / "report.html").is_file()
    failed = reports / by_seed[2]["run_id"]
    assert statuses(record(failed)) == {"produce": "failed", "consume": "skipped"}
    report = (failed / "report.html").read_text()
    assert "This run did not finish" in report and "deliberate sweep failure" in report
    assert external_resources(report) == []


def test_sweep_record_table_and_index_list_every_run(six, project):
    reports = project / "reports"
    sweep = json.loads((reports / "six" / "sweep.json").read_text())
    assert [row["run_id"] for row in sweep["runs"]] == [f"six-{i}" for i in range(6)]
    assert sweep["varied"] == ["produce.seed", "produce.fail"]
    assert sweep["status"] == "failed" and sweep["ended"] >= sweep["started"]
    table = (reports / "six" / "sweep.html").read_text()
    assert table.count('<span class="ok">ok</span>') == 5 and "RuntimeError" in table
    index = (reports / "index.html").read_text()
    for i in range(6):
        assert f'href="six-{i}/report.html"' in index
    assert index.count('href="six/sweep.html"') == 6
    assert "<th>produce.score</th>" in index  # a sortable metric column
    assert {r["_dir"]: r["status"] for r in read_runs(reports) if r["_dir"].startswith("six")} == {
        f"six-{i}": "failed" if i == 2 else "ok" for i in range(6)
    }


def test_points_sharing_a_step_run_it_once(project):
    result = run_sweep(project / "pipelines" / "shared.yaml", project / "reports", sweep_id="shr")
    assert result.ok
    produce = [record(project / "reports" / row["run_id"])["steps"][0] for row in result.runs]
    assert sorted(step["status"] for step in produce) == ["cached", "ok"]
    assert len({step["cache_key"] for step in produce}) == 1


def test_points_are_validated_before_anything_runs(project):
    bad = SIX.replace("{produce.seed: 4}", "{produce.seeed: 4}")
    (project / "pipelines" / "bad.yaml").write_text(bad)
    with pytest.raises(PipelineError, match=r"sweep point 5 .*unknown parameter 'seeed'"):
        run_sweep(project / "pipelines" / "bad.yaml", project / "reports", sweep_id="bad")
    assert not (project / "reports" / "bad").exists()
    with pytest.raises(PipelineError, match="would override what the sweep varies"):
        run_sweep(project / "pipelines" / "six.yaml", project / "reports",
                  {"produce.seed": 1}, sweep_id="clash")  # fmt: skip


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def _status(run_dir: Path) -> str | None:
    try:
        return record(run_dir)["status"]
    except (OSError, ValueError):
        return None


def test_sigint_keeps_finished_runs_and_the_index_consistent(project):
    reports = project / "reports"
    command = [sys.executable, "-m", "sarlab.cli", "run", str(project / "pipelines" / "slow.yaml"),
               "--reports-dir", str(reports), "--run-id", "slow"]  # fmt: skip
    sweep = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        started = _wait_for(
            lambda: _status(reports / "slow-0") == "ok" and _status(reports / "slow-1") == "ok"
            and _status(reports / "slow-2") == "running", 240,
        )  # fmt: skip
        assert started, "the first runs did not finish in time"
        finished = {f"slow-{i}": file_sha256(reports / f"slow-{i}" / "report.html") for i in (0, 1)}
        time.sleep(2)
        os.kill(sweep.pid, signal.SIGINT)  # the sweep process only, as `kill -INT` would
        _, err = sweep.communicate(timeout=150)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 130, err.decode()[-2000:]
    for run_id, sha in finished.items():  # untouched
        assert _status(reports / run_id) == "ok"
        assert file_sha256(reports / run_id / "report.html") == sha
    runs = json.loads((reports / "slow" / "sweep.json").read_text())["runs"]
    states = [row["status"] for row in runs]
    assert states[:2] == ["ok", "ok"] and "running" not in states
    assert set(states[2:]) <= {"interrupted", "not started"} and "interrupted" in states
    for row in runs:
        on_disk = _status(reports / row["run_id"])
        assert on_disk == (None if row["status"] == "not started" else row["status"])
    index = (reports / "index.html").read_text()
    indexed = {r["_dir"]: r["status"] for r in read_runs(reports) if r["_dir"].startswith("slow-")}
    assert "running" not in indexed.values() and indexed["slow-2"] == "interrupted"
    for run_id in indexed:
        assert f'href="{run_id}/' in index
    assert not list(reports.glob("slow-*/.*.partial.ipynb"))


def test_a_dask_cluster_runs_the_points(project):
    distributed = pytest.importorskip("distributed")
    (project / "pipelines" / "two.yaml").write_text(
        CHAIN + "sweep:\n  grid: {produce.seed: [7, 8]}\n"
    )
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:  # fmt: skip
        result = run_sweep(project / "pipelines" / "two.yaml", project / "reports",
                           dask_address=cluster.scheduler_address, sweep_id="dask")  # fmt: skip
    assert result.ok, result.runs
    assert [row["metrics"]["produce"]["seed"] for row in result.runs] == [7, 8]
