"""open_ai4arctic / write_ai4arctic on generated scenes in the dataset's real layouts."""

from __future__ import annotations

import re
import shutil

import dask.array
import h5py
import numpy as np
import pytest
import xarray as xr
from fixture_paths import load_maker

from sarlab.conventions import IGNORE_INDEX, check_backscatter
from sarlab.errors import InputError, UnitsError
from sarlab.io.ai4arctic import (
    AUTOICE_WEIGHTS,
    CHART_CLASSES,
    FLOE_CLASSES,
    SIC_CLASSES,
    SOD_CLASSES,
    open_ai4arctic,
    write_ai4arctic,
)

make = load_maker("ai4arctic")


@pytest.fixture(scope="module")
def root(make_fixture):
    return make_fixture("ai4arctic")


@pytest.fixture(scope="module")
def train(root):
    return open_ai4arctic(root / make.TRAIN, chunks=None)


@pytest.fixture(scope="module")
def truth():
    """The physical fields the train scene (and the raw scenes) were made from."""
    return make.scene(make.SEED)


def _nodata(truth):
    return np.isnan(truth["nersc_sar_primary"])


def test_train_scene_in_the_sarlab_convention(train, truth, root):
    image = train["backscatter"]
    check_backscatter(image)
    assert image.dims == ("band", "y", "x") and image.shape == (2, make.NY, make.NX)
    assert image.dtype == np.float32 and list(image["band"].values) == ["HH", "HV"]
    assert (image.attrs["quantity"], image.attrs["units"]) == ("sigma0", "dB")
    # the standard scaling is undone: dB again, NaN exactly where the file holds the fill value
    nodata = _nodata(truth)
    assert int(nodata.sum()) == make.NY * 4 + 41 * 36
    for band, name in ((0, "nersc_sar_primary"), (1, "nersc_sar_secondary")):
        np.testing.assert_array_equal(np.isnan(image.values[band]), nodata)
        np.testing.assert_allclose(image.values[band], truth[name], atol=2e-5)
    ice = truth["SIC"] == 10
    assert -14.0 < float(image.sel(band="HH").where(ice).mean()) < -12.0
    angle = train["incidence_angle"]
    assert angle.dims == ("y", "x") and angle.dtype == np.float32
    assert angle.attrs["units"] == "degrees"
    np.testing.assert_allclose(angle.values, truth["sar_incidenceangle"], atol=2e-5)
    assert float(angle[50, 4]) == pytest.approx(19.0 + 28.0 * 4 / 240 + 0.1, abs=1e-4)
    np.testing.assert_allclose(train["distance_map"].values, truth["distance_map"], atol=1e-5)
    assert train["distance_map"].attrs["long_name"].startswith("Distance to land")
    assert train.attrs == {
        **train.attrs,
        "platform": "Sentinel-1A",
        "mode": "EW",
        "product": "GRD",
        "scene_id": "20190317T101538_dmi_prep",
        "ice_service": "dmi",
        "pixel_spacing": 80.0,
        "layout": "ready-to-train",
        "source": str(root / make.TRAIN),
    }


def test_tie_point_grid_is_exact_at_the_points_and_linear_between(train):
    lat, lon = train["latitude"].values, train["longitude"].values
    grid_lat, grid_lon = make.geolocation(
        *np.meshgrid(make.GRID_LINES, make.GRID_SAMPLES, indexing="ij")
    )
    # axis 0 of the file's grid runs along the lines, whatever its dimension names say
    rows, cols = np.ix_(make.GRID_LINES, make.GRID_SAMPLES)
    np.testing.assert_array_equal(lat[rows, cols], grid_lat)
    np.testing.assert_array_equal(lon[rows, cols], grid_lon)
    # halfway between neighbours: the mean of two (along a line or a sample) or of four points
    assert lat[10, 40] == pytest.approx((grid_lat[0, 2] + grid_lat[1, 2]) / 2, abs=1e-12)
    assert lon[40, 30] == pytest.approx((grid_lon[2, 1] + grid_lon[2, 2]) / 2, abs=1e-12)
    corners = grid_lat[3, 4] + grid_lat[3, 5] + grid_lat[4, 4] + grid_lat[4, 5]
    assert lat[70, 90] == pytest.approx(corners / 4, abs=1e-12)
    # a quarter of the way: weights 3/4 and 1/4
    assert lon[5, 0] == pytest.approx(0.75 * grid_lon[0, 0] + 0.25 * grid_lon[1, 0], abs=1e-12)
    assert lat.dtype == np.float64 and train["latitude"].attrs["units"] == "degrees_north"
    assert (
        lat[0, 0] > lat[-1, 0] and lon[0, -1] > lon[0, 0]
    )  # north at line 0, east at the far edge


def test_charts_keep_classes_and_use_the_ignore_index(train, truth):
    nodata = _nodata(truth)
    for chart, classes in CHART_CLASSES.items():
        label = train[chart]
        assert label.dtype == np.uint8 and label.dims == ("y", "x")
        np.testing.assert_array_equal(label.values, truth[chart])
        assert (label.values[nodata] == IGNORE_INDEX).all()
        assert label.attrs["flag_values"] == list(classes.values())
        assert label.attrs["flag_meanings"].split() == list(classes)
        assert label.attrs["ignore_index"] == IGNORE_INDEX
    assert (train["SOD"].values[20:40, 200:240] == IGNORE_INDEX).all()
    assert (train["SIC"].values[20:40, 200:240] == 10).all()
    assert train["SIC"].attrs["percent_per_class"] == 10
    assert "10*k percent" in train["SIC"].attrs["comment"]


def test_class_constants_match_autoice():
    assert list(SIC_CLASSES.values()) == list(range(11))
    assert SIC_CLASSES["100_percent"] == 10
    assert list(SOD_CLASSES) == [
        "open_water",
        "new_ice",
        "young_ice",
        "thin_first_year_ice",
        "thick_first_year_ice",
        "old_ice",
    ]
    assert FLOE_CLASSES["bergs"] == 6 and FLOE_CLASSES["cake_ice"] == 1
    assert AUTOICE_WEIGHTS == {"SIC": 2, "SOD": 2, "FLOE": 1}


def test_amsr2_stays_on_its_own_grid(train, root):
    names = [n for n in train.data_vars if n.startswith("btemp_")]
    assert len(names) == 14 and "t2m" not in train
    btemp = train["btemp_18_7v"]
    assert btemp.dims == ("amsr2_y", "amsr2_x") and btemp.shape == make.AMSR
    stored = xr.open_dataset(root / make.TRAIN)["btemp_18_7v"].values
    np.testing.assert_array_equal(btemp.values, stored)
    assert btemp.attrs["units"] == "1" and "standard scaling" in btemp.attrs["scaling"]
    # cell i covers SAR lines (i .. i+1) * 201/9: its centre in SAR pixels
    assert train["amsr2_y"].values[0] == pytest.approx(0.5 * 201 / 9 - 0.5)
    assert train["amsr2_x"].values[-1] == pytest.approx(9.5 * 241 / 10 - 0.5)
    without = open_ai4arctic(root / make.TRAIN, chunks=None, include_amsr2=False)
    assert not any(n.startswith("btemp_") for n in without.data_vars)


@pytest.mark.filterwarnings("ignore:The specified chunks separate")
def test_lazy_reading_matches_eager(root, train):
    ds = open_ai4arctic(root / make.TRAIN, chunks={"y": 64, "x": 100})
    for name in ("backscatter", "incidence_angle", "SIC", "latitude", "longitude"):
        assert isinstance(ds[name].data, dask.array.Array), name
        assert ds[name].chunks[-2:] == ((64, 64, 64, 9), (100, 100, 41)), name
        np.testing.assert_array_equal(ds[name].values, train[name].values)
    auto = open_ai4arctic(root / make.TRAIN)  # default chunks="auto": lazy too
    assert isinstance(auto["latitude"].data, dask.array.Array)


def test_unlabelled_test_scene_and_its_reference_file(root, tmp_path):
    alone = shutil.copy(root / make.TEST, tmp_path / "20210506T074016_cis_prep.nc")
    ds = open_ai4arctic(alone)
    assert not any(chart in ds for chart in CHART_CLASSES)
    assert ds.attrs["platform"] == "Sentinel-1B" and ds.attrs["ice_service"] == "cis"
    assert ds["backscatter"].shape == (2, make.NY, make.NX)
    # beside its <scene>_reference.nc (the published test set), the charts come from there
    labelled = open_ai4arctic(root / make.TEST, chunks=None)
    reference = root / make.REFERENCE
    np.testing.assert_array_equal(labelled["SIC"].values, make.scene(make.SEED + 1)["SIC"])
    assert labelled["FLOE"].attrs["source"] == str(reference)
    explicit = open_ai4arctic(alone, labels=reference, chunks=None)
    np.testing.assert_array_equal(explicit["SOD"].values, labelled["SOD"].values)


def test_raw_scene_interpolates_its_tie_points(root, truth):
    ds = open_ai4arctic(root / make.RAW, chunks=None)
    assert ds.attrs["layout"] == "raw" and ds.attrs["pixel_spacing"] == 40.0
    assert ds.attrs["platform"] == "Sentinel-1A" and ds.attrs["ice_service"] == "dmi"
    np.testing.assert_array_equal(ds["backscatter"].values[1], truth["nersc_sar_secondary"])
    assert not any(chart in ds for chart in CHART_CLASSES)  # polygons are not converted
    assert ds["btemp_6_9h"].attrs["units"] == "K"
    src = xr.open_dataset(root / make.RAW)
    lines, samples = (
        src["sar_grid_line"].values.astype(int),
        src["sar_grid_sample"].values.astype(int),
    )
    angle = ds["incidence_angle"].values
    np.testing.assert_array_equal(
        angle[lines, samples], src["sar_grid_incidenceangle"].values.astype(np.float32)
    )
    np.testing.assert_array_equal(
        ds["latitude"].values[lines, samples], src["sar_grid_latitude"].values
    )
    # the incidence angle is linear in (line, sample), so bilinear interpolation reproduces it
    yy, xx = np.mgrid[0 : make.NY, 0 : make.NX]
    np.testing.assert_allclose(angle, 19.0 + 28.0 * xx / 240 + 0.002 * yy, atol=1e-4)


@pytest.mark.filterwarnings("ignore:The specified chunks separate")
def test_scattered_tie_points_use_linear_triangles(root):
    ds = open_ai4arctic(root / make.IRREGULAR, chunks={"y": 50})
    src = xr.open_dataset(root / make.IRREGULAR)
    lines, samples = src["sar_grid_line"].values, src["sar_grid_sample"].values
    assert len(np.unique(lines)) > make.GRID_LINES.size  # not a grid any more
    at = (lines.astype(int), samples.astype(int))
    np.testing.assert_allclose(
        ds["latitude"].values[at], src["sar_grid_latitude"].values, rtol=0, atol=1e-9
    )
    angle = ds["incidence_angle"].values
    yy, xx = np.mgrid[0 : make.NY, 0 : make.NX]
    np.testing.assert_allclose(angle, 19.0 + 28.0 * xx / 240 + 0.002 * yy, atol=1e-4)


def test_antimeridian_longitudes_stay_continuous(root, tmp_path):
    path = tmp_path / (make.RAW_ID + "_icechart_dmi_dateline.nc")
    make.write_raw(path, make.scene(make.SEED), lon_offset=-160.0)  # -181 .. -177.5 -> wraps
    lon = open_ai4arctic(path, chunks=None)["longitude"].values
    assert lon.min() >= -180.0 and lon.max() < 180.0 and lon.max() > 170.0
    steps = np.abs((np.diff(lon, axis=1) + 180.0) % 360.0 - 180.0)
    assert steps.max() < 0.02  # neighbours stay neighbours across the dateline
    back = open_ai4arctic(
        write_ai4arctic(open_ai4arctic(path), tmp_path / "d_prep.nc"), chunks=None
    )
    np.testing.assert_allclose(
        (back["longitude"].values - lon + 180.0) % 360.0 - 180.0, 0.0, atol=1e-3
    )


def test_write_then_read_round_trips(train, root, tmp_path):
    path = write_ai4arctic(train, tmp_path / "out" / "20190317T101538_dmi_prep.nc")
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left
    back = open_ai4arctic(path, chunks=None)
    for name in ("backscatter", "incidence_angle", "distance_map"):
        np.testing.assert_array_equal(np.isnan(back[name].values), np.isnan(train[name].values))
        np.testing.assert_allclose(back[name].values, train[name].values, atol=2e-5)
    for chart in CHART_CLASSES:
        np.testing.assert_array_equal(back[chart].values, train[chart].values)
    # 21x21 tie points at lines 0, 10, .. and samples 0, 12, ..: exact there, ~20 m between
    rows, cols = np.ix_(np.arange(0, 201, 10), np.arange(0, 241, 12))
    for name in ("latitude", "longitude"):
        np.testing.assert_array_equal(back[name].values[rows, cols], train[name].values[rows, cols])
        np.testing.assert_allclose(back[name].values, train[name].values, atol=3e-4)
    assert {k: back.attrs[k] for k in ("scene_id", "ice_service", "platform", "pixel_spacing")} == {
        "scene_id": "20190317T101538_dmi_prep",
        "ice_service": "dmi",
        "platform": "Sentinel-1A",
        "pixel_spacing": 80.0,
    }
    # the file itself is in the published layout: names, dims, scaling, fill values, gzip
    raw = xr.open_dataset(path, mask_and_scale=False)
    hh = raw["nersc_sar_primary"]
    assert hh.dims == ("sar_lines", "sar_samples") and hh.attrs["variable_fill_value"] == 0.0
    mean, std = make.SCALER["nersc_sar_primary"]
    expected = (train["backscatter"].values[0] - mean) / std
    np.testing.assert_allclose(hh.values, np.where(np.isnan(expected), 0.0, expected), atol=1e-6)
    assert raw["sar_grid2d_latitude"].dims == ("sar_sample_2dgrid_points", "sar_line_2dgrid_points")
    assert raw["sar_grid2d_latitude"].shape == (21, 21)
    assert raw["SIC"].dtype == np.uint8 and raw["SIC"].attrs["chart_fill_value"] == 255
    with h5py.File(path) as f:
        assert f["nersc_sar_primary"].compression == "gzip" and f["SOD"].compression == "gzip"


def _simulated(ny=40, nx=50) -> xr.Dataset:
    """What the simulator hands to the writer: numpy arrays in the reader's convention."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:ny, 0:nx]
    image = rng.normal(-18.0, 3.0, (2, ny, nx)).astype(np.float32)
    image[:, :3, :3] = np.nan
    sic = np.where(xx > 20, 8, 0).astype(np.uint8)
    sic[:3, :3] = IGNORE_INDEX
    ds = xr.Dataset(
        {
            "backscatter": (
                ("band", "y", "x"),
                image,
                {"quantity": "sigma0", "units": "dB", "polarization": "HH,HV"},
            ),
            "incidence_angle": (("y", "x"), (20.0 + 0.5 * xx).astype(np.float32)),
            "SIC": (("y", "x"), sic),
        },
        coords={
            "band": ["HH", "HV"],
            "latitude": (("y", "x"), 75.0 - 0.01 * yy),
            "longitude": (("y", "x"), -60.0 + 0.02 * xx),
        },
        attrs={"scene_id": "sim_0001", "pixel_spacing": 80.0},
    )
    return ds


def test_writer_takes_a_simulated_scene(tmp_path):
    ds = _simulated()
    back = open_ai4arctic(
        write_ai4arctic(ds, tmp_path / "sim_0001_prep.nc", grid_points=6), chunks=None
    )
    np.testing.assert_allclose(back["backscatter"].values, ds["backscatter"].values, atol=2e-5)
    assert np.isnan(back["backscatter"].values[:, :3, :3]).all()
    np.testing.assert_array_equal(back["SIC"].values, ds["SIC"].values)
    assert "SOD" not in back and "distance_map" not in back
    np.testing.assert_allclose(back["latitude"].values, ds["latitude"].values, atol=1e-9)
    np.testing.assert_allclose(back["longitude"].values, ds["longitude"].values, atol=1e-9)
    assert back.attrs["scene_id"] == "sim_0001" and back.attrs["platform"] == "Sentinel-1"


def _vv_vh(ds):
    image = ds["backscatter"].assign_attrs(polarization="VV,VH")
    return ds.assign_coords(band=["VV", "VH"]).assign(
        backscatter=image.assign_coords(band=["VV", "VH"])
    )


def _linear(ds):
    return ds.assign(backscatter=ds["backscatter"].assign_attrs(units="linear"))


def _sic_11(ds):
    return ds.assign(SIC=ds["SIC"].where(ds["SIC"] != 8, 11).astype(np.uint8))


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        (_vv_vh, UnitsError, "HH,HV"),
        (_linear, UnitsError, "convert explicitly"),
        (lambda ds: ds.drop_vars("incidence_angle"), ValueError, "incidence_angle"),
        (_sic_11, ValueError, "[11]"),
    ],
)
def test_writer_refuses_what_the_format_cannot_hold(tmp_path, change, error, words):
    with pytest.raises(error, match=re.escape(words)):
        write_ai4arctic(change(_simulated()), tmp_path / "bad_prep.nc")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_writer_leaves_nothing_when_computing_fails(tmp_path):
    def explode(block, block_info=None):
        if block_info[0]["chunk-location"][0] == 1:  # fail part-way through the scene
            raise RuntimeError("simulated failure in the middle of the write")
        return block

    ds = _simulated().chunk({"y": 20})
    angle = ds["incidence_angle"].data.map_blocks(explode, dtype=np.float32)
    ds["incidence_angle"] = ds["incidence_angle"].copy(data=angle)
    with pytest.raises(RuntimeError, match="simulated failure"):
        write_ai4arctic(ds, tmp_path / "sim_prep.nc")
    assert not list(tmp_path.iterdir())


def test_netcdf3_copies_open_too(root, tmp_path):
    classic = tmp_path / "20190317T101538_dmi_prep.nc"
    xr.open_dataset(root / make.TRAIN).drop_vars(list(CHART_CLASSES)).to_netcdf(
        classic, engine="scipy"
    )
    ds = open_ai4arctic(classic, chunks=None)
    np.testing.assert_allclose(
        ds["backscatter"].values[0], make.scene(make.SEED)["nersc_sar_primary"], atol=2e-5
    )


def test_unreadable_files_name_the_file(root, tmp_path):
    broken = root / "broken"
    for name in ("notes_prep.nc", "20190317T101538_dmi_truncated_prep.nc"):
        with pytest.raises(InputError, match="not a readable NetCDF") as info:
            open_ai4arctic(broken / name)
        assert info.value.path == str(broken / name)
    with pytest.raises(InputError, match="does not exist"):
        open_ai4arctic(tmp_path / "absent_prep.nc")


def test_missing_variable_is_named(root):
    path = root / "broken" / "20190317T101538_dmi_nogrid_prep.nc"
    with pytest.raises(InputError) as info:
        open_ai4arctic(path)
    assert info.value.path == str(path)
    assert "ready-to-train" in str(info.value) and "sar_grid2d_latitude" in str(info.value)
    assert "sar_grid2d_longitude" not in str(info.value)


def test_label_shape_mismatch_names_both_files(root):
    small = root / "broken" / "20210506T074016_cis_small_reference.nc"
    with pytest.raises(InputError) as info:
        open_ai4arctic(root / make.TEST, labels=small)
    message = str(info.value)
    assert info.value.path == str(small) and make.TEST.split("/")[1] in message
    assert "(100, 120)" in message and "(201, 241)" in message
