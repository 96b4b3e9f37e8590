"""Prediction maps: overlays on the scene, class colours, nodata transparent, offline page."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from affine import Affine
from bokeh.palettes import Viridis256
from PIL import Image
from pyproj import Transformer
from test_html_offline import external_resources

from sarlab.conventions import IGNORE_INDEX, IMAGE_VAR, sar_attrs
from sarlab.viz.prediction_map import (
    CLASS_NAMES,
    class_colors,
    class_rgba,
    mercator_grid,
    prediction_map,
    prediction_map_html,
    scalar_rgba,
)


def _prediction(crs: str | None, transform: Affine, shape=(40, 50), task="SOD") -> xr.Dataset:
    """A prediction with a nodata corner, labels that differ in one row, and an entropy layer."""
    h, w = shape
    pred = (np.arange(w)[None, :] * 6 // w).repeat(h, 0).astype(np.uint8)
    pred[:5, :5] = IGNORE_INDEX
    label = pred.copy()
    label[10] = 0
    ent = np.linspace(0, np.log(6), h * w, dtype=np.float32).reshape(h, w)
    ent[:5, :5] = np.nan
    ds = xr.Dataset(
        {task: (("y", "x"), pred), f"{task}_label": (("y", "x"), label),
         f"{task}_entropy": (("y", "x"), ent)},
    )  # fmt: skip
    if crs is None:
        return ds
    return ds.rio.write_crs(crs).rio.write_transform(transform)


def _radar_geometry(ds: xr.Dataset) -> xr.Dataset:
    """The same pixels without a CRS, located by 2-D latitude/longitude of their centres."""
    h, w = ds.sizes["y"], ds.sizes["x"]
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x, y = ds.rio.transform() @ (cols, rows)
    lon, lat = Transformer.from_crs(ds.rio.crs, 4326, always_xy=True).transform(x, y)
    out = ds.drop_vars("spatial_ref").assign_coords(
        latitude=(("y", "x"), lat), longitude=(("y", "x"), lon)
    )
    assert out.rio.crs is None
    return out


POLAR = ("EPSG:3413", Affine(400.0, 0, 1_000_000.0, 0, -400.0, -1_000_000.0))  # rotated grid


def test_epsg4326_overlay_sits_on_the_raster_bounds():
    ds = _prediction("EPSG:4326", Affine(0.001, 0, 10.0, 0, -0.001, 60.0))
    grid = mercator_grid(ds, max_size=200)
    (south, west), (north, east) = grid.bounds
    assert west == pytest.approx(10.0) and east == pytest.approx(10.05)
    assert north == pytest.approx(60.0) and south == pytest.approx(59.96)
    assert grid.valid.all()
    # the west edge is column 0, the east edge the last column, north is row 0
    assert (grid.cols[:, 0] == 0).all() and (grid.cols[:, -1] == 49).all()
    assert (grid.rows[0] == 0).all() and (grid.rows[-1] == 39).all()
    # Mercator stretches rows unevenly at 60 N: the row under each grid line follows latitude
    to_merc = Transformer.from_crs(4326, 3857, always_xy=True)
    _, y_n = to_merc.transform(10.0, north)
    _, y_s = to_merc.transform(10.0, south)
    ny = grid.rows.shape[0]
    y_mid = y_n - (np.arange(ny) + 0.5) * (y_n - y_s) / ny
    _, lat = to_merc.transform(np.full(ny, 10.0), y_mid, direction="INVERSE")
    np.testing.assert_array_equal(grid.rows[:, 0], np.floor((60.0 - lat) / 0.001).astype(int))


def test_projected_grid_is_inverted_exactly():
    ds = _prediction(*POLAR)
    grid = mercator_grid(ds, max_size=120)
    assert 0.3 < grid.valid.mean() < 0.95  # a grid rotated against north leaves corners empty
    west, south, east, north = ds.rio.transform_bounds(4326)
    assert grid.bounds[0] == pytest.approx([south, west], abs=1e-6)
    assert grid.bounds[1] == pytest.approx([north, east], abs=1e-6)
    sampled = grid.sample(ds["SOD"].values, IGNORE_INDEX)
    assert set(np.unique(sampled[~grid.valid])) == {IGNORE_INDEX}
    assert set(np.unique(sampled[grid.valid])) <= set(np.unique(ds["SOD"].values))


def test_radar_geometry_matches_the_crs_placement():
    ds = _prediction(*POLAR)
    exact = mercator_grid(ds, max_size=120)
    radar = mercator_grid(_radar_geometry(ds), max_size=120)
    assert np.allclose(radar.bounds, exact.bounds, atol=0.02)  # half a pixel of slack
    both = exact.valid & radar.valid
    assert both.sum() > 0.9 * exact.valid.sum() and radar.valid.sum() < 1.1 * exact.valid.sum()
    same = (exact.rows == radar.rows) & (exact.cols == radar.cols)
    assert same[both].mean() > 0.8  # the rest is the neighbouring pixel
    assert np.abs(exact.rows - radar.rows)[both].max() <= 1
    assert np.abs(exact.cols - radar.cols)[both].max() <= 1


def test_class_and_scalar_colours_with_transparent_nodata():
    colors = class_colors("SOD", 6)
    assert colors[0] == "#08306b" and len(set(colors)) == 6
    assert class_colors("SIC", 11)[-1] == "#ffffff" and len(set(class_colors("SIC", 11))) == 11
    rgba = class_rgba(np.array([[0, 5, IGNORE_INDEX, 9]]), colors)
    assert tuple(rgba[0, 0]) == (8, 48, 107, 255)
    assert "#{:02x}{:02x}{:02x}".format(*rgba[0, 1, :3]) == colors[5]
    assert rgba[0, 2, 3] == 0 and rgba[0, 3, 3] == 0  # nodata and unknown codes
    scal = scalar_rgba(np.array([[0.0, 1.0, np.nan]]), 0.0, 1.0)
    assert "#{:02x}{:02x}{:02x}".format(*scal[0, 0, :3]) == Viridis256[0].lower()
    assert "#{:02x}{:02x}{:02x}".format(*scal[0, 1, :3]) == Viridis256[-1].lower()
    assert scal[0, 2, 3] == 0 and scal[0, 0, 3] == 255


def _overlays(document: str) -> list[tuple[np.ndarray, list[list[float]]]]:
    """Every image overlay of a folium page: its picture and its bounds."""
    found = re.findall(
        r'L\.imageOverlay\(\s*"data:image/png;base64,([A-Za-z0-9+/=]+)",\s*(\[\[[^\n]*\]\])',
        document,
    )
    return [
        (np.asarray(Image.open(io.BytesIO(base64.b64decode(b)))), json.loads(bounds))
        for b, bounds in found
    ]


def test_map_layers_legend_and_offline_page(tmp_path):
    ds = _prediction(*POLAR)
    scene = xr.Dataset(
        {IMAGE_VAR: (("band", "y", "x"), np.full((2, 40, 50), -15.0, np.float32),
                     sar_attrs("sigma0", "dB", ["HH", "HV"]))},
        coords={"band": ["HH", "HV"]},
    )  # fmt: skip
    fmap = prediction_map(_radar_geometry(ds), "SOD", scene=scene, max_size=100)
    page = prediction_map_html(fmap, tmp_path / "map.html", title="SOD test")
    doc = page.read_text()
    assert external_resources(doc) == []
    assert "L.control.layers" in doc  # layers toggle
    for name in ("prediction: SOD", "labels: SOD", "SOD: prediction differs from label",
                 "uncertainty: SOD entropy (nats)", "HH backscatter (dB)", *CLASS_NAMES["SOD"],
                 *class_colors("SOD", 6)):  # fmt: skip
        assert name in doc, name
    overlays = _overlays(doc)
    grid = mercator_grid(_radar_geometry(ds), max_size=100)
    assert len(overlays) == 5 and all(np.allclose(b, grid.bounds) for _, b in overlays)
    grey, pred, label, errors, ent = (im for im, _ in overlays)
    assert all(im.shape == (*grid.valid.shape, 4) for im in (grey, label))
    expect = class_rgba(grid.sample(ds["SOD"].values, IGNORE_INDEX), class_colors("SOD", 6))
    np.testing.assert_array_equal(pred, expect)
    assert (pred[~grid.valid, 3] == 0).all() and (ent[~grid.valid, 3] == 0).all()
    nodata = grid.valid & (grid.rows < 5) & (grid.cols < 5)
    assert nodata.any() and (pred[nodata, 3] == 0).all() and (ent[nodata, 3] == 0).all()
    wrong = errors[..., 3] > 0
    assert wrong.any() and (grid.rows[wrong] == 10).all()  # only the row whose label differs


def test_map_refuses_a_missing_layer_or_another_scene():
    with pytest.raises(ValueError, match="no 'water' layer"):
        prediction_map(_prediction(*POLAR), "water")
    other = xr.Dataset({IMAGE_VAR: (("band", "y", "x"), np.zeros((1, 8, 8), np.float32))})
    with pytest.raises(ValueError, match="same pixels"):
        prediction_map(_prediction(*POLAR), "SOD", scene=other)
