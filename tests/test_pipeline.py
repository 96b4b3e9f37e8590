"""Pipeline validation: every mistake is caught before a kernel starts, and named precisely."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest
from fixture_paths import REPO_DIR, TESTS_DIR

from sarlab.errors import PipelineError
from sarlab.params import NotebookParameter, conform, notebook_parameters, parse_overrides
from sarlab.pipeline import load_pipeline, resolve_refs

NOTEBOOKS = TESTS_DIR / "data" / "notebooks"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A repo-shaped folder: pyproject.toml, notebooks/, pipelines/."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    shutil.copytree(NOTEBOOKS, tmp_path / "notebooks")
    (tmp_path / "pipelines").mkdir()
    return tmp_path


def write(project: Path, text: str, name: str = "p.yaml") -> Path:
    path = project / "pipelines" / name
    path.write_text(text)
    return path


FAILING_STEP = """name: p
description: test
steps:
  - notebook: notebooks/failing.ipynb
    name: boom
    parameters: {PARAMS}
"""


def test_unknown_parameter_names_file_step_and_parameter(project):
    path = write(project, FAILING_STEP.replace("{PARAMS}", "{fial: true}"))
    with pytest.raises(PipelineError) as raised:
        load_pipeline(path)
    message = str(raised.value)
    assert str(path) in message and "'boom'" in message and "'fial'" in message
    assert "declares: fail" in message  # and says what would have been right
    assert raised.value.path == str(path)


@pytest.mark.parametrize(
    ("params", "expected"),
    [("{fail: 'yes'}", "expected bool, got 'yes'"), ("{fail: 1}", "expected bool, got 1")],
)
def test_wrong_literal_type_is_an_error(project, params, expected):
    path = write(project, FAILING_STEP.replace("{PARAMS}", params))
    with pytest.raises(PipelineError, match=expected) as raised:
        load_pipeline(path)
    assert "'fail'" in str(raised.value) and str(path) in str(raised.value)


def test_missing_notebook_bad_yaml_and_unknown_keys(project):
    missing = write(project, FAILING_STEP.replace("failing", "nope").replace("{PARAMS}", "{}"))
    with pytest.raises(PipelineError, match=r"notebook 'notebooks/nope.ipynb' not found") as raised:
        load_pipeline(missing)
    assert str(project / "notebooks" / "nope.ipynb") in str(raised.value)

    bad = write(project, "name: p\nsteps: [\n", "bad.yaml")
    with pytest.raises(PipelineError, match="not valid YAML") as raised:
        load_pipeline(bad)
    assert str(bad) in str(raised.value)

    with pytest.raises(PipelineError, match="does not exist"):
        load_pipeline(project / "pipelines" / "absent.yaml")

    top = write(project, FAILING_STEP.replace("{PARAMS}", "{}") + "stepz: []\n", "top.yaml")
    with pytest.raises(PipelineError, match=r"pipeline: unknown key\(s\) \['stepz'\]"):
        load_pipeline(top)
    step = write(project, FAILING_STEP.replace("{PARAMS}", "{}\n    timout: 3"), "step.yaml")
    with pytest.raises(PipelineError, match=r"step 1: unknown key\(s\) \['timout'\]"):
        load_pipeline(step)


def test_step_names_must_be_unique_and_safe(project):
    twice = FAILING_STEP.replace("{PARAMS}", "{}") + "  - notebook: notebooks/failing.ipynb\n"
    path = write(project, twice.replace("    name: boom\n", ""))
    with pytest.raises(PipelineError, match=r"unique; give 'name' to \['failing'\]"):
        load_pipeline(path)
    path = write(project, FAILING_STEP.replace("boom", "../boom").replace("{PARAMS}", "{}"))
    with pytest.raises(PipelineError, match=r"step name '\.\./boom'"):
        load_pipeline(path)


def test_defaults_and_overrides_resolve_in_order(project):
    text = """name: p
description: test
defaults: {smoke: true, fail: false}
steps:
  - notebook: notebooks/report_features.ipynb
    name: features
    parameters: {n_points: 5, scale: 2}
  - notebook: notebooks/failing.ipynb
    name: boom
"""
    path = write(project, text)
    pipeline = load_pipeline(path, {"n_points": 6, "features.scale": 3, "boom.fail": True})
    features, boom = pipeline.steps
    # defaults go only where declared; a step-less --set beats the step; step.param beats all
    assert features.parameters == {"smoke": True, "n_points": 6, "scale": 3.0}
    assert isinstance(features.parameters["scale"], float)
    assert boom.parameters == {"fail": True}
    resolved = features.resolved_parameters()
    assert resolved["title"] == "backscatter" and resolved["bands"] == ["VV", "VH"]
    assert resolved["threshold"] is None and resolved["n_points"] == 6
    assert pipeline.root == project.resolve()

    with pytest.raises(PipelineError, match=r"'features' \(report_features.ipynb\) --set: unknown"):
        load_pipeline(path, {"features.n_pionts": 3})
    with pytest.raises(PipelineError, match="--set: parameter 'scale': expected float, got 'x'"):
        load_pipeline(path, {"scale": "x"})
    with pytest.raises(PipelineError, match="no step named 'feature'"):
        load_pipeline(path, {"feature.scale": 3})
    with pytest.raises(PipelineError, match="--set: parameter 'sclae' is not declared by any"):
        load_pipeline(path, {"sclae": 3})
    typo = write(project, text.replace("smoke: true", "smoek: true"), "typo.yaml")
    with pytest.raises(PipelineError, match="defaults: parameter 'smoek' is not declared"):
        load_pipeline(typo)


def test_parse_overrides_reads_yaml_values():
    assert parse_overrides(["a.b=3", "smoke=true", "title=two words", "bands=[HH, HV]", "x="]) == {
        "a.b": 3,
        "smoke": True,
        "title": "two words",
        "bands": ["HH", "HV"],
        "x": "",
    }
    with pytest.raises(PipelineError, match=r"expected STEP\.PARAM=VALUE"):
        parse_overrides(["no-equals-sign"])


def test_notebook_parameters_reads_hints_defaults_and_comments(tmp_path):
    cell = nbformat.v4.new_code_cell(
        'mode: Literal["mae", "hog"] = "mae"  # SSL method\n'
        "opt: int | None = None  # optional\n"
        'label: str = "a # b"  # a hash inside a string\n'
        "derived = 2 * 3\n"
        "plain = 4\n"
    )
    cell.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), cell])
    nbformat.write(nb, tmp_path / "n.ipynb")
    found = notebook_parameters(tmp_path / "n.ipynb")
    assert list(found) == ["mode", "opt", "label", "derived", "plain"]
    assert found["mode"].type_hint == "Literal['mae', 'hog']" and found["mode"].help == "SSL method"
    assert found["opt"].type_hint == "int | None" and found["opt"].default is None
    assert found["label"].default == "a # b" and found["label"].help == "a hash inside a string"
    assert not found["derived"].has_literal_default and found["derived"].default_source == "2 * 3"
    assert found["plain"].type_hint is None and found["plain"].default == 4


@pytest.mark.parametrize(
    ("hint", "value", "result"),
    [
        ("bool", True, True),
        ("bool", 1, TypeError),
        ("int", True, TypeError),
        ("int", 3, 3),
        ("float", 3, 3.0),
        ("float", "3", TypeError),
        ("str", "x", "x"),
        ("list[str]", ["a", "b"], ["a", "b"]),
        ("list[str]", ["a", 1], TypeError),
        ("list[float]", [1, 2.5], [1.0, 2.5]),
        ("dict[str, int]", {"a": 1}, {"a": 1}),
        ("dict[str, int]", {"a": "1"}, TypeError),
        ("int | None", None, None),
        ("Optional[int]", "x", TypeError),
        ("Literal['mae', 'hog']", "hog", "hog"),
        ("Literal['mae', 'hog']", "dino", TypeError),
        ("Literal[1, 2]", True, TypeError),
        ("Path", "anything", "anything"),  # a hint we cannot check is not guessed at
    ],
)
def test_conform_checks_values_against_type_hints(hint, value, result):
    parameter = NotebookParameter("p", hint, "")
    if result is TypeError:
        with pytest.raises(TypeError, match=re.escape(f"expected {hint}, got {value!r}")):
            conform(value, parameter)
    else:
        converted = conform(value, parameter)
        assert converted == result and type(converted) is type(result)


def test_conform_without_hint_uses_the_default_type():
    parameter = NotebookParameter("p", None, "4", default=4)
    assert conform(5, parameter) == 5
    with pytest.raises(TypeError, match=r"expected int \(the type of its default\)"):
        conform("5", parameter)
    assert conform("free", NotebookParameter("p", None, "None", default=None)) == "free"


@pytest.mark.parametrize("name", ["smoke", "demo", "sweep-finetune"])
def test_repository_pipelines_validate(name):
    pipeline = load_pipeline(REPO_DIR / "pipelines" / f"{name}.yaml")
    assert pipeline.name == name and pipeline.steps
    for step in pipeline.steps:
        assert step.notebook.is_relative_to(REPO_DIR / "notebooks")
        if name == "smoke":
            assert step.parameters.get("smoke") is True, f"{step.name} does not run with smoke"


CHAIN = """name: chain
description: a producer and a consumer of its artifact
steps:
  - notebook: notebooks/producer.ipynb
    name: produce
    outputs: [model]
  - notebook: notebooks/consumer.ipynb
    name: consume
    parameters: {model: "${produce.model}"}
"""


def test_artifact_references_resolve_and_imply_needs(project, tmp_path):
    pipeline = load_pipeline(write(project, CHAIN))
    produce, consume = pipeline.steps
    assert produce.outputs == ("model",) and produce.needs == ()
    assert consume.needs == ("produce",) and consume.parameters["model"] == "${produce.model}"
    assert resolve_refs(consume.parameters, tmp_path) == {"model": str(tmp_path / "model")}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("${produce.model}", "${nobody.model}"), r"\$\{nobody.model\} names no earlier step"),
        (("${produce.model}", "${produce.weights}"), r"declares no output 'weights'"),
        (("outputs: [model]", "outputs: [../model]"), r"output '../model' must be a path inside"),
        (("outputs: [model]", "outputs: model"), r"'outputs' must be a list of names"),
        (("    name: consume\n", "    name: consume\n    needs: [later]\n"), r"needs 'later'"),
        (("    name: consume\n", "    name: consume\n    time_limit: -1\n"), r"'time_limit' must"),
    ],
)
def test_bad_references_outputs_and_needs_are_named(project, change, message):
    path = write(project, CHAIN.replace(*change))
    with pytest.raises(PipelineError, match=message) as raised:
        load_pipeline(path)
    assert str(path) in str(raised.value)


def test_default_needs_are_every_earlier_step_and_explicit_needs_narrow_them(project):
    text = CHAIN.replace('parameters: {model: "${produce.model}"}', "needs: []")
    text += "  - notebook: notebooks/failing.ipynb\n    name: last\n    parameters: {fail: false}\n"
    consume, last = load_pipeline(write(project, text)).steps[1:]
    assert consume.needs == () and last.needs == ("produce", "consume")


def test_sweep_expands_points_times_grid(project):
    text = CHAIN + (
        "sweep:\n  points: [{produce.value: 1.0}, {produce.value: 2.0}]\n"
        "  grid: {produce.seed: [0, 1, 2]}\n  workers: 3\n"
    )
    sweep = load_pipeline(write(project, text)).sweep
    assert sweep is not None and sweep.workers == 3 and len(sweep.points) == 6
    assert sweep.points[0] == {"produce.value": 1.0, "produce.seed": 0}
    assert sweep.points[5] == {"produce.value": 2.0, "produce.seed": 2}
    assert sweep.varied == ["produce.value", "produce.seed"]


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ("sweep: {grid: {produce.seed: 3}}", "'grid' must map"),
        ("sweep: {points: {produce.seed: 3}}", "'points' must be a list"),
        ("sweep: {}", "give a 'grid' or 'points'"),
        ("sweep: {grid: {produce.seed: [1]}, workers: 0}", "'workers' must be a positive"),
        ("sweep: {grid: {produce.seed: [1]}, size: 2}", r"unknown key\(s\) \['size'\]"),
    ],
)
def test_bad_sweep_sections_are_refused(project, sweep, message):
    with pytest.raises(PipelineError, match=message):
        load_pipeline(write(project, CHAIN + sweep + "\n"))
