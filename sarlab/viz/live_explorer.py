"""The live embedding explorer for JupyterLab: leafmap map, chip picker, score panel, scatter.

The same interactions as the offline page (:mod:`sarlab.viz.explore_page`), driven by Python
callbacks (ipyleaflet clicks, an ipywidgets picker, HoloViews streams) instead of inlined
JavaScript: neighbours are searched per click (exact) rather than precomputed, so it copes
with more chips than one HTML page can carry.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["explorer"]


def explorer(
    gdf,
    embeddings: np.ndarray,
    *,
    k: int = 10,
    scene_image: tuple[np.ndarray, list[list[float]], str] | None = None,
    rgb: np.ndarray | None = None,
    clusters: Sequence[int] | None = None,
    labels: Sequence[int] | None = None,
    xy: np.ndarray | None = None,
):
    """Interactive explorer: a leafmap map, a chip picker and a score panel, linked both ways.

    Click a footprint (or choose a chip id) and its ``k`` most similar other chips light up
    on the map (the chip magenta, its neighbours yellow), listed with cosine scores beside
    it. With ``xy``, a 2-D scatter is returned too: tapping a point selects that chip,
    box/lasso-selecting points highlights their footprints (blue), and the map's chip and
    neighbours are ringed in the scatter. Returns ``(widget, scatter or None)``; display both.
    """
    import ipyleaflet
    import ipywidgets as widgets
    import leafmap

    from sarlab.embed_search import nearest_others
    from sarlab.viz.explore_page import HIGHLIGHT
    from sarlab.viz.maps import _features, _hex, _png_uri, cluster_colors

    west, south, east, north = gdf.total_bounds
    fmap = leafmap.Map(center=((south + north) / 2, (west + east) / 2), zoom=6)
    fmap.fit_bounds([[south, west], [north, east]])
    if scene_image is not None:
        rgba, bounds, _ = scene_image
        fmap.add_layer(ipyleaflet.ImageOverlay(url=_png_uri(rgba), bounds=bounds,
                                               name="HH/HV quick-look", opacity=0.9))  # fmt: skip
    for name, colors, visible in (
        ("PCA-RGB", None if rgb is None else _hex(rgb), True),
        ("clusters", None if clusters is None else cluster_colors(clusters), False),
        ("labels", None if labels is None else cluster_colors(labels), False),
    ):
        if colors is not None:
            layer = ipyleaflet.GeoJSON(
                data=_features(gdf, colors), name=name, visible=visible,
                style_callback=lambda f: {"fillColor": f["properties"]["color"],
                                          "color": f["properties"]["color"],
                                          "weight": 0.5, "fillOpacity": 0.7},
            )  # fmt: skip
            fmap.add_layer(layer)
    footprints = ipyleaflet.GeoJSON(
        data=_features(gdf, None), name="footprints",
        style={"color": "#333333", "weight": 0.6, "fillOpacity": 0.0},
        hover_style={"color": "#ff0000", "weight": 2},
    )  # fmt: skip
    fmap.add_layer(footprints)
    ids = [str(c) for c in gdf["chip_id"]]
    picker = widgets.Combobox(options=ids, placeholder="chip id", ensure_option=True)
    panel = widgets.HTML("Click a chip on the map, or type its id.")
    state: dict[str, Any] = {"layer": None, "row": None}
    scatter, ringed = None, None

    def on_click(feature=None, **_: Any) -> None:
        select(int(feature["properties"]["row"]))

    def draw(rows: list[int], roles: list[str]) -> None:
        """Replace the highlight layer (clicks on it select too: it lies over the footprints)."""
        if state["layer"] is not None:
            fmap.remove_layer(state["layer"])
        state["layer"] = ipyleaflet.GeoJSON(
            data=_features(gdf.iloc[rows], None, {"role": roles}, rows=rows),
            name="selection", style_callback=lambda f: HIGHLIGHT[f["properties"]["role"]],
        )  # fmt: skip
        state["layer"].on_click(on_click)
        fmap.add_layer(state["layer"])

    def select(row: int) -> None:
        if state["row"] == row:  # the picker echoing this selection
            return
        state["row"] = row
        scores, idx = nearest_others(embeddings, k, rows=[row])
        rows = [row, *idx[0].tolist()]
        draw(rows, ["focus"] + ["neighbour"] * (len(rows) - 1))
        lines = "".join(
            f"<tr><td>{rank}</td><td>{html.escape(ids[i])}</td><td>{s:.4f}</td></tr>"
            for rank, (i, s) in enumerate(zip(rows[1:], scores[0], strict=True), start=1)
        )
        panel.value = (
            f"<b>{html.escape(ids[row])}</b>: its {len(rows) - 1} most similar chips"
            f"<table><tr><th>rank</th><th>chip</th><th>cosine</th></tr>{lines}</table>"
        )
        picker.value = ids[row]
        if ringed is not None:
            ringed.send((xy[rows, 0], xy[rows, 1], [ids[i] for i in rows]))

    def select_many(rows: list[int]) -> None:
        state["row"] = None
        draw(rows, ["selected"] * len(rows))
        shown = ", ".join(html.escape(ids[i]) for i in rows[:40])
        panel.value = f"<b>{len(rows)} chips selected in the scatter</b><br>{shown}"

    if xy is not None:
        import holoviews as hv

        points = hv.Points((xy[:, 0], xy[:, 1], ids), vdims=["chip_id"]).opts(
            tools=["tap", "box_select", "lasso_select", "hover"], size=6, width=420,
            height=360, nonselection_alpha=0.3,
        )  # fmt: skip
        ringed = hv.streams.Pipe(data=([], [], []))
        rings = hv.DynamicMap(
            lambda data: hv.Points(data, vdims=["chip_id"]).opts(
                color="red", size=12, fill_alpha=0, line_width=2
            ),
            streams=[ringed],
        )
        picked = hv.streams.Selection1D(source=points)
        picked.add_subscriber(
            lambda index: (select(int(index[0])) if len(index) == 1
                           else select_many([int(i) for i in index]) if index else None)
        )  # fmt: skip
        scatter = points * rings

    footprints.on_click(on_click)
    picker.observe(
        lambda change: select(ids.index(change["new"])) if change["new"] in ids else None,
        names="value",
    )
    side = widgets.VBox([picker, panel], layout=widgets.Layout(width="340px"))
    return widgets.HBox([fmap, side]), scatter
