"""End-to-end runs: papermill executes real notebooks, reports land in reports/<run_id>/.

Kernel start-up costs seconds, so two runs are shared by the module: a successful
two-step run (HoloViews/Bokeh plot, folium map, math) and a failing one through the CLI.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest
from fixture_paths import REPO_DIR, TESTS_DIR
from test_html_offline import code_classes, external_resources, iframe_documents

import sarlab.run
from sarlab.errors import InputError
from sarlab.report import read_runs
from sarlab.run import run_pipeline
from sarlab.run_cli import register_cli, rerun

NOTEBOOKS = TESTS_DIR / "data" / "notebooks"
GIT = ["git", "-c", "user.name=sarlab", "-c", "user.email=t@example.invalid"]
GIT += ["-c", "commit.gpgsign=false"]

OK_PIPELINE = """name: ok
description: a plot, a map, and a quiet second step
defaults: {smoke: true}
steps:
  - notebook: notebooks/report_features.ipynb
    name: features
    parameters: {n_points: 7, scale: 2, title: slope two, bands: [HH, HV]}
  - notebook: notebooks/failing.ipynb
    name: quiet
    parameters: {fail: false}
"""
FAILING_PIPELINE = """name: bad
description: the first step raises, the second must be skipped
steps:
  - notebook: notebooks/failing.ipynb
    name: boom
  - notebook: notebooks/failing.ipynb
    name: after
    parameters: {fail: false}
"""


def cli(*argv: str) -> tuple[int, str, str]:
    """``sarlab run ...`` through the subcommand's own parser; (exit code, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="sarlab")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["run", *argv])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = args.func(args)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A throwaway git repository holding the test notebooks and two pipelines."""
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(NOTEBOOKS, root / "notebooks")
    (root / "pipelines").mkdir()
    (root / "pipelines" / "ok.yaml").write_text(OK_PIPELINE)
    (root / "pipelines" / "bad.yaml").write_text(FAILING_PIPELINE)
    (root / "README.md").write_text("test project\n")
    (root / "pyproject.toml").write_text("[project]\nname = 'fixture'\n")  # marks the root
    if shutil.which("git"):
        for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "fixture"]):
            subprocess.run([*GIT, *command], cwd=root, check=True, capture_output=True)
    return root


def head(root: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture(scope="module")
def ok_run(project):
    return run_pipeline(
        project / "pipelines" / "ok.yaml",
        reports_dir=project / "reports",
        run_id="ok-run",
        overrides={"features.n_points": 9},
        progress=False,
    )


@pytest.fixture(scope="module")
def failed_run(project, ok_run):
    (project / "README.md").write_text("changed after the commit\n")  # dirty from here on
    code, out, err = cli(
        str(project / "pipelines" / "bad.yaml"),
        "--reports-dir",
        str(project / "reports"),
        "--run-id",
        "bad-run",
        "--no-progress",
    )
    run_dir = project / "reports" / "bad-run"
    return code, out, err, run_dir, json.loads((run_dir / "run.json").read_text())


def test_successful_run_writes_notebooks_html_and_record(ok_run, project):
    run_dir = project / "reports" / "ok-run"
    assert ok_run.ok and ok_run.run_dir == run_dir
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "artifact.json",  # written by the notebook into SARLAB_RUN_DIR
        "features.html",
        "features.ipynb",
        "quiet.html",
        "quiet.ipynb",
        "report.html",  # the whole run in one document
        "run.json",
    ]
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("run.json", "features.html", "features.ipynb"):  # shareable, like open() makes
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o666 & ~umask
    record = json.loads((run_dir / "run.json").read_text())
    assert record == ok_run.record
    assert record["status"] == "ok" and record["error"] is None and record["run_id"] == "ok-run"
    assert record["pipeline"]["name"] == "ok" and record["pipeline"]["file"] == "pipelines/ok.yaml"
    assert record["overrides"] == {"features.n_points": 9}
    features, quiet = record["steps"]
    assert features["notebook"] == "notebooks/report_features.ipynb"
    assert features["injected"] == {
        "smoke": True,
        "n_points": 9,
        "scale": 2.0,
        "title": "slope two",
        "bands": ["HH", "HV"],
    }
    assert features["parameters"] == {**features["injected"], "threshold": None}
    assert quiet["parameters"] == {"fail": False}
    for step in (features, quiet):
        assert step["status"] == "ok" and step["error"] is None
        assert 0 < step["duration_s"] <= record["duration_s"]
        assert step["started"] >= record["started"] and step["ended"] <= record["ended"]
    assert features["outputs"] == {"notebook": "features.ipynb", "html": "features.html"}
    env = record["environment"]
    assert env["kernel"]["name"] in {"sarlab", "python3"}
    assert env["packages"]["papermill"] and env["python"].count(".") == 2
    # the notebook really ran with the injected values, in its own folder, writing to the run dir
    artifact = json.loads((run_dir / "artifact.json").read_text())
    assert artifact == {
        "smoke": True,
        "n_points": 9,
        "scale": 2.0,
        "bands": ["HH", "HV"],
        "cwd": str((project / "notebooks").resolve()),
    }


def test_html_is_offline_and_code_free(ok_run):
    html = ok_run.steps[0].html.read_text()
    assert external_resources(html) == []
    assert code_classes(html) == set()
    assert "SOURCE-ONLY-MARKER" not in html
    assert "OUTPUT-MARKER slope two n_points=9 scale=2.0" in html
    # the Bokeh plot came with INLINE resources and kept them; no BokehJS from a CDN
    assert "Bokeh.set_log_level" in html and "cdn.bokeh.org" not in html
    assert "cdn.holoviz.org" not in html  # panel stylesheets inlined
    # the folium map's iframe page carries Leaflet, jQuery (popups) and awesome-markers itself
    (map_page,) = [doc for doc in iframe_documents(html) if "L.map(" in doc]
    assert "Leaflet 1.9.4" in map_page and "jQuery v3.7.1" in map_page
    assert "AwesomeMarkers" in map_page and "Longyearbyen" in map_page
    assert "renderMathInElement" in html  # the markdown has $...$
    offline = ok_run.record["steps"][0]["offline"]
    assert {"leaflet", "jquery", "awesome-markers", "katex", "panel-css"} <= set(offline["inlined"])
    assert all("bootstrap" in u or "awesome" in u for u in offline["removed"]), offline["removed"]
    assert offline["online_only"] == []
    quiet = ok_run.steps[1].html.read_text()
    assert external_resources(quiet) == [] and "renderMathInElement" not in quiet


def test_html_header_names_the_run_and_parameters(ok_run):
    html = ok_run.steps[0].html.read_text()
    assert "Step <b>features</b> of pipeline <b>ok</b>" in html
    assert "<code>n_points</code></td><td><code>9</code>" in html
    assert '<a href="../index.html">All reports</a>' in html


def test_failing_cell_fails_the_run_and_skips_the_rest(failed_run):
    code, out, err, run_dir, record = failed_run
    assert code == 1 and out == ""
    assert "FAILED in step boom: ValueError: deliberate failure for the runner test" in err
    assert f"report: {run_dir / 'boom.html'}" in err
    assert record["status"] == "failed"
    assert record["error"] == {
        "step": "boom",
        "name": "ValueError",
        "message": "deliberate failure for the runner test",
    }
    boom, after = record["steps"]
    assert boom["status"] == "failed" and after["status"] == "skipped"
    assert after["outputs"] == {} and after["started"] is None
    cell = boom["error"]["cell"]
    assert cell["index"] == 3 and cell["execution_count"] == 3  # index in the source notebook
    assert cell["source"].startswith("if fail:\n    raise ValueError(")
    assert "ValueError: deliberate failure" in boom["error"]["traceback"]
    assert "\x1b[" not in boom["error"]["traceback"]
    # the executed notebook is kept and its HTML shows the error and what ran before it
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "boom.html", "boom.ipynb", "report.html", "run.json",
    ]  # fmt: skip
    html = (run_dir / "boom.html").read_text()
    assert "deliberate failure for the runner test" in html and "before the failure" in html
    assert "after the failure" not in html
    assert external_resources(html) == []


def test_index_lists_every_run_with_status_and_links(failed_run, project):
    index = (project / "reports" / "index.html").read_text()
    assert index.index("bad-run") < index.index("ok-run")  # newest first
    assert '<td class="ok">ok</td>' in index
    failed = '<td class="failed">failed<div class="error">boom: ValueError: deliberate failure'
    assert failed in index
    assert 'href="ok-run/report.html"' in index  # the run's one-document report
    assert 'href="ok-run/features.html"' in index and 'href="bad-run/boom.html"' in index
    assert 'href="bad-run/after.html"' not in index  # skipped: no report to link


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_run_records_git_sha_and_dirty_flag(ok_run, failed_run, project):
    record_bad = failed_run[4]
    assert ok_run.record["git"]["sha"] == head(project) and len(head(project)) == 40
    assert ok_run.record["git"]["dirty"] is False
    assert record_bad["git"]["sha"] == head(project)
    assert record_bad["git"]["dirty"] is True  # README.md changed before the second run


def test_run_id_must_be_new_and_safe(ok_run, project):
    with pytest.raises(InputError, match="a run with this id already exists"):
        run_pipeline(project / "pipelines" / "ok.yaml", project / "reports", run_id="ok-run")
    with pytest.raises(InputError, match=r"run id '\.\./escape'"):
        run_pipeline(project / "pipelines" / "ok.yaml", project / "reports", run_id="../escape")


def test_a_crash_never_leaves_a_record_claiming_success(project, monkeypatch):
    """run.json says ``running`` while a step runs, and ``interrupted`` if the run dies."""
    seen = []

    def crash(pipeline, step, run_dir, kernel, record, progress):
        seen.append(json.loads((run_dir / "run.json").read_text())["status"])
        raise KeyboardInterrupt

    monkeypatch.setattr(sarlab.run, "_run_step", crash)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(project / "pipelines" / "ok.yaml", project / "reports", run_id="crash")
    record = json.loads((project / "reports" / "crash" / "run.json").read_text())
    assert seen == ["running"]
    assert record["status"] == "interrupted" and record["ended"] is not None
    assert [s["status"] for s in record["steps"]] == ["failed", "skipped"]
    assert record["error"]["name"] == "KeyboardInterrupt"
    assert "interrupted" in (project / "reports" / "index.html").read_text()
    leftovers = [p for p in (project / "reports").iterdir() if p.name.startswith(".")]
    assert [p.name for p in leftovers] in ([], [".locks"])  # lock files only, no partials


def test_index_marks_abandoned_running_records_interrupted(project):
    """A run killed hard (no chance to write) stays ``running`` in run.json; the index knows."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    (project / "reports" / "killed").mkdir()
    record = {"run_id": "killed", "status": "running", "started": "2000-01-01T00:00:00+00:00"}
    record["environment"] = {"host": socket.gethostname(), "pid": dead.pid}
    (project / "reports" / "killed" / "run.json").write_text(json.dumps(record))
    runs = {run["_dir"]: run for run in read_runs(project / "reports")}
    assert runs["killed"]["status"] == "interrupted"
    record["environment"]["pid"] = os.getpid()  # alive: still running
    (project / "reports" / "killed" / "run.json").write_text(json.dumps(record))
    assert {r["_dir"]: r for r in read_runs(project / "reports")}["killed"]["status"] == "running"
    shutil.rmtree(project / "reports" / "killed")


def test_dry_run_validates_and_prints_resolved_parameters(project):
    code, out, _ = cli(str(project / "pipelines" / "ok.yaml"), "--dry-run", "--set", "scale=4")
    plan = json.loads(out)
    assert code == 0 and plan["pipeline"] == "ok"
    assert plan["steps"]["features"]["scale"] == 4.0 and plan["steps"]["quiet"] == {"fail": False}


def test_smoke_pipeline_runs_every_notebook(tmp_path, demo_data):
    """CI: every notebook runs end to end with smoke: true and exports offline HTML.

    Then the same pipeline again: every step is restored from the cache; and a forced
    rerun from run.json reproduces every recorded metric exactly.
    """
    result = run_pipeline(REPO_DIR / "pipelines" / "smoke.yaml", tmp_path, progress=False)
    assert result.ok, result.record["error"]
    for step in result.steps:
        html = step.html.read_text()
        assert external_resources(html) == [] and code_classes(html) == set()
        offline = next(s for s in result.record["steps"] if s["name"] == step.name)["offline"]
        assert offline["online_only"] == [], (step.name, offline)  # no BokehJS from a CDN
    report = result.report.read_text()
    assert external_resources(report) == [] and code_classes(report) == set()
    assert "cdn.bokeh.org" not in report and "cdn.holoviz.org" not in report
    for step in result.steps:
        assert f'id="step-{step.name}"' in report
    for figure in ("var docs_json = ", "<iframe"):  # bokeh figures, maps (images: fallbacks)
        in_steps = sum(step.html.read_text().count(figure) for step in result.steps)
        assert report.count(figure) == in_steps > 0, figure
    assert 'id="sarlab-header-card"' in report and "demo-arctic-sim" in report
    assert result.record["metrics"]["01_pretrain"]["steps"] == 4  # smoke: 4 updates
    fallbacks = {s["name"]: s["offline"]["static_fallbacks"] for s in result.record["steps"]}
    assert all(count > 0 for count in fallbacks.values()), fallbacks
    assert report.count('class="sarlab-static-fallback"') == sum(fallbacks.values())
    checkpoint = result.run_dir / "checkpoint"
    assert result.record["steps"][2]["parameters"]["checkpoint"] == "${01_pretrain.checkpoint}"
    assert (checkpoint / "model_card.json").is_file()

    cached = run_pipeline(REPO_DIR / "pipelines" / "smoke.yaml", tmp_path, progress=False)
    assert cached.ok and {s.status for s in cached.steps} == {"cached"}
    assert cached.record["metrics"] == result.record["metrics"]

    again = rerun(tmp_path, result.run_id, progress=False)
    assert again.ok and {s.status for s in again.steps} == {"ok"}
    assert again.record["rerun_check"]["identical"], again.record["rerun_check"]


@pytest.mark.slow
def test_demo_pipeline_reruns_with_identical_metrics(tmp_path, demo_data):
    """`make demo` twice (the second a forced rerun from run.json): the same metrics, exactly."""
    result = run_pipeline(REPO_DIR / "pipelines" / "demo.yaml", tmp_path, progress=False)
    assert result.ok, result.record["error"]
    assert {"01_pretrain", "02_explore_embeddings", "03_finetune"} <= set(result.record["metrics"])
    again = rerun(tmp_path, result.run_id, progress=False)
    assert again.ok and again.record["rerun_check"]["identical"], again.record["rerun_check"]
