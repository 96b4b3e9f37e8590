"""The chip store: chips map back to their exact source pixels and places on Earth."""

from __future__ import annotations

import pickle

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import shapely
import torch
import xarray as xr
import zarr
from affine import Affine
from pyproj import Transformer
from rasterio.windows import Window
from torch.utils.data import DataLoader

from sarlab import chips_build
from sarlab.chips import (
    READERS,
    ChipDataset,
    ChipStore,
    ChunkArray,
    assign_splits,
    build_chip_store,
    partial_path,
    resolve_reader,
)
from sarlab.conventions import IGNORE_INDEX, sar_attrs
from sarlab.errors import InputError, UnitsError

S = 32  # chip size in these tests
UTM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0)


def scene(
    scene_id: str,
    shape: tuple[int, int] = (96, 128),
    *,
    seed: int = 0,
    offset: float = 0.0,
    units: str = "dB",
    quantity: str = "sigma0",
    bands: tuple[str, ...] = ("VV", "VH"),
    labels: bool = True,
    incidence: bool = True,
    crs: str | None = "EPSG:32633",
    transform: Affine = UTM,
) -> xr.Dataset:
    """A small scene in the sarlab convention with random dB values."""
    rng = np.random.default_rng(seed)
    h, w = shape
    image = rng.normal(-15.0 + offset, 3.0, (len(bands), h, w)).astype(np.float32)
    data = {"backscatter": (("band", "y", "x"), image, sar_attrs(quantity, units, bands))}
    if incidence:
        angle = np.tile(np.linspace(30, 45, w, dtype=np.float32), (h, 1)) + seed
        data["incidence_angle"] = (("y", "x"), angle, {"units": "degrees"})
    if labels:
        water = rng.integers(0, 2, (h, w)).astype(np.uint8)
        water[:3] = IGNORE_INDEX
        data["water"] = (("y", "x"), water, {"flag_values": [0, 1], "flag_meanings": "dry wet"})
    ds = xr.Dataset(data, coords={"band": list(bands)}, attrs={"scene_id": scene_id})
    if crs is not None:
        ds = ds.rio.write_crs(crs).rio.write_transform(transform)
    return ds


def build(scenes, path, **kwargs):
    kwargs = {"size": S, "scheduler": "sync", "progress": False, **kwargs}
    return build_chip_store(scenes, path, **kwargs)


def assert_same_store(a: ChipStore, b: ChipStore) -> None:
    assert a.attrs == b.attrs
    pd.testing.assert_frame_equal(
        pd.DataFrame(a.table.drop(columns="geometry")),
        pd.DataFrame(b.table.drop(columns="geometry")),
    )
    assert a.table.geometry.geom_equals_exact(b.table.geometry, 0).all()
    for name in ("image", "incidence", "labels"):
        np.testing.assert_array_equal(a.array(name)[:], b.array(name)[:])


def corners_lonlat(transform: Affine, crs: str, row: int, col: int) -> np.ndarray:
    """The four outer corners of a window, transformed independently of sarlab.geo."""
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    pts = [
        transform @ (c, r)
        for c, r in ((col, row), (col + S, row), (col + S, row + S), (col, row + S))
    ]
    return np.array([to_ll.transform(x, y) for x, y in pts])


def assert_vertices(footprint, points: np.ndarray, atol: float = 1e-9) -> None:
    ring = np.asarray(footprint.exterior.coords)
    for p in points:
        assert np.abs(ring - p).max(axis=1).min() < atol, f"{p} is not a footprint vertex"


# --- round trips -------------------------------------------------------------------------


def test_round_trip_chips_map_back_to_source_pixels(tmp_path):
    wgs = Affine(1e-4, 0.0, 12.0, 0.0, -1e-4, 55.0)
    scenes = {
        "utm": scene("utm", seed=1),
        "wgs": scene("wgs", (70, 90), seed=2, crs="EPSG:4326", transform=wgs),
    }
    store = build(list(scenes.values()), tmp_path / "s.zarr", stride=24, min_valid=0.0)
    table = store.table
    # every window that fits, overlapping by 8 pixels: (96-32)//24+1 = 3 rows x (128-32)//24+1 = 5
    assert (table.scene_id == "utm").sum() == 3 * 5 and (table.scene_id == "wgs").sum() == 2 * 3
    assert table["index"].tolist() == list(range(len(store)))
    assert table.chip_id.is_unique
    for i, rec in table.iterrows():
        src = scenes[rec.scene_id]
        r, c = int(rec.row), int(rec.col)
        chip = store.chip(i)
        np.testing.assert_array_equal(
            chip.backscatter.values, src.backscatter.values[:, r : r + S, c : c + S]
        )
        np.testing.assert_array_equal(
            chip.incidence_angle.values, src.incidence_angle.values[r : r + S, c : c + S]
        )
        np.testing.assert_array_equal(chip.water.values, src.water.values[r : r + S, c : c + S])
        assert store.window_of(i) == Window(c, r, S, S)
        expected = src.rio.transform() @ Affine.translation(c, r)
        assert Affine(*rec.affine).almost_equals(expected, precision=1e-12)
        assert chip.rio.transform().almost_equals(expected, precision=1e-12)
        assert chip.rio.crs == src.rio.crs
        crs = src.rio.crs.to_string()
        assert rec.source_crs == crs
        assert_vertices(rec.geometry, corners_lonlat(src.rio.transform(), crs, r, c))
        assert rec.geometry.is_valid and rec.geometry.contains(shapely.Point(rec.lon, rec.lat))
        assert chip.attrs["chip_id"] == rec.chip_id and chip.attrs["footprint"] == rec.geometry.wkt
    # the x/y coordinates of a chip are the source's pixel centres
    utm0 = table.index[table.scene_id == "utm"][0]
    chip = store.chip(utm0)
    assert float(chip.x[0]) == pytest.approx(UTM.c + 10.0 * (table.col[utm0] + 0.5))
    assert chip.backscatter.attrs == scenes["utm"].backscatter.attrs


def test_geotiff_scene_windows_read_back_with_rasterio(tmp_path):
    import rasterio

    ds = scene("tif", seed=3, labels=False, incidence=False)
    ds["backscatter"].rio.to_raster(
        tmp_path / "scene.tif", tiled=True, blockxsize=32, blockysize=32, compress="deflate"
    )
    store = build(
        [tmp_path / "scene.tif"],
        tmp_path / "s.zarr",
        reader="geotiff",
        reader_kwargs={"polarizations": ["VV", "VH"], "units": "dB", "quantity": "sigma0"},
    )
    assert len(store) == 3 * 4
    assert set(store.table.source_crs) == {"EPSG:32633"}
    with rasterio.open(tmp_path / "scene.tif") as src:
        for i in range(len(store)):
            window = store.window_of(i)
            np.testing.assert_array_equal(src.read(window=window), store.chip(i).backscatter.values)
            assert Affine(*store.table.affine[i]) == src.window_transform(window)


def test_table_is_geoparquet_readable_by_pandas_and_geopandas(tmp_path):
    store = build([scene("a")], tmp_path / "s.zarr")
    plain = pd.read_parquet(tmp_path / "s.zarr" / "chips.parquet")
    geo = gpd.read_parquet(tmp_path / "s.zarr" / "chips.parquet")
    assert geo.crs.to_epsg() == 4326
    assert shapely.from_wkb(plain.geometry[0]).equals_exact(geo.geometry[0], 0)
    for column in (
        "chip_id",
        "scene_id",
        "row",
        "col",
        "source_crs",
        "affine",
        "lon",
        "lat",
        "split",
    ):
        assert column in plain
    assert store.attrs["bands"] == ["VV", "VH"] and store.attrs["units"] == "dB"


# --- filtering, labels, splits ------------------------------------------------------------


def test_min_valid_drops_chips_with_too_much_nodata(tmp_path):
    ds = scene("holes", (64, 96))
    img = ds.backscatter.values
    img[:, 0:32, 0:32] = np.nan  # chip (0, 0): nothing valid
    img[1, 0:32, 32:48] = np.nan  # chip (0, 32): half invalid, in one band only
    img[0, 0:32, 64:81] = np.nan  # chip (0, 64): 17 of 32 columns invalid
    store = build([ds], tmp_path / "half.zarr", min_valid=0.5)
    kept = {
        (r, c): v
        for r, c, v in store.table[["row", "col", "valid_fraction"]].itertuples(index=False)
    }
    assert kept == {(0, 32): 0.5, (32, 0): 1.0, (32, 32): 1.0, (32, 64): 1.0}
    every = build([ds], tmp_path / "all.zarr", min_valid=0.0)
    cells = zip(every.table.row, every.table.col, strict=True)
    got = dict(zip(cells, every.table.valid_fraction, strict=True))
    assert got[(0, 0)] == 0.0 and got[(0, 64)] == pytest.approx(15 / 32)
    empty = int(every.table.index[(every.table.row == 0) & (every.table.col == 0)][0])
    raw = ChipDataset(every.path, normalize=False, nan_fill=None)
    assert torch.isnan(raw[empty]["image"]).all()  # an all-NaN chunk reads back as NaN
    with pytest.raises(InputError, match="no 64x64 chip"):
        build([ds], tmp_path / "none.zarr", min_valid=1.0, stride=64, size=64)


def test_labels_keep_the_ignore_index(tmp_path):
    labelled, unlabelled = scene("lab", seed=1), scene("unlab", seed=2, labels=False)
    store = build([labelled, unlabelled], tmp_path / "s.zarr")
    assert store.attrs["label_vars"] == ["water"]
    assert store.attrs["labels"]["water"] == {"flag_values": [0, 1], "flag_meanings": "dry wet"}
    ds = ChipDataset(store.path)
    for i, rec in store.table.iterrows():
        labels = ds[i]["labels"]
        assert labels.dtype == torch.int64 and labels.shape == (1, S, S)
        if rec.scene_id == "unlab":
            assert (labels == IGNORE_INDEX).all()
        else:
            r, c = rec.row, rec.col
            expect = labelled.water.values[r : r + S, c : c + S]
            np.testing.assert_array_equal(labels[0].numpy(), expect)
    assert (store.array("labels")[0][0, :3] == IGNORE_INDEX).all()
    bare = build([labelled], tmp_path / "bare.zarr", label_vars=[])
    assert bare.attrs["label_vars"] == [] and "labels" not in ChipDataset(bare.path)[0]

    bad = scene("bad", seed=4)
    bad["water"] = bad.water.astype(np.int16).where(bad.water != IGNORE_INDEX, -1)
    bad.attrs["source"] = "somewhere/bad_scene.tif"
    with pytest.raises(InputError, match=r"somewhere/bad_scene.tif.*outside 0\.\.255"):
        build([bad], tmp_path / "bad.zarr")


def test_splits_never_mix_a_scenes_chips(tmp_path):
    ids = [f"s{i}" for i in range(10)]
    fractions = {"train": 0.6, "val": 0.2, "test": 0.2}
    store = build(
        [scene(sid, (64, 64), seed=i) for i, sid in enumerate(ids)],
        tmp_path / "s.zarr",
        splits=fractions,
        split_seed=3,
    )
    per_scene = store.table.groupby("scene_id").split.nunique()
    assert (per_scene == 1).all()
    expected = assign_splits(ids, fractions, seed=3)
    assert store.table.groupby("scene_id").split.first().to_dict() == expected
    assert pd.Series(expected).value_counts().to_dict() == {"train": 6, "val": 2, "test": 2}
    assert store.attrs["splits"] == {"test": 8, "train": 24, "val": 8}
    assert assign_splits(ids, fractions, seed=4) != expected
    assert len(ChipDataset(store.path, split="val")) == 8
    assert len(ChipDataset(store.path, split=["val", "test"])) == 16

    assert assign_splits(["a", "b"], {"a": "val", "b": "train"}) == {"a": "val", "b": "train"}
    assert assign_splits(["x1", "y1"], lambda sid: sid[0]) == {"x1": "x", "y1": "y"}
    assert assign_splits(["a"]) == {"a": "train"}
    with pytest.raises(ValueError, match="no split for scene"):
        assign_splits(["a", "b"], {"a": "train"})
    with pytest.raises(ValueError, match="sum to 1"):
        assign_splits(["a", "b"], {"train": 0.5, "val": 0.1})


def test_statistics_come_from_the_train_split_only(tmp_path):
    scenes = [scene(f"t{i}", seed=i) for i in range(3)] + [scene("v0", seed=9, offset=30.0)]
    store = build(
        scenes, tmp_path / "s.zarr", splits=lambda sid: "train" if sid[0] == "t" else "val"
    )
    stats = store.stats
    train = store.table.index[store.table.split == "train"].to_numpy()
    values = store.array("image")[:][train]
    assert stats.bands == ["VV", "VH"] and stats.units == "dB"
    np.testing.assert_allclose(stats.mean, values.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(stats.std, values.std(axis=(0, 2, 3)), rtol=1e-5)
    assert stats.count == [values[:, 0].size] * 2
    assert store.attrs["stats_split"] == "train" and store.attrs["stats_chips"] == len(train)
    assert max(stats.p99) < 0.0  # the val scene (mean +15 dB) did not leak in


# --- resumability and atomicity -----------------------------------------------------------


def crash_on_second_scene(monkeypatch, calls: list[str]) -> None:
    real = chips_build.write_part

    def crashing(info, config, part_dir):
        calls.append(info.scene_id)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real(info, config, part_dir)

    monkeypatch.setattr(chips_build, "write_part", crashing)


def test_crashed_build_resumes_without_redoing_finished_scenes(tmp_path, monkeypatch):
    scenes = [scene(sid, seed=i) for i, sid in enumerate("abc")]
    reference = build(scenes, tmp_path / "reference.zarr", splits={"train": 0.5, "val": 0.5})
    path = tmp_path / "s.zarr"
    first: list[str] = []
    crash_on_second_scene(monkeypatch, first)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(scenes, path, splits={"train": 0.5, "val": 0.5})
    assert not path.exists()  # atomic: nothing half-built at the final path
    assert not list(tmp_path.glob(".s.zarr.*"))
    parts = [p for p in partial_path(path).iterdir() if (p / "part.json").is_file()]
    assert len(parts) == 1 and parts[0].name.startswith(first[0])

    second: list[str] = []
    monkeypatch.undo()
    original = chips_build.write_part

    def counting(info, config, part_dir):
        second.append(info.scene_id)
        return original(info, config, part_dir)

    monkeypatch.setattr(chips_build, "write_part", counting)
    store = build(scenes, path, splits={"train": 0.5, "val": 0.5})
    assert sorted(second) == sorted(set("abc") - {first[0]})
    assert_same_store(store, reference)
    assert not partial_path(path).exists()


def test_parts_built_with_other_settings_are_redone(tmp_path, monkeypatch):
    scenes = [scene(sid, seed=i) for i, sid in enumerate("ab")]
    first: list[str] = []
    crash_on_second_scene(monkeypatch, first)
    with pytest.raises(RuntimeError):
        build(scenes, tmp_path / "s.zarr")
    monkeypatch.undo()
    calls: list[str] = []
    original = chips_build.write_part
    monkeypatch.setattr(
        chips_build, "write_part", lambda *a: calls.append(a[0].scene_id) or original(*a)
    )
    store = build(scenes, tmp_path / "s.zarr", stride=16)  # another config: nothing reused
    assert sorted(calls) == ["a", "b"] and store.attrs["stride"] == 16


def test_overwrite_is_atomic_and_refused_by_default(tmp_path, monkeypatch):
    path = tmp_path / "s.zarr"
    old = build([scene("a")], path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        build([scene("b")], path)
    calls: list[str] = []
    crash_on_second_scene(monkeypatch, calls)
    with pytest.raises(RuntimeError):
        build([scene("b"), scene("c", seed=1)], path, overwrite=True)
    assert ChipStore(path).attrs == old.attrs  # the old store is untouched by the failed rebuild
    monkeypatch.undo()
    new = build([scene("b"), scene("c", seed=1)], path, overwrite=True)
    assert set(new.table.scene_id) == {"b", "c"}


# --- reading ------------------------------------------------------------------------------


def test_dataloader_workers_return_the_chips_of_direct_access(tmp_path):
    scenes = [scene(sid, seed=i) for i, sid in enumerate("ab")]
    store = build(scenes, tmp_path / "s.zarr", splits={"a": "train", "b": "val"})
    ds = ChipDataset(store.path)
    loader = DataLoader(ds, batch_size=5, num_workers=2, shuffle=False)
    seen = 0
    for batch in loader:
        for k, index in enumerate(batch["index"].tolist()):
            chip = store.chip(index)
            expect = store.stats.normalize(torch.from_numpy(chip.backscatter.values))
            torch.testing.assert_close(batch["image"][k], torch.nan_to_num(expect), rtol=0, atol=0)
            assert batch["chip_id"][k] == chip.attrs["chip_id"]
            np.testing.assert_array_equal(
                batch["incidence"][k].numpy(), chip.incidence_angle.values
            )
            np.testing.assert_array_equal(batch["labels"][k, 0].numpy(), chip.water.values)
            seen += 1
    assert seen == len(store)
    clone = pickle.loads(pickle.dumps(ds))  # after use: no open handle travels
    torch.testing.assert_close(clone[3]["image"], ds[3]["image"])

    vh = ChipDataset(
        store.path, split="val", bands=["VH"], with_labels=False, transform=lambda s: {**s, "x": 1}
    )
    sample = vh[0]
    assert sample["image"].shape == (1, S, S) and sample["x"] == 1 and "labels" not in sample
    raw = store.chip(sample["index"]).backscatter.sel(band="VH").values
    expect = store.stats.subset(["VH"]).normalize(torch.from_numpy(raw[None]))
    torch.testing.assert_close(sample["image"], expect)
    with pytest.raises(ValueError, match="not"):
        ChipDataset(store.path, bands=["HH"])


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_chunk_reader_equals_zarr(tmp_path, compression):
    ds = scene("a", (64, 96))
    ds.backscatter.values[:, :32, :40] = np.nan
    store = build([ds], tmp_path / "s.zarr", compression=compression, min_valid=0.0)
    for name in ("image", "incidence", "labels"):
        fast, reference = ChunkArray(store.path / name), store.array(name)
        assert fast._decoder is not None  # the builder's layout takes the direct path
        for i in range(len(store)):
            np.testing.assert_array_equal(fast[i], reference[i])
    with pytest.raises(IndexError):
        ChunkArray(store.path / "image")[len(store)]
    other = zarr.create_array(
        tmp_path / "other", shape=(4, 2, 8, 8), chunks=(2, 2, 8, 8), dtype="f4"
    )
    other[:] = np.arange(4 * 2 * 8 * 8, dtype="f4").reshape(4, 2, 8, 8)
    fallback = ChunkArray(tmp_path / "other")
    assert fallback._decoder is None
    np.testing.assert_array_equal(fallback[3], other[3])


def test_chip_store_refuses_other_folders(tmp_path):
    with pytest.raises(InputError, match="not a chip store"):
        ChipStore(tmp_path)
    zarr.open_group(tmp_path / "g.zarr", mode="w")
    with pytest.raises(InputError, match="not a sarlab chip store"):
        ChipStore(tmp_path / "g.zarr")


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"units": "linear"}, "units"),
        ({"quantity": "gamma0"}, "quantity"),
        ({"bands": ("VH", "VV")}, "bands"),
    ],
)
def test_mixing_kinds_of_data_is_refused_naming_the_scene(tmp_path, kwargs, what):
    odd = scene("odd_one", seed=1, **kwargs)
    with pytest.raises(UnitsError, match=f"odd_one.*{what}"):
        build([scene("fine"), odd], tmp_path / "s.zarr")
    assert not partial_path(tmp_path / "s.zarr").exists()


def test_scenes_without_georeference_or_with_repeated_ids_are_refused(tmp_path):
    lost = scene("lost", crs=None)
    lost.attrs["source"] = "data/lost.nc"
    with pytest.raises(InputError, match=r"data/lost\.nc: has no geo-reference"):
        build([lost], tmp_path / "a.zarr")
    with pytest.raises(InputError, match="repeats"):
        build([scene("a"), scene("a", seed=1)], tmp_path / "b.zarr")
    with pytest.raises(InputError, match="no incidence angle"):
        build([scene("a"), scene("b", incidence=False)], tmp_path / "c.zarr")
    assert build(
        [scene("a"), scene("b", incidence=False)], tmp_path / "d.zarr", include_incidence=False
    )


def test_reader_registry():
    from sarlab.io.geotiff import open_geotiff

    assert set(READERS) == {"geotiff", "ai4arctic", "sen1floods11", "bigearthnet"}
    assert resolve_reader("geotiff", None) is open_geotiff
    assert resolve_reader("sarlab.io.geotiff:open_geotiff", None) is open_geotiff
    assert resolve_reader(None, "x/scene.TIF") is open_geotiff
    with pytest.raises(InputError, match=r"x/scene\.zip"):
        resolve_reader(None, "x/scene.zip")
    with pytest.raises(ValueError, match="unknown reader"):
        resolve_reader("nope", None)
    with pytest.raises(ValueError, match="cannot be imported"):
        resolve_reader("sarlab.nowhere:f", None)


# --- radar geometry -------------------------------------------------------------------------


def radar_scene(lat0: float, lon0: float) -> xr.Dataset:
    ds = scene("swath", (64, 96), crs=None)
    y, x = np.mgrid[0:64, 0:96].astype(np.float64)
    lat = lat0 + 0.001 * y - 0.0003 * x
    lon = lon0 + 0.004 * x + 0.001 * y
    lon = (lon + 180.0) % 360.0 - 180.0
    return ds.assign_coords(latitude=(("y", "x"), lat), longitude=(("y", "x"), lon))


def test_radar_geometry_footprints_follow_latitude_longitude(tmp_path):
    ds = radar_scene(75.0, -30.0)
    store = build([ds], tmp_path / "s.zarr")
    lat, lon = ds.latitude.values, ds.longitude.values
    assert len(store) == 2 * 3
    for i, rec in store.table.iterrows():
        r, c = int(rec.row), int(rec.col)
        assert rec.source_crs is None and rec.affine is None
        ends = [(r, c), (r, c + S - 1), (r + S - 1, c + S - 1), (r + S - 1, c)]
        assert_vertices(rec.geometry, np.array([(lon[p], lat[p]) for p in ends]))
        assert rec.lon == pytest.approx(lon[r + 15 : r + 17, c + 15 : c + 17].mean(), abs=1e-6)
        assert rec.lat == pytest.approx(lat[r + 15 : r + 17, c + 15 : c + 17].mean(), abs=1e-6)
        assert rec.geometry.is_valid and rec.geometry.exterior.is_ccw
        chip = store.chip(i)
        assert chip.rio.crs is None
        np.testing.assert_array_equal(
            chip.backscatter.values, ds.backscatter.values[:, r : r + S, c : c + S]
        )


def test_footprints_across_the_antimeridian_stay_small(tmp_path):
    store = build([radar_scene(70.0, 179.9)], tmp_path / "s.zarr")
    bounds = store.table.geometry.bounds
    assert (bounds.maxx - bounds.minx).max() < 0.2  # no polygon wraps the globe
    assert (bounds.maxx > 180.0).any()  # the chips crossing it reach past 180 degrees


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_parallel_schedulers_build_the_same_store(tmp_path, scheduler):
    scenes = [scene(sid, seed=i) for i, sid in enumerate("abc")]
    reference = build(scenes, tmp_path / "sync.zarr")
    store = build(scenes, tmp_path / f"{scheduler}.zarr", scheduler=scheduler, num_workers=2)
    assert_same_store(store, reference)
    with pytest.raises(ValueError, match="unknown scheduler"):
        build(scenes, tmp_path / "bad.zarr", scheduler="gpu")
    assert not partial_path(tmp_path / "bad.zarr").exists()


@pytest.mark.slow
def test_a_distributed_client_builds_the_same_store(tmp_path):
    distributed = pytest.importorskip("distributed")
    scenes = [scene(sid, seed=i) for i, sid in enumerate("ab")]
    reference = build(scenes, tmp_path / "sync.zarr")
    with distributed.Client(n_workers=2, threads_per_worker=1, processes=False) as client:
        store = build(scenes, tmp_path / "dist.zarr", scheduler=client)
    assert_same_store(store, reference)
