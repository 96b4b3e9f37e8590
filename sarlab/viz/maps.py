"""Maps of embeddings: folium for headless/offline HTML, leafmap + ipywidgets in JupyterLab.

Every data layer is drawn from memory (PNG data URIs, inline GeoJSON), never from a tile
server or a file URL, so the exported HTML shows the scene, the chips and their similarity
scores on a ship without internet; only the basemap tiles need a connection (the offline
explorer, :func:`explorer_html`, draws none by default). The live JupyterLab explorer is
:func:`sarlab.viz.live_explorer.explorer`, re-exported here.

Colour layers (PCA-RGB, clusters, labels) are chip footprints filled per chip, which is
exact in any CRS and in radar geometry. The scene quick-look is an image overlay placed on
its lat/lon bounding box: exact for EPSG:4326 grids, approximate for projected grids and
for radar geometry (the swath is not a lat/lon rectangle).
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import xarray as xr

from sarlab.conventions import IMAGE_VAR
from sarlab.viz.live_explorer import explorer

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


def _features(
    gdf,
    colors: Sequence[str] | None,
    extra: dict[str, Sequence[Any]] | None = None,
    rows: Sequence[int] | None = None,
):
    """A GeoJSON FeatureCollection of chip footprints with chip_id, row, colour and extra fields.

    ``row`` is the chip's position in ``gdf``, or ``rows[i]`` when ``gdf`` is a subset (so a
    click on a highlighted chip still names its row of the full table).
    """
    features = []
    for i, (chip_id, geom) in enumerate(zip(gdf["chip_id"], gdf.geometry, strict=True)):
        row = i if rows is None else int(rows[i])
        props: dict[str, Any] = {"chip_id": str(chip_id), "row": row}
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

    fmap, _ = _map_layers(
        gdf, scene_image=scene_image, rgb=rgb, clusters=clusters, labels=labels,
        label_name=label_name, tiles=tiles,
    )  # fmt: skip
    if query is not None and neighbours is not None:
        scores, idx = (np.asarray(a).ravel() for a in neighbours)
        sub = gdf.iloc[idx]
        extra = {"score": np.round(scores, 4), "rank": np.arange(len(sub))}
        folium.GeoJson(
            _features(sub, None, extra, rows=idx),
            name=f"top-{len(sub)} similar to {gdf['chip_id'].iloc[query]}",
            style_function=lambda f: {"fillColor": "#ffff00", "color": "#ff0000",
                                      "weight": 2, "fillOpacity": 0.5},
            tooltip=folium.GeoJsonTooltip(["chip_id", "rank", "score"]),
        ).add_to(fmap)  # fmt: skip
    folium.LayerControl(collapsed=False).add_to(fmap)
    return fmap


def _map_layers(gdf, *, scene_image, rgb, clusters, labels, label_name, tiles):
    """The map with its colour layers and the chip footprints on top: ``(map, footprints)``.

    The footprint layer is the one that is clicked (it lies over the colour layers), so its
    tooltip carries the cluster and label too.
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

    fields: dict[str, Sequence[Any]] = {}  # shown on hover over the footprints
    if rgb is not None:
        fill_layer("PCA-RGB of embeddings", _hex(rgb))
    if clusters is not None:
        fill_layer("k-means clusters", cluster_colors(clusters), {"cluster": clusters}, False)
        fields["cluster"] = clusters
    if labels is not None:
        fill_layer(f"labels: {label_name}", cluster_colors(labels), {label_name: labels}, False)
        fields[label_name] = labels
    footprints = folium.GeoJson(
        _features(gdf, None, fields),
        name="chip footprints",
        style_function=lambda f: {"color": "#333333", "weight": 0.6, "fillOpacity": 0.0},
        tooltip=folium.GeoJsonTooltip(["chip_id", *fields]),
    ).add_to(fmap)
    return fmap, footprints


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
    gdf,
    embeddings: np.ndarray,
    path: str | os.PathLike[str],
    *,
    k: int = 10,
    xy: np.ndarray | None = None,
    scene_image: tuple[np.ndarray, list[list[float]], str] | None = None,
    rgb: np.ndarray | None = None,
    clusters: Sequence[int] | None = None,
    labels: Sequence[int] | None = None,
    label_name: str = "label",
    query: int | None = 0,
    title: str = "sarlab embeddings",
    tiles: str | None = None,
) -> Path:
    """The offline explorer: one self-contained HTML page, map and scatter linked both ways.

    The headless twin of :func:`explorer` (:mod:`sarlab.viz.explore_page` says how it works):
    each chip's ``k`` most similar other chips are found here (exact cosine) and embedded
    as JSON, ``xy`` (default: PCA of ``embeddings``) is the scatter, and the page opens on
    chip ``query``. Vendored Leaflet and BokehJS are inlined (:func:`make_offline`); with no
    basemap by default (``tiles``) the page makes no network request at all. All chips travel
    in the page, so it suits up to some ten thousand chips.
    """
    import folium

    from sarlab.atomic import atomic_write_text
    from sarlab.embed_search import nearest_others, project_2d
    from sarlab.html_offline import make_offline
    from sarlab.viz import explore_page

    if xy is None:
        xy, _ = project_2d(embeddings, "pca")
    fmap, footprints = _map_layers(
        gdf, scene_image=scene_image, rgb=rgb, clusters=clusters, labels=labels,
        label_name=label_name, tiles=tiles,
    )  # fmt: skip
    folium.LayerControl(collapsed=True).add_to(fmap)  # open, it would cover a narrow map
    explore_page.link_map(fmap, footprints)
    map_doc, _ = make_offline(fmap.get_root().render())
    fields = {
        key: values
        for key, values in (("cluster", clusters), (label_name, labels))
        if values is not None
    }
    scores, idx = nearest_others(embeddings, k)
    data = explore_page.payload(gdf["chip_id"], scores, idx, query=query, fields=fields)
    colors = None if clusters is None else cluster_colors(clusters)
    heading = "2-D projection of the embeddings" + ("" if colors is None else " (cluster colours)")
    figure = explore_page.scatter_figure(xy, gdf["chip_id"], colors, fields, title=heading)
    note = "" if tiles is None else f"The {tiles} basemap needs internet; all else is in the page."
    document, _ = make_offline(explore_page.page_html(map_doc, figure, data, title, note))
    return atomic_write_text(path, document)
