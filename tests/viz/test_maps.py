"""Embedding maps: every data layer inline, the offline explorer page (its payload and its
JavaScript wiring, without a browser) and the live Jupyter explorer's two-way link."""

from __future__ import annotations

import json
import re

import geopandas as gpd
import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine
from shapely.geometry import box
from test_html_offline import external_resources, parse

from sarlab.conventions import IMAGE_VAR, sar_attrs
from sarlab.embed_search import kmeans, nearest_others, pca_rgb, top_k_cosine
from sarlab.html_offline import make_offline
from sarlab.viz.explore_page import DATA_ID
from sarlab.viz.maps import (
    cluster_colors,
    explorer,
    explorer_html,
    folium_map,
    quicklook,
)


def _scene(crs: str = "EPSG:32633", height: int = 40, width: int = 60) -> xr.Dataset:
    rng = np.random.default_rng(0)
    data = rng.normal(-18, 3, (2, height, width)).astype(np.float32)
    data[:, :5, :5] = np.nan
    image = xr.DataArray(data, dims=("band", "y", "x"), coords={"band": ["HH", "HV"]},
                         attrs=sar_attrs("sigma0", "dB", ["HH", "HV"]))  # fmt: skip
    ds = xr.Dataset({IMAGE_VAR: image}).rio.write_crs(crs)
    return ds.rio.write_transform(Affine(100.0, 0, 500_000.0, 0, -100.0, 8_800_000.0))


def _chips(ds: xr.Dataset, size: int = 20) -> gpd.GeoDataFrame:
    t = ds.rio.transform()
    polys, ids = [], []
    for r in range(0, ds.sizes["y"], size):
        for c in range(0, ds.sizes["x"], size):
            x0, y0 = t @ (c, r)
            x1, y1 = t @ (c + size, r + size)
            polys.append(box(x0, y1, x1, y0))
            ids.append(f"chip_{r}_{c}")
    return gpd.GeoDataFrame({"chip_id": ids}, geometry=polys, crs=ds.rio.crs).to_crs(4326)


def grid_scene(rows: int = 2, cols: int = 3, size: int = 20) -> tuple[xr.Dataset, gpd.GeoDataFrame]:
    """A UTM scene and its ``rows x cols`` chips of ``size`` px (also used by the browser test)."""
    ds = _scene(height=rows * size, width=cols * size)
    return ds, _chips(ds, size)


def _page(tmp_path, n_rows=2, n_cols=3, k=3, query=2, ids=None, seed=1):
    ds, gdf = grid_scene(n_rows, n_cols)
    if ids is not None:
        gdf["chip_id"] = ids
    x = np.random.default_rng(seed).normal(size=(len(gdf), 8)).astype(np.float32)
    clusters, _ = kmeans(x, 2)
    sod = np.arange(len(gdf)) % 3
    out = explorer_html(
        gdf, x, tmp_path / "explore.html", k=k, scene_image=quicklook(ds), rgb=pca_rgb(x),
        clusters=clusters, labels=sod, label_name="SOD", query=query,
    )  # fmt: skip
    return out.read_text(), gdf, x, clusters, sod


def _payload(doc: str) -> dict:
    found = re.findall(rf'<script type="application/json" id="{DATA_ID}">(.*?)</script>', doc)
    assert len(found) == 1
    return json.loads(found[0])


def test_quicklook_is_transparent_on_nodata_and_placed_on_the_scene():
    ds = _scene()
    rgba, bounds, note = quicklook(ds, max_size=30)
    assert rgba.shape == (20, 30, 4) and rgba.dtype == np.uint8
    assert rgba[0, 0, 3] == 0 and rgba[-1, -1, 3] == 255
    west, south, east, north = ds.rio.transform_bounds("EPSG:4326")
    assert bounds == [[south, west], [north, east]] and "approximate" in note


def test_static_map_has_every_layer_inline():
    ds = _scene()
    gdf = _chips(ds)
    x = np.random.default_rng(1).normal(size=(len(gdf), 8)).astype(np.float32)
    scores, idx = top_k_cosine(x[2:3], x, k=3)
    labels, _ = kmeans(x, 2)
    fmap = folium_map(gdf, scene_image=quicklook(ds), rgb=pca_rgb(x), clusters=labels,
                      labels=[0, 1, 1, 0, 2, 2], label_name="SOD", query=2,
                      neighbours=(scores[0], idx[0]))  # fmt: skip
    doc, _ = make_offline(fmap.get_root().render())
    assert external_resources(doc) == []
    assert "data:image/png;base64," in doc  # the quick-look travels inside the page
    for chip_id in gdf["chip_id"]:
        assert chip_id in doc
    assert "top-3 similar to chip_0_40" in doc and re.search(r"score", doc)
    # the top-k layer's features name their rows of the full table
    props = [json.loads(m) for m in re.findall(r'\{"chip_id": [^{}]*\}', doc)]
    ranked = sorted((p["rank"], p["row"]) for p in props if "rank" in p)
    assert ranked == list(enumerate(idx[0].tolist()))


def test_explorer_page_is_self_contained(tmp_path):
    doc, gdf, *_ = _page(tmp_path)
    assert external_resources(doc) == []
    srcdocs = parse(doc).srcdocs
    assert len(srcdocs) == 1
    for page in (doc, srcdocs[0]):
        # nothing at all is loaded from a URL: no script src, no stylesheet link, no tiles
        assert not re.search(r"<script[^>]*\bsrc=|<link[^>]*\bhref=", page), page[:200]
        assert not re.search(r"https?://[^\s\"']*\{[xyz]\}", page)
    assert "data:image/png;base64," in srcdocs[0]
    assert "Bokeh" in doc and "static/extensions" not in doc
    for chip_id in gdf["chip_id"]:
        assert chip_id in srcdocs[0]


def test_explorer_page_payload_is_the_exact_top_k(tmp_path):
    doc, gdf, x, clusters, sod = _page(tmp_path, n_rows=3, n_cols=4, k=4, query=5)
    data = _payload(doc)
    assert data["chip_id"] == list(gdf["chip_id"]) and data["query"] == 5 and data["k"] == 4
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)  # a chip is not its own neighbour
    ref = np.argsort(-sims, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(data["neighbours"], ref)
    np.testing.assert_allclose(data["scores"], np.take_along_axis(sims, ref, 1), atol=1e-5)
    assert data["fields"] == {"cluster": clusters.tolist(), "SOD": sod.tolist()}


def test_explorer_page_payload_cannot_break_out_of_its_script(tmp_path):
    ids = ["a</script><script>alert(1)</script>", "b&c", "é", "d", "e", "f"]
    doc, *_ = _page(tmp_path, ids=ids)
    assert ids[0] not in doc
    assert _payload(doc)["chip_id"] == ids


def test_explorer_page_wires_scatter_and_map(tmp_path):
    doc, gdf, *_ = _page(tmp_path)
    srcdoc = parse(doc).srcdocs[0]
    # the map side names folium's own variables: the map and the "chip footprints" layer
    linked = re.search(r"var map = (map_\w+), layer = (geo_json_\w+);", srcdoc)
    assert linked, "no link script in the map frame"
    map_name, layer_name = linked.groups()
    assert f"var {map_name} = L.map(" in srcdoc
    assert re.search(rf'"chip footprints"\s*:\s*{layer_name}\b', srcdoc)  # layer control
    added = re.search(rf"{layer_name}_add\((\{{.*?\}})\);", srcdoc, re.DOTALL)
    rows = [f["properties"]["row"] for f in json.loads(added.group(1))["features"]]
    assert rows == list(range(len(gdf)))
    assert srcdoc.index(f"var {layer_name} = L.geoJson(") < linked.start()
    assert 'layer.on("click"' in srcdoc and 'sarlab: "click"' in srcdoc
    assert 'addEventListener("message"' in srcdoc and "setStyle" in srcdoc
    # the page side: the scatter's selection calls the page, the page answers map messages
    assert "fromScatter(cb_obj.indices)" in doc and '"sarlab_points"' in doc
    assert 'e.data.sarlab === "click"' in doc and 'sarlab: "select"' in doc
    # the payload and wiring come before the map frame, which may report ready at once
    assert doc.index(DATA_ID) < doc.index("<iframe") and doc.index("sarlabExplorer") < doc.index(
        "<iframe"
    )


def test_scatter_selection_runs_the_page_callback():
    from sarlab.viz.explore_page import scatter_figure

    fig = scatter_figure(np.zeros((3, 2)), ["a", "b", "c"], fields={"SOD": [1, 2, 3]})
    (source,) = {r.data_source for r in fig.renderers if r.data_source.name == "sarlab_points"}
    (callback,) = source.selected.js_property_callbacks["change:indices"]
    assert "sarlabExplorer.fromScatter(cb_obj.indices)" in callback.code
    tools = {type(t).__name__ for t in fig.tools}
    assert {"BoxSelectTool", "LassoSelectTool", "TapTool"} <= tools
    assert list(source.data["SOD"]) == [1, 2, 3]


def test_cluster_colors_are_stable():
    assert cluster_colors([0, 1, 0, -1]) == ["#1f77b4", "#ff7f0e", "#1f77b4", "#bbbbbb"]


def _live(k=2):
    pytest.importorskip("leafmap")
    ds = _scene()
    gdf = _chips(ds)
    x = np.random.default_rng(2).normal(size=(len(gdf), 8)).astype(np.float32)
    widget, scatter = explorer(gdf, x, k=k, rgb=pca_rgb(x), xy=x[:, :2])
    fmap, side = widget.children
    picker, panel = side.children
    return gdf, x, fmap, picker, panel, scatter


def _layer(fmap, name):
    return next(layer for layer in fmap.layers if layer.name == name)


def test_live_explorer_selects_top_k_on_pick():
    gdf, x, fmap, picker, panel, _ = _live()
    picker.value = "chip_20_20"
    _, idx = nearest_others(x, 2, rows=[4])
    assert "chip_20_20" in panel.value
    for i in idx[0]:
        assert gdf["chip_id"].iloc[i] in panel.value
    roles = {f["properties"]["row"]: f["properties"]["role"]
             for f in _layer(fmap, "selection").data["features"]}  # fmt: skip
    assert roles == {4: "focus", **{int(i): "neighbour" for i in idx[0]}}


def test_live_explorer_links_map_clicks_and_scatter_both_ways():
    import holoviews as hv

    gdf, x, fmap, picker, panel, scatter = _live()
    footprints = _layer(fmap, "footprints")
    feature = footprints.data["features"][1]
    # a click on the map, as ipyleaflet's front end reports it
    footprints._handle_mouse_events(None, {"event": "click", "feature": feature}, [])
    assert picker.value == "chip_0_20" and "chip_0_20" in panel.value
    _, idx = nearest_others(x, 2, rows=[1])
    shown = scatter[()]  # the overlay as drawn now: the points, and the red rings
    rings = shown.get(1)
    assert list(rings.dimension_values("chip_id")) == [gdf["chip_id"].iloc[i] for i in [1, *idx[0]]]
    np.testing.assert_array_equal(rings.dimension_values("x"), x[[1, *idx[0]], 0])
    # a tap on one scatter point selects that chip; a box of points highlights them all
    points = shown.get(0)
    (tap,) = [
        s for s in hv.streams.Stream.registry[points] if isinstance(s, hv.streams.Selection1D)
    ]
    tap.event(index=[5])
    assert picker.value == "chip_20_40" and "chip_20_40" in panel.value
    tap.event(index=[0, 3, 4])
    selection = _layer(fmap, "selection").data["features"]
    assert sorted(f["properties"]["row"] for f in selection) == [0, 3, 4]
    assert {f["properties"]["role"] for f in selection} == {"selected"}
    assert "3 chips selected" in panel.value
    # a click on a highlighted chip (the layer over the footprints) selects it too
    _layer(fmap, "selection")._handle_mouse_events(
        None, {"event": "click", "feature": selection[1]}, []
    )
    assert picker.value == "chip_20_0"
