"""The offline embedding explorer: a folium map and a bokeh scatter linked both ways, one HTML file.

A climate scientist without Jupyter should still be able to ask "which chips look like this
one?" and "where on the map are the chips of this corner of embedding space?". So the page
carries everything: the top-k table is computed in Python and embedded as JSON, the map lives
in an iframe (its own document, so folium's CSS stays out of the page) and talks to the page
by ``postMessage``, which works from ``file://`` and with no server:

- selecting points in the scatter (box, lasso, tap) highlights their footprints on the map;
- clicking a footprint selects its point in the scatter, rings its top-k neighbours there and
  lists them with their cosine scores in the side panel (rows of the panel are clickable);
- a chip id typed into the picker does the same as a click.

The map side finds its Leaflet layer through folium's JavaScript variable names and restyles
features with ``setStyle``/``resetStyle``; ``window.sarlabMap`` (in the map frame) and
``window.sarlabExplorer`` (in the page) expose the state for debugging and browser tests.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["DATA_ID", "HIGHLIGHT", "link_map", "page_html", "payload", "scatter_figure"]

# Leaflet path styles of highlighted chips, shared with the live explorer
HIGHLIGHT = {
    "neighbour": {"color": "#ff0000", "weight": 3, "fillColor": "#ffff00", "fillOpacity": 0.6},
    "selected": {"color": "#0033ff", "weight": 2, "fillColor": "#00e5ff", "fillOpacity": 0.6},
    "focus": {"color": "#ff00ff", "weight": 4, "fillColor": "#ff00ff", "fillOpacity": 0.35},
}
DATA_ID = "sarlab-explorer-data"  # id of the <script type="application/json"> with the payload
POINTS, RING = "sarlab_points", "sarlab_neighbours"  # bokeh model names the page looks up

# map frame: restyle footprints on "select" messages, report clicks to the page
_MAP_JS = """
(function () {
  "use strict";
  var map = %(map)s, layer = %(layer)s;
  var STYLE = %(styles)s;
  var byRow = {}, painted = [], shown = {rows: [], focus: null, neighbours: []};
  layer.eachLayer(function (l) { byRow[l.feature.properties.row] = l; });
  function paint(rows, style) {
    rows.forEach(function (row) {
      var l = byRow[row];
      if (l) { l.setStyle(style); l.bringToFront(); painted.push(l); }
    });
  }
  function show(msg) {
    painted.forEach(function (l) { layer.resetStyle(l); });
    painted = [];
    shown = {rows: msg.rows || [], focus: msg.focus, neighbours: msg.neighbours || []};
    paint(shown.neighbours, STYLE.neighbour);
    paint(shown.rows, STYLE.selected);
    if (shown.focus !== null && shown.focus !== undefined) paint([shown.focus], STYLE.focus);
    // a selection made in the scatter may lie off screen (another scene): then go there;
    // a click on the map is always in view, so the map never jumps under the mouse
    var view = map.getBounds(), bounds = null;
    painted.forEach(function (l) {
      bounds = bounds ? bounds.extend(l.getBounds()) : L.latLngBounds(l.getBounds());
    });
    var seen = painted.some(function (l) { return view.intersects(l.getBounds()); });
    if (bounds && !seen) map.fitBounds(bounds, {animate: false, maxZoom: map.getZoom() + 4});
  }
  layer.on("click", function (e) {
    var l = e.propagatedFrom || e.layer;
    if (l && l.feature) {
      window.parent.postMessage({sarlab: "click", row: l.feature.properties.row}, "*");
    }
  });
  window.addEventListener("message", function (e) {
    if (e.source === window.parent && e.data && e.data.sarlab === "select") show(e.data);
  });
  window.sarlabMap = {map: map, layer: layer, byRow: byRow, STYLE: STYLE,
                      shown: function () { return shown; }};
  if (window.parent !== window) window.parent.postMessage({sarlab: "ready"}, "*");
})();
"""

# page: state, side panel, picker, scatter <-> map messages
_PAGE_JS = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("%(data_id)s").textContent);
  var rowOf = {}, mapReady = false, state = {rows: [], focus: null, neighbours: []};
  data.chip_id.forEach(function (id, row) { rowOf[id] = row; });
  function $(id) { return document.getElementById(id); }
  function model(name) {
    var docs = (window.Bokeh && window.Bokeh.documents) || [];
    for (var i = 0; i < docs.length; i++) {
      var found = docs[i].get_model_by_name(name);
      if (found) return found;
    }
    return null;
  }
  function send() {
    var frame = $("sarlab-map");
    if (mapReady && frame) frame.contentWindow.postMessage({sarlab: "select", rows: state.rows,
      focus: state.focus, neighbours: state.neighbours}, "*");
  }
  function node(tag, text, parent) {
    var el = document.createElement(tag);
    if (text !== undefined) el.textContent = text;
    if (parent) parent.appendChild(el);
    return el;
  }
  function describe(row) {
    return Object.keys(data.fields).map(function (k) {
      return k + " " + data.fields[k][row]; }).join(" · ");
  }
  function render() {
    var panel = $("sarlab-panel");
    if (!panel) return;
    panel.textContent = "";
    panel.setAttribute("data-focus", state.focus === null ? "" : String(state.focus));
    if (state.focus !== null) {
      var f = state.focus;
      node("b", data.chip_id[f], panel);
      node("div", describe(f), panel);
      node("div", "its " + state.neighbours.length + " most similar chips (cosine):", panel);
      var table = node("table", undefined, panel), head = node("tr", undefined, table);
      ["rank", "chip", "cosine"].concat(Object.keys(data.fields)).forEach(function (h) {
        node("th", h, head); });
      state.neighbours.forEach(function (row, rank) {
        var tr = node("tr", undefined, table);
        tr.setAttribute("data-row", String(row));
        tr.style.cursor = "pointer";
        tr.addEventListener("click", function () { select(row); });
        node("td", String(rank + 1), tr);
        node("td", data.chip_id[row], tr);
        node("td", data.scores[f][rank].toFixed(4), tr);
        Object.keys(data.fields).forEach(function (k) {
          node("td", String(data.fields[k][row]), tr); });
      });
    } else if (state.rows.length) {
      node("b", state.rows.length + " chips selected in the scatter (blue on the map)", panel);
      node("div", state.rows.slice(0, 40).map(function (r) { return data.chip_id[r]; }).join(", ")
        + (state.rows.length > 40 ? ", ..." : ""), panel);
    } else {
      node("div", "Click a chip on the map, tap or box/lasso-select points in the scatter, " +
        "or type a chip id.", panel);
    }
  }
  function fromScatter(indices) {
    var rows = Array.prototype.slice.call(indices).map(Number).sort(function (a, b) {
      return a - b; });
    state = {rows: rows, focus: rows.length === 1 ? rows[0] : null, neighbours: []};
    if (state.focus !== null) state.neighbours = data.neighbours[state.focus];
    var points = model("%(points)s"), ring = model("%(ring)s");
    if (points && ring) {
      ring.data = {x: state.neighbours.map(function (r) { return points.data.x[r]; }),
                   y: state.neighbours.map(function (r) { return points.data.y[r]; })};
    }
    var picker = $("sarlab-pick");
    if (picker && state.focus !== null) picker.value = data.chip_id[state.focus];
    render();
    send();
  }
  function select(row) {
    var points = model("%(points)s");
    if (points) points.selected.indices = [row];  // the scatter's CustomJS calls fromScatter
    if (state.rows.length !== 1 || state.rows[0] !== row) fromScatter([row]);
  }
  window.addEventListener("message", function (e) {
    var frame = $("sarlab-map");
    if (!frame || e.source !== frame.contentWindow || !e.data) return;
    if (e.data.sarlab === "ready") { mapReady = true; send(); }
    else if (e.data.sarlab === "click") select(Number(e.data.row));
  });
  document.addEventListener("DOMContentLoaded", function () {
    var list = $("sarlab-ids"), picker = $("sarlab-pick");
    data.chip_id.forEach(function (id) { node("option", undefined, list).value = id; });
    picker.addEventListener("change", function () {
      if (picker.value in rowOf) select(rowOf[picker.value]); });
    render();
    var tries = 0;
    (function start() {  // BokehJS builds its document after DOMContentLoaded
      if (data.query === null) return;
      if (model("%(points)s") || ++tries > 100) select(data.query);
      else setTimeout(start, 50);
    })();
  });
  window.sarlabExplorer = {data: data, select: select, fromScatter: fromScatter,
                           state: function () { return state; }};
})();
"""


def payload(
    chip_ids: Sequence[Any],
    scores: np.ndarray,
    indices: np.ndarray,
    *,
    query: int | None = None,
    fields: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """What the page needs, as JSON-ready lists: ids, each chip's top-k (rows, cosine), fields.

    ``scores``/``indices`` are ``(N, k)``, row ``i`` the neighbours of chip ``i`` without itself
    (:func:`sarlab.embed_search.nearest_others`).
    """
    n = len(chip_ids)
    scores, indices = np.asarray(scores), np.asarray(indices)
    if scores.shape != indices.shape or scores.shape[0] != n:
        raise ValueError(f"top-k of shape {indices.shape} for {n} chips")
    return {
        "chip_id": [str(c) for c in chip_ids],
        "k": int(indices.shape[1]),
        "neighbours": indices.astype(int).tolist(),
        "scores": np.round(scores.astype(float), 6).tolist(),
        "query": None if query is None else int(query),
        "fields": {k: np.asarray(v).tolist() for k, v in (fields or {}).items()},
    }


def _script_json(data: dict[str, Any]) -> str:
    """JSON that cannot close its <script> element, whatever the chip ids hold."""
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def link_map(fmap, footprints) -> None:
    """Add the map side of the link: restyle ``footprints`` on messages, report its clicks."""
    from branca.element import MacroElement
    from jinja2 import Template

    class _Link(MacroElement):
        _template = Template("{% macro script(this, kwargs) %}{{ this.code }}{% endmacro %}")

    link = _Link()
    link._name = "SarlabLink"
    names = {"map": fmap.get_name(), "layer": footprints.get_name()}
    link.code = _MAP_JS % {**names, "styles": json.dumps(HIGHLIGHT)}
    fmap.add_child(link)


def scatter_figure(
    xy: np.ndarray,
    chip_ids: Sequence[Any],
    colors: Sequence[str] | None = None,
    fields: Mapping[str, Sequence[Any]] | None = None,
    title: str = "",
):
    """A bokeh scatter of the 2-D projection whose selection drives the page (box/lasso/tap)."""
    from bokeh.models import ColumnDataSource, CustomJS, HoverTool
    from bokeh.plotting import figure

    xy = np.asarray(xy, dtype=float)
    data: dict[str, Any] = {"x": xy[:, 0], "y": xy[:, 1], "chip_id": [str(c) for c in chip_ids]}
    data["color"] = list(colors) if colors is not None else ["#1f77b4"] * len(xy)
    for key, values in (fields or {}).items():
        data.setdefault(key, np.asarray(values))
    source = ColumnDataSource(data, name=POINTS)
    ring = ColumnDataSource({"x": [], "y": []}, name=RING)
    fig = figure(
        width=460, height=420, title=title, toolbar_location="above", active_drag="box_select",
        tools="box_select,lasso_select,tap,pan,wheel_zoom,reset",
    )  # fmt: skip
    points = fig.scatter(
        "x", "y", source=source, size=8, fill_color="color", line_color="#333333",
        line_width=0.4, selection_line_color="#000000", selection_line_width=1.5,
        nonselection_fill_alpha=0.25, nonselection_line_alpha=0.2,
    )  # fmt: skip
    fig.scatter("x", "y", source=ring, size=15, fill_alpha=0, line_color="#ff0000", line_width=2)
    tips = [("chip", "@chip_id"), *((k, f"@{{{k}}}") for k in (fields or {}))]
    fig.add_tools(HoverTool(renderers=[points], tooltips=tips))
    code = "if (window.sarlabExplorer) window.sarlabExplorer.fromScatter(cb_obj.indices);"
    source.selected.js_on_change("indices", CustomJS(code=code))
    return fig


def page_html(map_doc: str, figure, data: dict[str, Any], title: str, note: str = "") -> str:
    """The page: payload and wiring first (the map frame may report ready early), then views."""
    from bokeh.embed import components
    from bokeh.resources import Resources

    script, div = components(figure)
    # BokehJS core as inline code only: once panel is imported, Resources also lists a
    # relative <script src> of panel's that would fail (and is not needed) offline
    bokeh_js = "".join(
        f"<script>{code}</script>" for code in Resources(mode="inline", components=["bokeh"]).js_raw
    )
    wiring = _PAGE_JS % {"data_id": DATA_ID, "points": POINTS, "ring": RING}
    help_text = (
        "Select points in the scatter (box, lasso or tap) to highlight their chips on the map; "
        "click a chip on the map to see its most similar chips (red/yellow on the map, red "
        "rings in the scatter, listed with cosine scores on the right). The map's layers "
        "(quick-look, PCA colours, clusters, labels) are under the button at its top right."
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        f"{bokeh_js}"
        f'<script type="application/json" id="{DATA_ID}">{_script_json(data)}</script>'
        f"<script>{wiring}</script>"
        "<style>body{font-family:sans-serif;margin:12px}#sarlab-panel table{border-collapse:"
        "collapse;font-size:13px}#sarlab-panel td,#sarlab-panel th{padding:1px 6px;text-align:"
        "left}#sarlab-panel tr[data-row]:hover{background:#ffffcc}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(help_text)}</p>"
        + (f"<p><i>{html.escape(note)}</i></p>" if note else "")
        + '<div style="display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start">'
        f'<iframe id="sarlab-map" title="map" srcdoc="{html.escape(map_doc, quote=True)}" '
        'style="flex:1 1 560px;min-width:420px;height:640px;border:1px solid #ccc"></iframe>'
        f'<div style="flex:0 1 480px">{div}'
        '<p><label>chip id <input id="sarlab-pick" list="sarlab-ids" size="32"></label>'
        '<datalist id="sarlab-ids"></datalist></p>'
        '<div id="sarlab-panel"></div></div></div>'
        f"{script}</body></html>"
    )
