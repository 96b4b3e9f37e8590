"""Embedding maps: offline headless HTML with every data layer inline; the Jupyter explorer."""

from __future__ import annotations

import re

import geopandas as gpd
import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine
from shapely.geometry import box
from test_html_offline import external_resources

from sarlab.conventions import IMAGE_VAR, sar_attrs
from sarlab.embed_search import kmeans, pca_rgb, top_k_cosine
from sarlab.viz.maps import (
    cluster_colors,
    explorer,
    explorer_html,
    folium_map,
    quicklook,
    scatter_2d,
)


def _scene(crs: str = "EPSG:32633") -> xr.Dataset:
    rng = np.random.default_rng(0)
    data = rng.normal(-18, 3, (2, 40, 60)).astype(np.float32)
    data[:, :5, :5] = np.nan
    image = xr.DataArray(data, dims=("band", "y", "x"), coords={"band": ["HH", "HV"]},
                         attrs=sar_attrs("sigma0", "dB", ["HH", "HV"]))  # fmt: skip
    ds = xr.Dataset({IMAGE_VAR: image}).rio.write_crs(crs)
    return ds.rio.write_transform(Affine(100.0, 0, 500_000.0, 0, -100.0, 8_800_000.0))


def _chips(ds: xr.Dataset) -> gpd.GeoDataFrame:
    t = ds.rio.transform()
    polys, ids = [], []
    for r in range(0, 40, 20):
        for c in range(0, 60, 20):
            x0, y0 = t @ (c, r)
            x1, y1 = t @ (c + 20, r + 20)
            polys.append(box(x0, y1, x1, y0))
            ids.append(f"chip_{r}_{c}")
    return gpd.GeoDataFrame({"chip_id": ids}, geometry=polys, crs=ds.rio.crs).to_crs(4326)


def test_quicklook_is_transparent_on_nodata_and_placed_on_the_scene():
    ds = _scene()
    rgba, bounds, note = quicklook(ds, max_size=30)
    assert rgba.shape == (20, 30, 4) and rgba.dtype == np.uint8
    assert rgba[0, 0, 3] == 0 and rgba[-1, -1, 3] == 255
    west, south, east, north = ds.rio.transform_bounds("EPSG:4326")
    assert bounds == [[south, west], [north, east]] and "approximate" in note


def test_headless_html_is_self_contained(tmp_path):
    ds = _scene()
    gdf = _chips(ds)
    x = np.random.default_rng(1).normal(size=(len(gdf), 8)).astype(np.float32)
    scores, idx = top_k_cosine(x[2:3], x, k=3)
    labels, _ = kmeans(x, 2)
    fmap = folium_map(gdf, scene_image=quicklook(ds), rgb=pca_rgb(x), clusters=labels,
                      labels=[0, 1, 1, 0, 2, 2], label_name="SOD", query=2,
                      neighbours=(scores[0], idx[0]))  # fmt: skip
    out = explorer_html(fmap, tmp_path / "map.html", scatter=scatter_2d(gdf, x[:, :2], labels))
    doc = out.read_text()
    assert external_resources(doc) == []
    assert "data:image/png;base64," in doc  # the quick-look travels inside the page
    for chip_id in gdf["chip_id"]:
        assert chip_id in doc
    assert "top-3 similar to chip_0_40" in doc and "Bokeh" in doc
    assert re.search(r"score", doc)


def test_cluster_colors_are_stable():
    assert cluster_colors([0, 1, 0, -1]) == ["#1f77b4", "#ff7f0e", "#1f77b4", "#bbbbbb"]


def test_explorer_selects_top_k_on_pick():
    pytest.importorskip("leafmap")
    ds = _scene()
    gdf = _chips(ds)
    x = np.random.default_rng(2).normal(size=(len(gdf), 8)).astype(np.float32)
    box_widget, scatter = explorer(gdf, x, k=2, rgb=pca_rgb(x), xy=x[:, :2])
    picker, panel = box_widget.children[1].children
    picker.value = "chip_20_20"
    _, idx = top_k_cosine(x[4:5], x, 2)
    assert "chip_20_20" in panel.value and gdf["chip_id"].iloc[idx[0, 1]] in panel.value
    assert scatter is not None
