"""``sarlab run`` under torchrun: one run folder, rank 0 writes the run, the others follow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from run_helpers import CHAIN, make_project, record, statuses

from sarlab.errors import InputError
from sarlab.experiment import publish_checkpoint
from sarlab.pipeline import load_pipeline
from sarlab.provenance import read_step_metrics, record_metrics
from sarlab.run import run_pipeline
from sarlab.run_ranks import follow_run, torchrun_run_id


@pytest.fixture
def project(tmp_path) -> Path:
    return make_project(tmp_path / "project", {"chain": CHAIN})


def _as_rank(monkeypatch, rank: int, world: int = 2, elastic: str = "job7") -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", elastic)


def test_a_follower_runs_every_step_beside_rank_0_and_writes_nothing_of_the_run(
    project, monkeypatch
):
    reports = project / "reports"
    run_dir = reports / "chain-job7"  # what rank 0 creates for TORCHELASTIC_RUN_ID=job7
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "run.json").write_text('{"status": "running"}')
    (run_dir / "model" / "weights.json").write_text('{"seed": 3, "value": 1.5}')
    _as_rank(monkeypatch, 1)
    result = run_pipeline(project / "pipelines" / "chain.yaml", reports, progress=False)
    assert result.status == "ok" and result.run_id == "chain-job7"
    rank_dir = run_dir / "ranks" / "rank1"
    assert sorted(p.name for p in rank_dir.glob("*.ipynb")) == ["consume.ipynb", "produce.ipynb"]
    status = json.loads((rank_dir / "status.json").read_text())
    assert status["steps"] == {"produce": "ok", "consume": "ok"}
    # rank 0's record, the HTML, the report and the index are untouched or absent
    assert (run_dir / "run.json").read_text() == '{"status": "running"}'
    assert not list(run_dir.glob("*.html")) and not (reports / "index.html").exists()
    assert not (run_dir / "metrics").exists()  # record_metrics is rank 0's
    consumed = (rank_dir / "consume.ipynb").read_text()
    assert str(run_dir / "model") in consumed  # the artifact reference is rank 0's folder


def test_a_follower_waits_for_rank_0_and_says_so_when_it_never_comes(project, tmp_path):
    pipeline = load_pipeline(project / "pipelines" / "chain.yaml")
    with pytest.raises(InputError, match=r"rank 0 did not start this run within 0\.3 s"):
        follow_run(pipeline, tmp_path / "never", 1, "python3", wait_s=0.3)


def test_ranks_agree_on_the_run_id_or_are_told_to_give_one(monkeypatch):
    _as_rank(monkeypatch, 0, elastic="a1b2/c3")
    assert torchrun_run_id("pretrain") == "pretrain-a1b2-c3"
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    with pytest.raises(InputError, match="give --run-id"):
        torchrun_run_id("pretrain")


def test_only_rank_0_publishes_checkpoints_and_metrics(tmp_path, monkeypatch):
    src = tmp_path / "ckpt"
    src.mkdir()
    (src / "model_card.json").write_text("{}")
    _as_rank(monkeypatch, 1)
    assert publish_checkpoint(src, tmp_path / "published") == tmp_path / "published"
    assert not (tmp_path / "published").exists()
    record_metrics({"loss": 1.0}, run_dir=tmp_path)
    assert read_step_metrics(tmp_path, "interactive") == {}
    _as_rank(monkeypatch, 0)
    publish_checkpoint(src, tmp_path / "published")
    record_metrics({"loss": 1.0}, run_dir=tmp_path)
    assert (tmp_path / "published" / "model_card.json").is_file()
    assert read_step_metrics(tmp_path, "interactive") == {"loss": 1.0}


def test_torchrun_with_two_processes_gives_one_run(project):
    """The documented multi-GPU command, on CPU: two runners, one run folder and one index row."""
    reports = project / "reports"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "sarlab.cli", "run", str(project / "pipelines" / "chain.yaml"),
        "--reports-dir", str(reports), "--run-id", "multi", "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in reports.iterdir() if p.is_dir() and p.name[0] != "."] == ["multi"]
    run = record(reports / "multi")
    assert run["status"] == "ok" and statuses(run) == {"produce": "ok", "consume": "ok"}
    assert run["metrics"]["produce"]["score"] == 6.0  # 1.5 * 2 + 3, written once by rank 0
    follower = json.loads((reports / "multi" / "ranks" / "rank1" / "status.json").read_text())
    assert follower["status"] == "ok"
    assert (reports / "multi" / "report.html").is_file()
    assert (reports / "index.html").read_text().count("multi/report.html") >= 1
