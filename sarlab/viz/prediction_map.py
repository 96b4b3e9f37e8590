"""A folium map of a whole-scene prediction against its labels, with an uncertainty layer.

The layers of :func:`sarlab.finetune.predict_scene` (``<task>``, ``<task>_label``,
``<task>_entropy``) are drawn as in-memory PNG overlays (no tile server, no file URL),
so the map works in the offline HTML export (:func:`sarlab.html_offline.make_offline`,
:func:`sarlab.viz.maps.explorer_html`); only basemap tiles need a connection.

Leaflet stretches an image overlay linearly in Web Mercator between its corner
coordinates, so every layer is first resampled (nearest neighbour, which keeps class
values) onto a grid regular in EPSG:3857. That places overlays exactly for any CRS and
for radar-geometry scenes with 2-D latitude/longitude (a rotated swath stays rotated);
pixels outside the scene, nodata (255, NaN) and outside the swath are transparent.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from branca.element import Element
from pyproj import Transformer
from scipy.spatial import cKDTree

from sarlab.conventions import IGNORE_INDEX, IMAGE_VAR
from sarlab.viz.maps import _png_uri, _stretch, cluster_colors

__all__ = [
    "CLASS_NAMES",
    "MercatorGrid",
    "class_colors",
    "class_rgba",
    "mercator_grid",
    "prediction_map",
    "prediction_map_html",
    "scalar_rgba",
]

# AutoICE class names (sarlab.io.ai4arctic) and Sen1Floods11's water label
_SOD = ("open water", "new ice", "young ice", "thin first-year ice", "thick first-year ice",
        "old ice")  # fmt: skip
_FLOE = ("open water", "cake ice", "small floe", "medium floe", "big floe", "vast floe", "bergs")
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "SIC": tuple(f"{10 * k} %" for k in range(11)),
    "SOD": _SOD,
    "FLOE": _FLOE,
    "water": ("not water", "water"),
}
# open water dark blue in every ice chart; SOD in the spirit of ice-chart stage colours
# (new ice pink, young purple, first-year yellow/green, old brown); SIC dark blue -> white
_COLORS: dict[str, tuple[str, ...]] = {
    "SOD": ("#08306b", "#f0d2fa", "#aa28f0", "#ffff00", "#00b400", "#964300"),
    "FLOE": ("#08306b", "#fee391", "#fec44f", "#fe9929", "#ec7014", "#cc4c02", "#662506"),
    "water": ("#d8c9a3", "#1f5fbf"),
}
_ERROR_RGBA = (220, 20, 60, 255)  # crimson: prediction differs from the label


def class_colors(task: str, n_classes: int) -> list[str]:
    """Hex colour per class: the task's own palette, else the embedding maps' cycle."""
    palette = _COLORS.get(task)
    if task == "SIC":
        from bokeh.palettes import Blues256

        palette = (*Blues256[:-6:25], "#ffffff")
    if palette is not None and len(palette) >= n_classes:
        return list(palette[:n_classes])
    return cluster_colors(range(n_classes))


def _rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def class_rgba(classes: np.ndarray, colors: Sequence[str]) -> np.ndarray:
    """``(H, W)`` class codes -> ``(H, W, 4)`` uint8; nodata (255) and unknown codes transparent."""
    classes = np.asarray(classes)
    lut = np.zeros((256, 4), np.uint8)
    for k, color in enumerate(colors):
        lut[k] = (*_rgb(color), 255)
    codes = np.where((classes >= 0) & (classes < len(colors)), classes, IGNORE_INDEX)
    return lut[codes.astype(np.uint8)]


def scalar_rgba(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """``(H, W)`` floats -> viridis ``(H, W, 4)`` uint8 over ``[vmin, vmax]``; NaN transparent."""
    from bokeh.palettes import Viridis256

    values = np.asarray(values, dtype=np.float64)
    lut = np.array([_rgb(c) for c in Viridis256], np.uint8)
    finite = np.isfinite(values)
    t = np.clip((np.where(finite, values, vmin) - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    out = np.zeros((*values.shape, 4), np.uint8)
    out[..., :3] = lut[np.round(t * 255).astype(int)]
    out[..., 3] = np.where(finite, 255, 0)
    return out


@dataclass(frozen=True)
class MercatorGrid:
    """Source pixel (``rows``, ``cols``) under each pixel of a Web-Mercator-regular grid.

    ``valid`` is False outside the scene; ``bounds`` ([[south, west], [north, east]])
    are the grid's outer edges, which Leaflet needs for an exact placement.
    """

    rows: np.ndarray
    cols: np.ndarray
    valid: np.ndarray
    bounds: list[list[float]]
    note: str

    def sample(self, values: np.ndarray, fill: float | int) -> np.ndarray:
        """``values[rows, cols]`` with ``fill`` outside the scene (dtype kept where it can be)."""
        values = np.asarray(values)
        out = values[self.rows, self.cols]
        dtype = np.result_type(out.dtype, np.asarray(fill).dtype)
        return np.where(self.valid, out, np.asarray(fill, dtype=dtype)).astype(dtype)


_TO_MERC = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)


def _grid_axes(x0: float, x1: float, y0: float, y1: float, long_side: int):
    """Cell centres (X, Y north first) of a grid over a Mercator box, plus its lat/lon bounds."""
    scale = max(x1 - x0, y1 - y0) / long_side
    nx, ny = max(1, round((x1 - x0) / scale)), max(1, round((y1 - y0) / scale))
    xs = x0 + (np.arange(nx) + 0.5) * (x1 - x0) / nx
    ys = y1 - (np.arange(ny) + 0.5) * (y1 - y0) / ny
    (west, east), (north, south) = _TO_MERC.transform([x0, x1], [y1, y0], direction="INVERSE")
    return np.meshgrid(xs, ys), [[float(south), float(west)], [float(north), float(east)]]


def mercator_grid(ds: xr.Dataset, max_size: int = 512) -> MercatorGrid:
    """The Web-Mercator grid (long side at most ``max_size`` and the scene's) for ``ds``'s pixels.

    Scenes with a CRS are inverted exactly through the CRS and transform; radar-geometry
    scenes (2-D ``latitude``/``longitude``, no CRS) by nearest pixel centre, a grid
    cell counting as inside when a pixel centre lies within one pixel spacing.
    """
    height, width = ds.sizes["y"], ds.sizes["x"]
    long_side = max(1, min(int(max_size), max(height, width)))
    if ds.rio.crs is not None:
        west, south, east, north = ds.rio.transform_bounds("EPSG:3857", densify_pts=21)
        (gx, gy), bounds = _grid_axes(west, east, south, north, long_side)
        to_src = Transformer.from_crs("EPSG:3857", ds.rio.crs, always_xy=True)
        sx, sy = to_src.transform(gx, gy)
        col, row = ~ds.rio.transform() @ (sx, sy)
        col, row = np.floor(col), np.floor(row)
        valid = (col >= 0) & (col < width) & (row >= 0) & (row < height)
        exact = "exact" if ds.rio.crs.to_epsg() in (4326, 3857) else "exact (reprojected)"
        note = f"{ds.rio.crs} grid resampled to Web Mercator: {exact}"
    elif "latitude" in ds.coords and "longitude" in ds.coords:
        lat = np.asarray(ds["latitude"].values, dtype=np.float64)
        lon = np.asarray(ds["longitude"].values, dtype=np.float64)
        if lat.ndim == 1:  # rectilinear lat/lon axes
            lon, lat = np.meshgrid(lon, lat)
        step = max(1, int(np.ceil(max(height, width) / long_side)))
        src_rows, src_cols = np.mgrid[0:height:step, 0:width:step]
        mx, my = _TO_MERC.transform(lon[::step, ::step], lat[::step, ::step])
        ok = np.isfinite(mx) & np.isfinite(my)
        spacing = _spacing(mx, my)
        (gx, gy), bounds = _grid_axes(
            mx[ok].min() - spacing / 2, mx[ok].max() + spacing / 2,
            my[ok].min() - spacing / 2, my[ok].max() + spacing / 2, long_side,
        )  # fmt: skip
        tree = cKDTree(np.column_stack([mx[ok], my[ok]]))
        dist, nearest = tree.query(np.column_stack([gx.ravel(), gy.ravel()]))
        row = src_rows[ok][nearest].reshape(gx.shape).astype(float)
        col = src_cols[ok][nearest].reshape(gx.shape).astype(float)
        valid = (dist <= spacing).reshape(gx.shape)
        note = "radar geometry resampled through its latitude/longitude (nearest pixel)"
    else:
        raise ValueError("the scene has neither a CRS nor latitude/longitude coordinates")
    rows = np.where(valid, row, 0).astype(np.intp)
    cols = np.where(valid, col, 0).astype(np.intp)
    return MercatorGrid(rows, cols, np.asarray(valid, bool), bounds, note)


def _spacing(mx: np.ndarray, my: np.ndarray) -> float:
    """Median distance between neighbouring pixel centres (the larger of the two axes)."""
    d = []
    for axis in (0, 1):
        if mx.shape[axis] > 1:
            dd = np.hypot(np.diff(mx, axis=axis), np.diff(my, axis=axis))
            d.append(np.nanmedian(dd))
    return float(max(d)) if d else 1.0


def _legend(title: str, names: Sequence[str], colors: Sequence[str], vmax: float) -> str:
    """Legend HTML: class swatches, the error colour and the entropy colour ramp."""
    from bokeh.palettes import Viridis256

    rows = "".join(
        f'<div><span style="display:inline-block;width:12px;height:12px;background:{c};'
        f'border:1px solid #555;margin-right:4px"></span>{html.escape(n)}</div>'
        for n, c in zip(names, colors, strict=True)
    )
    ramp = ",".join((*Viridis256[::32], Viridis256[-1]))
    error = "#{:02x}{:02x}{:02x}".format(*_ERROR_RGBA[:3])
    return (
        '<div style="position:fixed;bottom:24px;left:10px;z-index:9999;background:white;'
        "padding:6px 8px;border:1px solid #888;border-radius:4px;font:12px sans-serif;"
        f'max-height:70%;overflow:auto"><b>{html.escape(title)}</b>{rows}'
        f'<div><span style="display:inline-block;width:12px;height:12px;background:{error};'
        'margin-right:4px"></span>prediction differs from label</div>'
        f'<div style="margin-top:4px">entropy (nats)</div><div style="width:140px;height:10px;'
        f'background:linear-gradient(to right,{ramp})"></div>'
        f'<div style="width:140px;display:flex;justify-content:space-between"><span>0</span>'
        f"<span>{vmax:.2f}</span></div></div>"
    )


def prediction_map(
    prediction: xr.Dataset,
    task: str,
    *,
    scene: xr.Dataset | None = None,
    n_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    max_size: int = 512,
    opacity: float = 0.8,
    tiles: str | None = "OpenStreetMap",
):
    """A folium map of ``task``: prediction, labels, disagreement, entropy (and backscatter).

    ``prediction`` is a :func:`sarlab.finetune.predict_scene` result; ``scene`` (the
    scene it was predicted from) adds a grey co-pol dB layer. Layers toggle in the
    layer control; the prediction is shown first, the others on demand. The entropy
    colour ramp spans 0 to ``log(n_classes)``, the most uncertain a prediction can be.
    """
    import folium

    if task not in prediction:
        raise ValueError(f"the prediction has no {task!r} layer (it has {list(prediction)})")
    names = list(class_names or CLASS_NAMES.get(task, ()))
    if n_classes is None:
        n_classes = len(names) if names else int(np.nanmax(prediction[task].where(
            prediction[task] != IGNORE_INDEX).values)) + 1  # fmt: skip
    names = (names + [f"class {k}" for k in range(len(names), n_classes)])[:n_classes]
    colors = class_colors(task, n_classes)
    grid = mercator_grid(prediction, max_size)
    fmap = folium.Map(tiles=tiles, control_scale=True)
    fmap.fit_bounds(grid.bounds)

    def overlay(rgba: np.ndarray, name: str, show: bool) -> None:
        folium.raster_layers.ImageOverlay(
            _png_uri(np.ascontiguousarray(rgba)), bounds=grid.bounds, name=name,
            opacity=opacity, show=show,
        ).add_to(fmap)  # fmt: skip

    if scene is not None and IMAGE_VAR in scene:
        if (scene.sizes["y"], scene.sizes["x"]) != (prediction.sizes["y"], prediction.sizes["x"]):
            raise ValueError("the scene and the prediction must cover the same pixels")
        co = np.asarray(scene[IMAGE_VAR].isel(band=0).transpose("y", "x").values, np.float32)
        if scene[IMAGE_VAR].attrs.get("units") == "linear":
            with np.errstate(divide="ignore", invalid="ignore"):
                co = 10 * np.log10(np.where(co > 0, co, np.nan))
        grey = grid.sample(co, np.nan)
        value = np.round(np.nan_to_num(_stretch(grey)) * 255).astype(np.uint8)
        alpha = np.where(np.isfinite(grey), 255, 0).astype(np.uint8)
        band = str(scene[IMAGE_VAR]["band"].values[0])
        overlay(np.stack([value, value, value, alpha], -1), f"{band} backscatter (dB)", False)
    pred = grid.sample(prediction[task].values, IGNORE_INDEX)
    overlay(class_rgba(pred, colors), f"prediction: {task}", True)
    label_var = f"{task}_label"
    if label_var in prediction:
        label = grid.sample(prediction[label_var].values, IGNORE_INDEX)
        overlay(class_rgba(label, colors), f"labels: {task}", False)
        wrong = (label != IGNORE_INDEX) & (pred != IGNORE_INDEX) & (label != pred)
        errors = np.zeros((*wrong.shape, 4), np.uint8)
        errors[wrong] = _ERROR_RGBA
        overlay(errors, f"{task}: prediction differs from label", False)
    vmax = float(np.log(n_classes))
    entropy_var = f"{task}_entropy"
    if entropy_var in prediction:
        ent = grid.sample(np.asarray(prediction[entropy_var].values, np.float32), np.nan)
        overlay(scalar_rgba(ent, 0.0, vmax), f"uncertainty: {task} entropy (nats)", False)
    folium.LayerControl(collapsed=False).add_to(fmap)
    title = f"{task} ({grid.note})"
    fmap.get_root().html.add_child(Element(_legend(title, names, colors, vmax)))
    return fmap


def prediction_map_html(
    fmap, path: str | os.PathLike[str], title: str = "sarlab prediction"
) -> Path:
    """Write ``fmap`` as one HTML page that opens offline (Leaflet inlined, no CDN)."""
    from sarlab.atomic import atomic_write_text
    from sarlab.html_offline import make_offline

    fmap.get_root().header.add_child(Element(f"<title>{html.escape(title)}</title>"))
    document, _ = make_offline(fmap.get_root().render())
    return atomic_write_text(path, document)
