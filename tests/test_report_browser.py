"""report.html and index.html in a real headless Chromium: offline, figures drawn, sortable.

Skipped unless Chromium (``/usr/bin/chromium``, or ``$SARLAB_CHROMIUM``) and the ``playwright``
package are installed (no browser is ever downloaded); the browser-free checks of the same
pages are in test_run.py and test_run_cache.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from run_helpers import make_project

CHROMIUM = Path(os.environ.get("SARLAB_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is missing", exc_type=ImportError
)

from sarlab.report_index import write_index  # noqa: E402
from sarlab.run import run_pipeline  # noqa: E402

ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
FEATURES = """name: features
description: a bokeh plot with its static twin, and a folium map
steps:
  - notebook: notebooks/report_features.ipynb
    name: features
    parameters: {n_points: 5, title: browser check}
  - notebook: notebooks/failing.ipynb
    name: quiet
    parameters: {fail: false}
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with sync_api.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield launched
        launched.close()


def _open(browser, path: Path, javascript: bool = True):
    context = browser.new_context(java_script_enabled=javascript)
    page = context.new_page()
    seen = {"requests": [], "errors": []}
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.goto(path.resolve().as_uri())
    return page, seen


def test_report_draws_every_figure_offline_and_falls_back_without_javascript(browser, tmp_path):
    project = make_project(tmp_path / "project", {"features": FEATURES})
    result = run_pipeline(project / "pipelines" / "features.yaml", project / "reports",
                          "browser", progress=False)  # fmt: skip
    assert result.ok
    page, seen = _open(browser, result.report)
    page.wait_for_function("window.Bokeh && Bokeh.index && [...Bokeh.index].length > 0")
    html = result.report.read_text()
    assert len(page.evaluate("[...Bokeh.index]")) >= html.count("var docs_json = ") >= 1
    assert page.locator("#sarlab-header-card").is_visible()
    assert page.frame_locator("iframe").first.locator(".leaflet-container").count() == 1
    web = [u for u in seen["requests"] if u.startswith(("http:", "https:"))]
    assert all("tile.openstreetmap.org" in u for u in web), web  # basemap tiles only
    assert seen["errors"] == []
    assert not page.locator("img.sarlab-static-fallback").is_visible()  # inside <noscript>

    page, _ = _open(browser, result.report, javascript=False)
    fallback = page.locator("img.sarlab-static-fallback")
    assert fallback.count() == 1 and fallback.is_visible()
    assert page.evaluate("document.querySelector('img.sarlab-static-fallback').naturalWidth") > 50


def test_index_sorts_by_a_metric_column(browser, tmp_path):
    for name, score in (("a", 0.5), ("b", 0.9), ("c", None), ("d", 0.7)):
        (tmp_path / name).mkdir()
        record = {"run_id": name, "status": "ok", "started": f"2026-01-01T00:00:0{ord(name) % 10}",
                  "pipeline": {"name": "p"}, "steps": [],
                  "metrics": {"eval": {} if score is None else {"score": score}}}  # fmt: skip
        (tmp_path / name / "run.json").write_text(json.dumps(record))
    page, seen = _open(browser, write_index(tmp_path))
    header = page.locator("th", has_text="eval.score")

    def order() -> list[str]:
        return page.eval_on_selector_all(
            "table.runs tbody tr", "rows => rows.map(r => r.cells[0].textContent.split(' ')[0])"
        )

    header.click()
    assert order() == ["b", "d", "a", "c"]  # largest first, the run without the metric last
    header.click()
    assert order() == ["a", "d", "b", "c"]
    assert seen["errors"] == []
