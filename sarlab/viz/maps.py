"""Maps of embeddings: folium for headless/offline HTML, leafmap + ipywidgets in JupyterLab.

Every data layer is drawn from memory (PNG data URIs, inline GeoJSON), never from a tile
server or a file URL, so the exported HTML shows the scene, the chips and their similarity
scores on a ship without internet; only the basemap tiles need a connection.

Colour layers (PCA-RGB, clusters, labels) are chip footprints filled per chip, which is
exact in any CRS and in radar geometry. The scene quick-look is an image overlay placed on
its lat/lon bounding box: exact for EPSG:4326 grids, approximate for projected grids and
for radar geometry (the swath is not a lat/lon rectangle).
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import xarray as xr

from sarlab.conventions import IMAGE_VAR

__all__ = [
    "cluster_colors",
    "explorer",
    "explorer_html",
    "folium_map",
    "quicklook",
    "scatter_2d",
]

_PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
]  # fmt: skip


def cluster_colors(labels: Sequence[int]) -> list[str]:
    """One hex colour per label (a fixed 16-colour cycle; negative labels grey)."""
    return ["#bbbbbb" if int(v) < 0 else _PALETTE[int(v) % len(_PALETTE)] for v in labels]


def _hex(rgb: np.ndarray) -> list[str]:
    values = np.clip(np.round(np.asarray(rgb) * 255), 0, 255).astype(int)
    return ["#{:02x}{:02x}{:02x}".format(*v) for v in values]


def _stretch(x: np.ndarray) -> np.ndarray:
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.zeros_like(x)
    lo, hi = np.percentile(finite, [2, 98])
    return np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1)


def quicklook(ds: xr.Dataset, max_size: int = 1024) -> tuple[np.ndarray, list[list[float]], str]:
    """A false-colour RGBA preview (R co-pol, G cross-pol, B their dB ratio) and its bounds.

    Returns ``(rgba uint8 (H, W, 4), [[south, west], [north, east]], note)``; nodata is
    transparent. The note says how exact the placement is.
    """
    image = ds[IMAGE_VAR].transpose("band", "y", "x")
    step = max(1, int(np.ceil(max(image.sizes["y"], image.sizes["x"]) / max_size)))
    small = np.asarray(image.isel(y=slice(None, None, step), x=slice(None, None, step)).values)
    small = small.astype(np.float32)
    if image.attrs.get("units") == "linear":
        with np.errstate(divide="ignore", invalid="ignore"):
            small = 10 * np.log10(np.where(small > 0, small, np.nan))
    co = small[0]
    cross = small[1] if small.shape[0] > 1 else small[0]
    rgb = np.stack([_stretch(co), _stretch(cross), _stretch(co - cross)], axis=-1)
    alpha = np.isfinite(small).all(axis=0)
    rgba = np.concatenate([np.nan_to_num(rgb), alpha[..., None]], axis=-1)
    rgba = (rgba * 255).round().astype(np.uint8)
    if "latitude" in ds.coords and ds["latitude"].ndim == 2:
        lat = np.asarray(ds["latitude"].values[::step, ::step])
        lon = np.asarray(ds["longitude"].values[::step, ::step])
        if lat[0].mean() < lat[-1].mean():  # north up
            rgba, lat, lon = rgba[::-1], lat[::-1], lon[::-1]
        if lon[:, 0].mean() > lon[:, -1].mean():  # west left
            rgba, lat, lon = rgba[:, ::-1], lat[:, ::-1], lon[:, ::-1]
        bounds = [[float(np.nanmin(lat)), float(np.nanmin(lon))],
                  [float(np.nanmax(lat)), float(np.nanmax(lon))]]  # fmt: skip
        note = "radar geometry: the quick-look is stretched over its lat/lon box (approximate)"
    else:
        west, south, east, north = ds.rio.transform_bounds("EPSG:4326")
        bounds = [[south, west], [north, east]]
        exact = ds.rio.crs is not None and ds.rio.crs.to_epsg() == 4326
        note = (
            "EPSG:4326 grid: exact"
            if exact
            else (f"{ds.rio.crs} grid shown on its lat/lon box (approximate; footprints are exact)")
        )
    return np.ascontiguousarray(rgba), bounds, note


def _png_uri(rgba: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _features(gdf, colors: Sequence[str] | None, extra: dict[str, Sequence[Any]] | None = None):
    """A GeoJSON FeatureCollection of chip footprints with chip_id, colour and extra fields."""
    features = []
    for i, (chip_id, geom) in enumerate(zip(gdf["chip_id"], gdf.geometry, strict=True)):
        props: dict[str, Any] = {"chip_id": str(chip_id), "row": i}
        if colors is not None:
            props["color"] = colors[i]
        for key, values in (extra or {}).items():
            value = values[i]
            props[key] = value.item() if hasattr(value, "item") else value
        # ~1 m of simplification and rounding keep pages small (footprints are densified rings)
        shape = shapely.set_precision(geom.simplify(1e-5), 1e-5)
        features.append(
            {"type": "Feature", "properties": props, "geometry": shape.__geo_interface__}
        )
    return {"type": "FeatureCollection", "features": features}


def folium_map(
    gdf,
    *,
    scene_image: tuple[np.ndarray, list[list[float]], str] | None = None,
    rgb: np.ndarray | None = None,
    clusters: Sequence[int] | None = None,
    labels: Sequence[int] | None = None,
    label_name: str = "label",
    query: int | None = None,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
    tiles: str | None = "OpenStreetMap",
):
    """A folium map: quick-look, PCA-RGB, clusters, labels, footprints and one query's top-k.

    ``neighbours`` is ``(scores, indices)`` of ``query`` (rows of ``gdf``), e.g. one row of
    :func:`sarlab.embed_search.top_k_cosine`; the query is outlined, its neighbours filled
    and labelled with their scores.
    """
    import folium

    west, south, east, north = gdf.total_bounds
    fmap = folium.Map(tiles=tiles, control_scale=True)
    fmap.fit_bounds([[south, west], [north, east]])
    if scene_image is not None:
        rgba, bounds, note = scene_image
        folium.raster_layers.ImageOverlay(
            _png_uri(rgba), bounds=bounds, name=f"HH/HV quick-look ({note})", opacity=0.9
        ).add_to(fmap)

    def fill_layer(name: str, colors: list[str], extra=None, show=True) -> None:
        folium.GeoJson(
            _features(gdf, colors, extra),
            name=name,
            show=show,
            style_function=lambda f: {
                "fillColor": f["properties"]["color"],
                "color": f["properties"]["color"],
                "weight": 0.5,
                "fillOpacity": 0.75,
            },
            tooltip=folium.GeoJsonTooltip(["chip_id", *(extra or {})]),
        ).add_to(fmap)

    if rgb is not None:
        fill_layer("PCA-RGB of embeddings", _hex(rgb))
    if clusters is not None:
        fill_layer("k-means clusters", cluster_colors(clusters), {"cluster": clusters}, False)
    if labels is not None:
        fill_layer(f"labels: {label_name}", cluster_colors(labels), {label_name: labels}, False)
    folium.GeoJson(
        _features(gdf, None),
        name="chip footprints",
        style_function=lambda f: {"color": "#333333", "weight": 0.6, "fillOpacity": 0.0},
        tooltip=folium.GeoJsonTooltip(["chip_id"]),
    ).add_to(fmap)
    if query is not None and neighbours is not None:
        scores, idx = (np.asarray(a).ravel() for a in neighbours)
        sub = gdf.iloc[idx]
        folium.GeoJson(
            _features(sub, None, {"score": np.round(scores, 4), "rank": np.arange(len(sub))}),
            name=f"top-{len(sub)} similar to {gdf['chip_id'].iloc[query]}",
            style_function=lambda f: {"fillColor": "#ffff00", "color": "#ff0000",
                                      "weight": 2, "fillOpacity": 0.5},
            tooltip=folium.GeoJsonTooltip(["chip_id", "rank", "score"]),
        ).add_to(fmap)  # fmt: skip
    folium.LayerControl(collapsed=False).add_to(fmap)
    return fmap


def scatter_2d(gdf, xy: np.ndarray, color: Sequence[Any] | None = None, title: str = ""):
    """An hvplot scatter of a 2-D projection, hover shows chip ids (and the colour field)."""
    import hvplot.pandas  # noqa: F401
    import pandas as pd

    frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "chip_id": gdf["chip_id"].to_numpy()})
    kwargs: dict[str, Any] = {}
    if color is not None:
        frame["colour"] = np.asarray(color)
        kwargs = {"c": "colour", "cmap": "Category20"}
    return frame.hvplot.scatter(
        "x", "y", hover_cols=["chip_id"], title=title, width=480, height=400,
        size=12, **kwargs,
    )  # fmt: skip


def explorer_html(
    fmap,
    path: str | os.PathLike[str],
    *,
    scatter: Any | None = None,
    title: str = "sarlab embeddings",
    table: str = "",
) -> Path:
    """One self-contained HTML page: the folium map, an inline bokeh scatter and a table.

    External scripts and stylesheets are inlined from sarlab's vendored copies or removed
    (:func:`sarlab.html_offline.make_offline`); bokeh is rendered with INLINE resources.
    """
    from sarlab.atomic import atomic_write_text
    from sarlab.html_offline import make_offline

    map_doc, _ = make_offline(fmap.get_root().render())
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<iframe srcdoc="{html.escape(map_doc, quote=True)}" '
        'style="width:100%;height:620px;border:none"></iframe>',
    ]
    head = ""
    if scatter is not None:
        import holoviews as hv
        from bokeh.embed import components
        from bokeh.resources import Resources

        script, div = components(hv.render(scatter, backend="bokeh"))
        head = Resources(mode="inline", components=["bokeh"]).render()  # BokehJS core only
        parts.append(div + script)
    if table:
        parts.append(table)
    document = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"{head}</head><body>{''.join(parts)}</body></html>"
    )
    document, _ = make_offline(document)
    return atomic_write_text(path, document)


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
    """Interactive explorer for JupyterLab: a leafmap map, a chip picker and a score panel.

    Click a footprint (or choose a chip id) and its ``k`` most similar chips light up on
    the map, listed with scores beside it. With ``xy``, a 2-D scatter is returned too:
    tapping a point selects that chip on the map, and a map selection is highlighted in
    the scatter. Returns ``(widget, scatter or None)``; display both.
    """
    import ipyleaflet
    import ipywidgets as widgets
    import leafmap

    from sarlab.embed_search import top_k_cosine

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
    state: dict[str, Any] = {"layer": None}
    scatter, selected = None, None
    if xy is not None:
        import holoviews as hv

        points = hv.Points((xy[:, 0], xy[:, 1], ids), vdims=["chip_id"]).opts(
            tools=["tap", "hover"], size=6, width=420, height=360, nonselection_alpha=0.3
        )
        selected = hv.streams.Pipe(data=([], [], []))
        marked = hv.DynamicMap(
            lambda data: hv.Points(data, vdims=["chip_id"]).opts(color="red", size=10),
            streams=[selected],
        )
        tap = hv.streams.Selection1D(source=points)
        tap.add_subscriber(lambda index: select(int(index[0])) if index else None)
        scatter = points * marked

    def select(row: int) -> None:
        scores, idx = top_k_cosine(embeddings[row : row + 1], embeddings, k)
        sub = gdf.iloc[idx[0]]
        if state["layer"] is not None:
            fmap.remove_layer(state["layer"])
        state["layer"] = ipyleaflet.GeoJSON(
            data=_features(sub, None), name=f"top-{k}",
            style={"color": "#ff0000", "fillColor": "#ffff00", "weight": 2, "fillOpacity": 0.5},
        )  # fmt: skip
        fmap.add_layer(state["layer"])
        lines = "".join(
            f"<tr><td>{r}</td><td>{html.escape(str(c))}</td><td>{s:.4f}</td></tr>"
            for r, (c, s) in enumerate(zip(sub["chip_id"], scores[0], strict=True))
        )
        panel.value = (
            f"<b>{html.escape(ids[row])}</b><table><tr><th>rank</th><th>chip</th>"
            f"<th>cosine</th></tr>{lines}</table>"
        )
        if picker.value != ids[row]:
            picker.value = ids[row]
        if selected is not None:
            rows = idx[0]
            selected.send((xy[rows, 0], xy[rows, 1], [ids[i] for i in rows]))

    footprints.on_click(lambda feature=None, **_: select(int(feature["properties"]["row"])))
    picker.observe(
        lambda change: select(ids.index(change["new"])) if change["new"] in ids else None,
        names="value",
    )
    side = widgets.VBox([picker, panel], layout=widgets.Layout(width="340px"))
    return widgets.HBox([fmap, side]), scatter
