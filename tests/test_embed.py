"""Embeddings: GeoParquet round trip, determinism, exact top-k, structure, whole-scene windows."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine
from shapely.geometry import box
from shapely.ops import unary_union

from sarlab.chips import ChipStore, build_chip_store
from sarlab.conventions import IMAGE_VAR, sar_attrs
from sarlab.embed import (
    chip_majority_labels,
    embed_chips,
    embed_scene,
    embedding_matrix,
    encoder_for_store,
    model_hash,
    read_embeddings,
    write_dense,
    write_embeddings,
)
from sarlab.embed_search import (
    kmeans,
    knn_accuracy,
    nearest_others,
    pca,
    pca_rgb,
    project_2d,
    top_k_cosine,
)
from sarlab.errors import UnitsError
from sarlab.io.geotiff import open_geotiff, write_geotiff

SMALL = {"embed_dim": 32, "depth": 1, "num_heads": 2}


def _utm_scene(tmp_path, height=80, width=72, units="dB", seed=0, name="utm_scene"):
    """A HH/HV sigma0 GeoTIFF in UTM 33N (a CRS the demo never uses), with a nodata corner."""
    rng = np.random.default_rng(seed)
    data = rng.normal(-18, 3, size=(2, height, width)).astype(np.float32)
    data[1] -= 8
    data[:, :20, :20] = np.nan  # nodata corner: the first window must be skipped
    if units == "linear":
        data = 10 ** (data / 10)
    transform = Affine(40.0, 0, 500_000.0, 0, -40.0, 8_800_000.0)
    x = transform.c + 40.0 * (np.arange(width) + 0.5)
    y = transform.f - 40.0 * (np.arange(height) + 0.5)
    image = xr.DataArray(
        data, dims=("band", "y", "x"), coords={"band": ["HH", "HV"], "y": y, "x": x},
        attrs=sar_attrs("sigma0", units, ["HH", "HV"]),
    )  # fmt: skip
    ds = xr.Dataset({IMAGE_VAR: image}).rio.write_crs("EPSG:32633").rio.write_transform(transform)
    ds.attrs.update(platform="Sentinel-1A", mode="IW", product="GRD")
    return write_geotiff(ds, tmp_path / f"{name}_{units}.tif")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed_store")
    files = [_utm_scene(root, 96, 96, seed=s, name=f"scene{s}") for s in range(2)]
    return build_chip_store(
        files, root / "chips.zarr", size=16, min_valid=0.5, splits={"train": 0.5, "val": 0.5},
        progress=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def encoder(store):
    return encoder_for_store("", store, patch_size=8, verbose=False, **SMALL)


def test_geoparquet_round_trip_valid_and_deterministic(store, encoder, tmp_path):
    gdf = embed_chips(store, encoder, batch_size=7, manifest="test-manifest", progress=False)
    assert len(gdf) == len(store)
    path = write_embeddings(gdf, tmp_path / "emb.parquet")
    field = pq.read_schema(path).field("embedding").type
    assert field.list_size == encoder.embed_dim and str(field.value_type) == "float"
    back = gpd.read_parquet(path)
    assert back.crs.to_epsg() == 4326
    assert back.geometry.is_valid.all()
    assert {
        "chip_id",
        "scene_id",
        "lon",
        "lat",
        "model_card_hash",
        "data_manifest",
        "created",
    } <= set(back.columns)
    assert (back["data_manifest"] == "test-manifest").all()
    assert (back["model_card_hash"] == model_hash(encoder)).all()
    np.testing.assert_array_equal(embedding_matrix(back), embedding_matrix(gdf))
    # footprints lie inside their scene's footprint (the union of the store's chips, buffered)
    scene = unary_union(store.table.geometry).buffer(1e-6)
    assert back.geometry.within(scene).all()
    assert read_embeddings(path).attrs["sarlab_embeddings"]["pool"] == "mean"
    # a rerun, with another batch size, gives identical vectors
    again = embed_chips(store, encoder, batch_size=64, progress=False)
    np.testing.assert_array_equal(embedding_matrix(again), embedding_matrix(gdf))
    cls = embed_chips(store, encoder, pool="cls", progress=False)
    assert not np.allclose(embedding_matrix(cls), embedding_matrix(gdf))


def test_top_k_equals_brute_force_and_finds_itself_first():
    rng = np.random.default_rng(1)
    bank = rng.normal(size=(1000, 24)).astype(np.float32)
    scores, idx = top_k_cosine(bank[:50], bank, k=7, chunk=97, query_chunk=13)
    unit = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    sims = unit[:50] @ unit.T
    ref = np.argsort(-sims, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(scores, np.take_along_axis(sims, ref, 1), atol=1e-5)
    np.testing.assert_array_equal(idx[:, 0], np.arange(50))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    whole_s, whole_i = top_k_cosine(bank[:50], bank, k=7, chunk=10**6)
    np.testing.assert_array_equal(whole_i, idx)
    np.testing.assert_allclose(whole_s, scores, atol=1e-6)


def test_top_k_breaks_ties_by_index():
    bank = np.array([[1, 0], [0, 1], [1, 0], [2, 0], [0.5, 0.5]], np.float32)
    _, idx = top_k_cosine(bank[:1], bank, k=3, chunk=2)
    np.testing.assert_array_equal(idx[0], [0, 2, 3])


def test_nearest_others_leave_the_chip_itself_out():
    rng = np.random.default_rng(4)
    bank = rng.normal(size=(60, 12)).astype(np.float32)
    bank[7] = bank[3]  # an exact duplicate: 7 finds 3 (lower index) before itself
    scores, idx = nearest_others(bank, k=5, chunk=17)
    unit = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    ref = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(scores, np.take_along_axis(sims, ref, 1), atol=1e-5)
    assert idx[7, 0] == 3 and idx[3, 0] == 7 and not (idx == np.arange(60)[:, None]).any()
    some_s, some_i = nearest_others(bank, k=5, rows=[7, 0])
    np.testing.assert_array_equal(some_i, idx[[7, 0]])
    np.testing.assert_allclose(some_s, scores[[7, 0]], atol=1e-6)
    assert nearest_others(bank[:1], k=3)[1].shape == (1, 0)  # a lone chip has no neighbours


def test_structure_shapes_and_knn_accuracy():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(3, 16)) * 5
    y = np.repeat(np.arange(3), 40)
    x = (centres[y] + rng.normal(size=(120, 16))).astype(np.float32)
    labels, cent = kmeans(x, 3, seed=0)
    assert labels.shape == (120,) and cent.shape == (3, 16)
    # clusters recover the generating groups (up to renaming)
    assert all(len(set(labels[y == c])) == 1 for c in range(3))
    scores, ratio = pca(x, 3)
    assert scores.shape == (120, 3) and np.all(np.diff(ratio) <= 0) and ratio.sum() <= 1
    rgb = pca_rgb(x)
    assert rgb.shape == (120, 3) and rgb.min() >= 0 and rgb.max() <= 1
    xy, used = project_2d(x, "umap")  # umap-learn is a notebook dependency
    assert xy.shape == (120, 2) and used == "umap"
    # neighbours stay neighbours: every point's nearest projected point is of its group
    nearest = np.argsort(((xy[:, None] - xy[None]) ** 2).sum(-1), axis=1)[:, 1]
    assert (y[nearest] == y).mean() > 0.95
    assert knn_accuracy(x[::2], y[::2], x[1::2], y[1::2], k=5) == 1.0
    assert knn_accuracy(x[::2], rng.permutation(y[::2]), x[1::2], y[1::2], k=5) < 0.8


def test_chip_majority_labels_of_a_labelled_store(tmp_path):
    # a tiny labelled store from an in-memory scene: SOD class = left half 1, right half 3
    image = xr.DataArray(
        np.random.default_rng(3).normal(-15, 2, (2, 32, 32)).astype(np.float32),
        dims=("band", "y", "x"), coords={"band": ["HH", "HV"]},
        attrs=sar_attrs("sigma0", "dB", ["HH", "HV"]),
    )  # fmt: skip
    sod = np.ones((32, 32), np.uint8)
    sod[:, 16:] = 3
    sod[:4, :16] = 255
    transform = Affine(40.0, 0, 500_000.0, 0, -40.0, 8_800_000.0)
    ds = xr.Dataset({IMAGE_VAR: image, "SOD": (("y", "x"), sod)})
    ds = ds.rio.write_crs("EPSG:32633").rio.write_transform(transform)
    ds.attrs.update(scene_id="s", platform="Sentinel-1A", mode="IW", product="GRD")
    store = build_chip_store(
        [ds], tmp_path / "lab.zarr", size=16, label_vars=["SOD"], splits={"train": 1.0},
        progress=False,
    )  # fmt: skip
    table = ChipStore(store.path).table
    expected = np.where(table["col"].to_numpy() < 16, 1, 3)
    np.testing.assert_array_equal(chip_majority_labels(store, "SOD"), expected)


def test_whole_scene_in_utm_geotiff(tmp_path, encoder, store):
    path = _utm_scene(tmp_path, 80, 72)
    gdf, grid = embed_scene(
        path, encoder, size=16, stats=store.stats, dense=True, min_valid=0.9, progress=False
    )
    # 5 x 4 windows; the 20 px nodata corner leaves (0, 0) empty, (0, 16) and (16, 0) 75 %
    # valid (skipped at 0.9) and (16, 16) 94 % valid (kept)
    windows = set(zip(gdf["row"], gdf["col"], strict=True))
    assert len(gdf) == 5 * 4 - 3 and (16, 16) in windows
    assert windows.isdisjoint({(0, 0), (0, 16), (16, 0)})
    ds = open_geotiff(path)
    west, south, east, north = ds.rio.transform_bounds("EPSG:4326")
    scene = box(west, south, east, north).buffer(1e-6)
    assert gdf.geometry.is_valid.all() and gdf.geometry.within(scene).all()
    assert gdf.crs.to_epsg() == 4326 and 14 < gdf["lon"].mean() < 16  # UTM 33N: 15 deg E
    # a window's pooled vector equals the encoder on that chip alone
    import torch

    r, c = int(gdf["row"].iloc[0]), int(gdf["col"].iloc[0])
    chip = ds[IMAGE_VAR].values[:, r : r + 16, c : c + 16]
    x = torch.nan_to_num(store.stats.normalize(torch.from_numpy(chip)[None], band_axis=1))
    with torch.inference_mode():
        ref = encoder.forward_features(x)[:, 1:].mean(dim=1).numpy()
    np.testing.assert_allclose(embedding_matrix(gdf)[0], ref[0], atol=1e-5)
    again = embed_scene(path, encoder, size=16, stats=store.stats, min_valid=0.9, progress=False)
    np.testing.assert_array_equal(embedding_matrix(again), embedding_matrix(gdf))
    # dense grid: 2x2 patches per 16 px window, geo-referenced in the scene's CRS
    assert grid["patch_embedding"].shape == (encoder.embed_dim, 10, 8)
    assert grid.rio.crs.to_epsg() == 32633
    assert grid.rio.transform().a == 8 * 40.0
    out = write_dense(grid, tmp_path / "dense.zarr")
    back = xr.open_zarr(out, consolidated=False)
    np.testing.assert_array_equal(back["patch_embedding"].values, grid["patch_embedding"].values)


def test_whole_scene_blocks_do_not_change_the_result(tmp_path, encoder, store):
    """Reading one window row per block (small dask chunks) equals reading the scene at once."""
    ds = open_geotiff(_utm_scene(tmp_path, 80, 72)).load()
    kwargs = {"size": 16, "stats": store.stats, "min_valid": 0.9, "progress": False}
    whole = embed_scene(ds, encoder, **kwargs)
    blocked = embed_scene(ds.chunk({"y": 20}), encoder, stride=8, **kwargs)
    overlap = embed_scene(ds, encoder, stride=8, **kwargs)
    assert len(blocked) == len(overlap) > len(whole)
    assert list(blocked["chip_id"]) == list(overlap["chip_id"])
    np.testing.assert_array_equal(embedding_matrix(blocked), embedding_matrix(overlap))


def test_whole_scene_refuses_other_units(tmp_path, encoder, store):
    path = _utm_scene(tmp_path, 32, 32, units="linear")
    with pytest.raises(UnitsError, match="linear"):
        embed_scene(path, encoder, size=16, stats=store.stats, progress=False)


def test_dense_chip_embeddings_are_each_chips_patch_tokens(store, encoder, tmp_path):
    gdf, grid = embed_chips(store, encoder, dense=True, batch_size=5, progress=False)
    tokens = grid["patch_embedding"]
    assert tokens.dims == ("chip", "feature", "y", "x")
    assert tokens.shape == (len(store), encoder.embed_dim, 2, 2)  # 16 px chips, 8 px patches
    assert list(grid["chip_id"].values) == list(gdf["chip_id"])
    assert list(grid["pixel_row"].values) == [0, 8] and grid.attrs["patch_size"] == 8
    # mean pooling is the mean of these patch tokens
    np.testing.assert_allclose(tokens.mean(("y", "x")).values, embedding_matrix(gdf), atol=1e-5)
    # one chip by hand: row-major patches of the encoder's tokens
    import torch

    from sarlab.chips import ChipDataset

    x = ChipDataset(store.path, with_labels=False, stats=store.stats)[3]["image"][None]
    with torch.inference_mode():
        ref = encoder.forward_features(x)[0, 1:].T.reshape(-1, 2, 2).numpy()
    np.testing.assert_allclose(tokens.values[3], ref, atol=1e-5)
    # where each chip came from: its window and its scene's geo-reference
    table = store.table
    assert list(grid["row"].values) == list(table["row"]) and "32633" in str(
        grid["source_crs"][0].values
    )
    back = xr.open_zarr(write_dense(grid, tmp_path / "chips_dense.zarr"), consolidated=False)
    np.testing.assert_array_equal(back["patch_embedding"].values, tokens.values)
