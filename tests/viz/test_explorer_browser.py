"""The offline explorer in a real headless Chromium: scatter and map linked both ways, offline.

Skipped unless Chromium (``/usr/bin/chromium``, or ``$SARLAB_CHROMIUM``) and the ``playwright``
package are installed; no browser is ever downloaded. ``$SARLAB_EXPLORE_HTML`` points the test
at another page (e.g. ``reports/<run>/embeddings/explore.html`` of a notebook run) instead of
the one generated here. Expectations come from the page's own payload, whose correctness the
browser-free tests in test_maps.py check against brute force.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from test_maps import grid_scene

CHROMIUM = Path(os.environ.get("SARLAB_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is missing", exc_type=ImportError
)

ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

# page coordinates of points in the bokeh scatter, and of the plot frame
_SCATTER_JS = """() => {
  const view = [...Bokeh.index].find(v => v.frame);
  const box = view.el.getBoundingClientRect(), f = view.frame.bbox;
  const src = window.Bokeh.documents[0].get_model_by_name("sarlab_points");
  const sx = Array.from(src.data.x, x => box.left + view.frame.x_scale.compute(x));
  const sy = Array.from(src.data.y, y => box.top + view.frame.y_scale.compute(y));
  return {sx, sy, frame: [box.left + f.left, box.top + f.top, f.width, f.height],
          selected: Array.from(src.selected.indices)};
}"""
_SELECTED_JS = """() => Array.from(window.Bokeh.documents[0]
  .get_model_by_name("sarlab_points").selected.indices).sort((a, b) => a - b)"""
_RING_JS = (
    """() => Array.from(window.Bokeh.documents[0].get_model_by_name("sarlab_neighbours").data.x)"""
)
# the rendered SVG fill / stroke of every footprint, by row
_MAP_STYLE_JS = """() => Object.fromEntries(Object.entries(window.sarlabMap.byRow).map(
  ([row, l]) => [row, [l._path.getAttribute("fill"), l._path.getAttribute("stroke"),
                       l._path.getAttribute("fill-opacity")]]))"""


@pytest.fixture(scope="module")
def page_file(tmp_path_factory) -> Path:
    given = os.environ.get("SARLAB_EXPLORE_HTML")
    if given:
        return Path(given).resolve()
    from sarlab.embed_search import kmeans, pca_rgb
    from sarlab.viz.maps import explorer_html, quicklook

    ds, gdf = grid_scene(rows=4, cols=6)
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(3, 8)) * 3)[np.arange(len(gdf)) % 3] + rng.normal(size=(len(gdf), 8))
    clusters, _ = kmeans(x, 3)
    out = tmp_path_factory.mktemp("explorer") / "explore.html"
    return explorer_html(
        gdf, x.astype(np.float32), out, k=4, scene_image=quicklook(ds), rgb=pca_rgb(x),
        clusters=clusters, labels=np.arange(len(gdf)) % 4, label_name="SOD", query=3,
    )  # fmt: skip


@pytest.fixture(scope="module")
def browser_page(page_file, tmp_path_factory):
    """The page loaded in Chromium, with every request and script error recorded."""
    profile = tmp_path_factory.mktemp("chromium-profile")  # an empty --user-data-dir
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=ARGS, headless=True,
            viewport={"width": 1400, "height": 950},
        )  # fmt: skip
        log: dict[str, list[str]] = {"requests": [], "errors": [], "network": []}
        context.route(re.compile(r"^(https?|wss?)://"), lambda route: (
            log["network"].append(route.request.url), route.abort()))  # fmt: skip
        page = context.new_page()
        page.on("request", lambda request: log["requests"].append(request.url))
        page.on("pageerror", lambda error: log["errors"].append(str(error)))
        page.on("console", lambda m: log["errors"].append(m.text) if m.type == "error" else None)
        page.goto(page_file.as_uri())
        page.wait_for_function(
            "() => window.sarlabExplorer && window.sarlabExplorer.state().focus !== null"
            " && document.getElementById('sarlab-map').contentWindow.sarlabMap",
            timeout=30_000,
        )
        yield page, log
        context.close()


def _map(page):
    return next(f for f in page.frames if f != page.main_frame)


def _wait_for(page, predicate: str) -> None:
    page.wait_for_function(predicate, timeout=10_000)


def _panel_rows(page) -> list[list[str]]:
    return page.eval_on_selector_all(
        "#sarlab-panel tr[data-row]", "rows => rows.map(r => [r.dataset.row, r.innerText])"
    )


def _assert_focus_shown(page, row: int) -> None:
    """``row`` is selected in the scatter, its neighbours ringed, listed with scores, on the map."""
    data = page.evaluate("() => window.sarlabExplorer.data")
    neighbours, scores = data["neighbours"][row], data["scores"][row]
    assert page.evaluate(_SELECTED_JS) == [row]
    ring = page.evaluate(_RING_JS)
    points_x = page.evaluate(
        "() => Array.from(window.Bokeh.documents[0].get_model_by_name('sarlab_points').data.x)"
    )
    np.testing.assert_allclose(ring, [points_x[i] for i in neighbours])
    panel = page.inner_text("#sarlab-panel")
    assert data["chip_id"][row] in panel
    listed = _panel_rows(page)
    assert [int(r) for r, _ in listed] == neighbours
    for (_, text), i, s in zip(listed, neighbours, scores, strict=True):
        assert data["chip_id"][i] in text and f"{s:.4f}" in text
    frame = _map(page)
    frame.wait_for_function(f"() => window.sarlabMap.shown().focus === {row}", timeout=10_000)
    styles = frame.evaluate(_MAP_STYLE_JS)
    focus = frame.evaluate("() => window.sarlabMap.STYLE")
    assert styles[str(row)][1] == focus["focus"]["color"]
    for i in neighbours:
        assert styles[str(i)][0] == focus["neighbour"]["fillColor"], i
    others = set(map(int, styles)) - {row, *neighbours}
    assert others and all(styles[str(i)][2] == "0" for i in others)  # back to plain outlines


def test_page_opens_on_its_query_offline(browser_page):
    page, _ = browser_page
    query = page.evaluate("() => window.sarlabExplorer.data.query")
    _assert_focus_shown(page, query)
    assert page.evaluate("() => window.Bokeh.documents.length") == 1


def test_box_selection_in_the_scatter_highlights_footprints(browser_page):
    page, _ = browser_page
    geo = page.evaluate(_SCATTER_JS)
    sx, sy = np.asarray(geo["sx"]), np.asarray(geo["sy"])
    left, top, _, height = geo["frame"]
    # a box over the whole height, from the left edge to the middle of the widest gap in x
    # between the first and the last quarter of the points
    order = np.sort(sx)
    lo, hi = len(sx) // 4, max(len(sx) // 4 + 1, 3 * len(sx) // 4)
    gap = lo + int(np.argmax(np.diff(order)[lo:hi]))
    right = (order[gap] + order[gap + 1]) / 2
    assert order[gap + 1] - order[gap] > 1, "points too close in x for a clean box"
    expected = sorted(int(i) for i in np.flatnonzero(sx < right))
    page.mouse.move(left + 1, top + 1)
    page.mouse.down()
    page.mouse.move((left + right) / 2, top + height / 2, steps=5)
    page.mouse.move(right, top + height - 1, steps=5)
    page.mouse.up()
    _wait_for(page, f"() => window.sarlabExplorer.state().rows.length === {len(expected)}")
    assert page.evaluate(_SELECTED_JS) == expected
    assert 1 < len(expected) < len(sx) and (sy > 0).all()
    frame = _map(page)
    frame.wait_for_function(
        f"() => window.sarlabMap.shown().rows.length === {len(expected)}", timeout=10_000
    )
    styles = frame.evaluate(_MAP_STYLE_JS)
    blue = frame.evaluate("() => window.sarlabMap.STYLE.selected.fillColor")
    assert sorted(int(r) for r, s in styles.items() if s[0] == blue) == expected
    assert f"{len(expected)} chips selected" in page.inner_text("#sarlab-panel")


def test_clicking_a_footprint_selects_it_in_the_scatter_and_lists_neighbours(browser_page):
    page, _ = browser_page
    frame = _map(page)
    current = set(page.evaluate(_SELECTED_JS)) | {
        page.evaluate("() => window.sarlabExplorer.data.query")
    }
    n = page.evaluate("() => window.sarlabExplorer.data.chip_id.length")
    row = next(r for r in range(n - 1, -1, -1) if r not in current)
    # zoom to the chip (a real page may have chips of a few pixels), then click its centre
    point = frame.evaluate(
        """row => {
          const m = window.sarlabMap, l = m.byRow[row];
          m.map.fitBounds(l.getBounds(), {animate: false, padding: [120, 120]});
          const p = m.map.latLngToContainerPoint(l.getBounds().getCenter());
          const r = m.map.getContainer().getBoundingClientRect();
          const x = r.left + p.x, y = r.top + p.y;
          return {x, y, hit: document.elementFromPoint(x, y) === l._path};
        }""",
        row,
    )
    assert point["hit"], "the footprint is not the topmost element at its centre"
    box = page.locator("#sarlab-map").bounding_box()
    page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])
    _wait_for(page, f"() => window.sarlabExplorer.state().focus === {row}")
    _assert_focus_shown(page, row)


def test_tapping_a_point_and_picking_an_id_select_that_chip_and_show_it(browser_page):
    page, _ = browser_page
    geo = page.evaluate(_SCATTER_JS)
    sx, sy = np.asarray(geo["sx"]), np.asarray(geo["sy"])
    focus = page.evaluate("() => window.sarlabExplorer.state().focus")
    gaps = np.hypot(sx[:, None] - sx[None], sy[:, None] - sy[None]) + np.eye(len(sx)) * 1e9
    lonely = [i for i in np.argsort(-gaps.min(axis=1)) if i != focus]
    row = int(lonely[0])
    assert gaps[row].min() > 8, "no point far enough from the others to tap"
    page.mouse.click(float(sx[row]), float(sy[row]))
    _wait_for(page, f"() => window.sarlabExplorer.state().focus === {row}")
    _assert_focus_shown(page, row)
    other = int(lonely[1])
    # zoom deep into the tapped chip: the picked one is then off screen, and the map goes there
    frame = _map(page)
    frame.evaluate(
        """row => { const m = window.sarlabMap;
          m.map.setView(m.byRow[row].getBounds().getCenter(), 19, {animate: false}); }""",
        row,
    )
    in_view = "r => sarlabMap.map.getBounds().intersects(sarlabMap.byRow[r].getBounds())"
    assert not frame.evaluate(in_view, other)
    chip = page.evaluate(f"() => window.sarlabExplorer.data.chip_id[{other}]")
    page.fill("#sarlab-pick", chip)
    page.dispatch_event("#sarlab-pick", "change")
    _wait_for(page, f"() => window.sarlabExplorer.state().focus === {other}")
    _assert_focus_shown(page, other)
    assert frame.evaluate(in_view, other)


def test_nothing_left_for_the_network_and_no_script_errors(browser_page):
    page, log = browser_page
    page.wait_for_timeout(300)
    assert log["network"] == []
    assert [u for u in log["requests"] if not u.startswith(("file:", "data:", "about:"))] == []
    assert log["errors"] == []
