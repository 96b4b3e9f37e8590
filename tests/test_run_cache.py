"""Artifacts by name, step caching, forced steps, declared outputs, time limits and --rerun."""

from __future__ import annotations

import time

import pytest
from run_helpers import CHAIN, make_project, record, statuses
from test_html_offline import external_resources

from sarlab.run import run_pipeline
from sarlab.run_cache import file_sha256
from sarlab.run_cli import compare_metrics, rerun


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    slow = CHAIN.replace("{seed: 3, value: 1.5}", "{seed: 1, sleep_s: 60.0}")
    slow = slow.replace("    outputs: [model]\n", "    outputs: [model]\n    time_limit: 6\n")
    missing = CHAIN.replace("outputs: [model]", "outputs: [model, weights.safetensors]")
    pipelines = {"chain": CHAIN, "slow": slow, "missing": missing}
    return make_project(tmp_path_factory.mktemp("cache_project"), pipelines)


@pytest.fixture(scope="module")
def first(project):
    return run_pipeline(project / "pipelines" / "chain.yaml", project / "reports", "first",
                        progress=False)  # fmt: skip


def test_artifacts_pass_by_name_and_metrics_reach_run_json(first):
    assert first.ok, first.record["error"]
    produce, consume = first.record["steps"]
    run_dir = first.run_dir
    # the consumer read the producer's folder through the resolved ${produce.model}
    assert first.record["metrics"] == {
        "produce": {"score": 6.0, "seed": 3},
        "consume": {"read_value": 1.5, "read_seed": 3},
    }
    assert produce["metrics"] == {"score": 6.0, "seed": 3}
    assert set(produce["artifacts"]) == {"model/weights.json", "metrics/produce.json"}
    assert produce["artifacts"]["model/weights.json"] == file_sha256(run_dir / "model/weights.json")
    assert set(consume["artifacts"]) == {"metrics/consume.json"}  # its html/ipynb are not
    assert consume["needs"] == ["produce"] and consume["injected"]["model"] == "${produce.model}"
    assert len(produce["cache_key"]) == 64 and produce["cache_key"] != consume["cache_key"]
    assert first.record["seeds"] == {"produce.seed": 3}
    hardware = first.record["hardware"]
    assert hardware["cores"] >= 1 and hardware["memory_gb"] > 0
    assert len(first.record["code_version"]) == 64
    assert "steps:" in first.record["pipeline"]["text"]


def test_report_html_has_header_card_metrics_and_every_step(first):
    page = first.report.read_text()
    assert external_resources(page) == []
    assert 'id="sarlab-header-card"' in page and "chain · run <code>first</code>" in page
    assert "<td><code>score</code></td><td>6</td>" in page  # key metrics in the card
    assert 'id="step-produce"' in page and 'id="step-consume"' in page
    assert page.index('id="step-produce"') < page.index('id="step-consume"')
    assert "PRODUCER-RAN 3 1.5" in page and "CONSUMER-READ" in page
    assert page.count("<html") == 1 and page.count("</body>") == 1


def test_unchanged_steps_are_restored_and_changes_rerun_their_dependants(project, first):
    reports = project / "reports"
    started = time.perf_counter()
    again = run_pipeline(project / "pipelines" / "chain.yaml", reports, "again", progress=False)
    assert again.ok and statuses(again.record) == {"produce": "cached", "consume": "cached"}
    assert again.record["steps"][0]["cached_from"] == {"run_id": "first", "step": "produce"}
    assert again.record["metrics"] == first.record["metrics"]
    for relative, sha in again.record["steps"][0]["artifacts"].items():
        assert file_sha256(again.run_dir / relative) == sha  # copied into the new run folder
    assert (again.run_dir / "produce.html").is_file() and again.report.is_file()
    header = (again.run_dir / "produce.html").read_text()
    assert "run <code>again</code>, status <b>cached</b>" in header
    assert time.perf_counter() - started < sum(s["duration_s"] for s in first.record["steps"])

    changed = run_pipeline(project / "pipelines" / "chain.yaml", reports, "changed",
                           {"produce.value": 2.5}, progress=False)  # fmt: skip
    assert statuses(changed.record) == {"produce": "ok", "consume": "ok"}  # upstream changed
    assert changed.record["metrics"]["consume"]["read_value"] == 2.5

    forced = run_pipeline(project / "pipelines" / "chain.yaml", reports, "forced",
                          force=["consume"], progress=False)  # fmt: skip
    assert statuses(forced.record) == {"produce": "cached", "consume": "ok"}

    # a cached run whose artifact was altered is not trusted: the step runs again
    for run_id in ("first", "again", "forced"):
        (reports / run_id / "model" / "weights.json").write_text('{"seed": 9, "value": 9}')
    tampered = run_pipeline(project / "pipelines" / "chain.yaml", reports, "tampered",
                            progress=False)  # fmt: skip
    assert statuses(tampered.record)["produce"] == "ok"
    assert tampered.record["metrics"]["consume"]["read_value"] == 1.5


def test_rerun_reproduces_a_run_from_its_record_and_compares_metrics(project, first):
    again = rerun(project / "reports", "first", progress=False)
    assert again.run_id == "first-rerun" and again.ok
    assert statuses(again.record) == {"produce": "ok", "consume": "ok"}  # forced, not cached
    assert again.record["rerun_of"] == "first"
    check = record(again.run_dir)["rerun_check"]
    assert check["identical"] is True and check["differences"] == {} and check["same_code"]
    second = rerun(project / "reports", "first", progress=False)
    assert second.run_id == "first-rerun2"


def test_compare_metrics_names_what_differs():
    before = {"a": {"x": 1.0, "y": 2}}
    assert compare_metrics(before, {"a": {"x": 1.0, "y": 2}})["identical"] is True
    check = compare_metrics(before, {"a": {"x": 1.5, "y": 2}, "b": {"z": 0}})
    assert check == {"identical": False, "differences": {"a.x": [1.0, 1.5], "b.z": [None, 0]}}
    assert compare_metrics({}, {})["identical"] is False  # nothing measured proves nothing


def test_a_declared_output_the_notebook_did_not_write_fails_the_step(project):
    result = run_pipeline(project / "pipelines" / "missing.yaml", project / "reports",
                          "missing", progress=False)  # fmt: skip
    assert not result.ok and statuses(result.record) == {"produce": "failed", "consume": "skipped"}
    error = result.record["steps"][0]["error"]
    assert error["name"] == "MissingOutput" and "weights.safetensors" in error["message"]


def test_time_limit_stops_the_whole_notebook(project):
    started = time.perf_counter()
    result = run_pipeline(project / "pipelines" / "slow.yaml", project / "reports", "slow",
                          progress=False)  # fmt: skip
    assert time.perf_counter() - started < 45  # the notebook alone would sleep 60 s
    assert not result.ok
    error = result.record["steps"][0]["error"]
    assert error["name"] == "TimeLimitExceeded" and "time_limit of 6 s" in error["message"]
    assert "This run did not finish" in result.report.read_text()
