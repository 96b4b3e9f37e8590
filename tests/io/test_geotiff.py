"""open_geotiff / write_geotiff on generated Sentinel-1-like GeoTIFFs."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import xarray as xr

from sarlab.conventions import check_backscatter
from sarlab.errors import InputError, UnitsError
from sarlab.io.geotiff import open_geotiff, parse_s1_name, write_geotiff


@pytest.fixture(scope="module")
def gt(make_fixture):
    return make_fixture("geotiff")


def _raw(path, band):
    with rasterio.open(path) as src:
        return src.read(band)


def test_multiband_file_says_what_it_holds(gt):
    ds = open_geotiff(gt / "multiband_db.tif")
    image = ds["backscatter"]
    check_backscatter(image)
    assert image.dims == ("band", "y", "x")
    assert list(image["band"].values) == ["VV", "VH"]
    assert image.attrs == {"quantity": "sigma0", "units": "dB", "polarization": "VV,VH"}
    assert image.dtype == np.float32
    assert image.chunks is not None  # lazy, dask-backed
    assert ds.rio.crs.to_epsg() == 32633
    assert tuple(ds.rio.transform())[:6] == (10.0, 0.0, 373200.0, 0.0, -10.0, 5353200.0)
    assert ds.rio.bounds() == (373200.0, 5352560.0, 374160.0, 5353200.0)
    assert ds.attrs["scene_id"] == "multiband_scene"

    values = image.values
    # the file's nodata (-9999) became NaN, exactly on the 4x4 block
    assert np.isnan(values[:, :4, :4]).all()
    assert np.isnan(values).sum() == 2 * 16
    # every other pixel is what rasterio reads
    raw_vv, raw_vh = _raw(gt / "multiband_db.tif", 1), _raw(gt / "multiband_db.tif", 2)
    assert values[0, 10, 20] == raw_vv[10, 20]
    np.testing.assert_array_equal(values[1, 4:, :], raw_vh[4:, :])
    np.testing.assert_allclose(values[0, 4:] - values[1, 4:], 7.0, atol=1e-5)

    angle = ds["incidence_angle"]
    assert angle.dims == ("y", "x") and angle.dtype == np.float32
    assert angle.attrs["units"] == "degrees"
    assert float(angle[0, 0]) == 30.0 and float(angle[-1, -1]) == 45.0


def test_per_polarisation_files_list_and_dict(gt):
    files = [gt / "scene_VV.tif", gt / "scene_VH.tif", gt / "scene_incidence_angle.tif"]
    from_list = open_geotiff(files, quantity="sigma0")
    from_dict = open_geotiff(
        {"VH": files[1], "VV": files[0], "incidence_angle": files[2]}, quantity="sigma0"
    )
    assert list(from_list["band"].values) == ["VV", "VH"]
    assert list(from_dict["band"].values) == ["VH", "VV"]  # the caller's order
    assert from_list["backscatter"].attrs["units"] == "linear"
    xr.testing.assert_equal(from_list["backscatter"].sel(band="VH"), from_dict["backscatter"][0])
    assert from_list.attrs["scene_id"] == "scene"
    # linear file == 10 ** (dB / 10) of the dB file, NaN on the same pixels
    db = open_geotiff(gt / "multiband_db.tif")["backscatter"].values
    lin = from_list["backscatter"].values
    np.testing.assert_array_equal(np.isnan(lin), np.isnan(db))
    np.testing.assert_allclose(10 * np.log10(lin), db, rtol=1e-5)
    assert float(from_list["incidence_angle"][5, 0]) == 30.0


def test_missing_units_and_quantity_ask_the_caller(gt):
    path = gt / "bare.tif"
    with pytest.raises(InputError, match=r"bare\.tif.*names no polarisation"):
        open_geotiff(path)
    with pytest.raises(InputError, match=r"bare\.tif: .*units='dB' or units='linear'"):
        open_geotiff(path, polarizations=["VV", "VH"])
    with pytest.raises(InputError, match=r"bare\.tif: .*quantity="):
        open_geotiff(path, polarizations=["vv", "vh"], units="dB")
    ds = open_geotiff(path, polarizations=["VV", "VH"], units="db", quantity="sigma0")
    assert ds["backscatter"].attrs["units"] == "dB"
    assert float(ds["backscatter"][0, 0, 0]) == -9999.0  # no nodata tag: kept as is
    masked = open_geotiff(
        path, polarizations=["VV", "VH"], units="dB", quantity="sigma0", nodata=-9999
    )
    assert np.isnan(masked["backscatter"].values).sum() == 32


def test_unknown_polarisations_are_refused(gt):
    with pytest.raises(InputError, match=r"unknown_pol\.tif: unknown polarisation 'XX'"):
        open_geotiff(gt / "unknown_pol.tif")
    with pytest.raises(InputError, match="unknown polarisation 'XY'"):
        open_geotiff(gt / "bare.tif", polarizations=["VV", "XY"], units="dB", quantity="sigma0")
    with pytest.raises(InputError, match="unknown polarisation 'RH'"):
        open_geotiff({"VV": gt / "scene_VV.tif", "RH": gt / "scene_VH.tif"}, quantity="sigma0")


def test_caller_and_file_must_agree(gt):
    path = gt / "multiband_db.tif"
    with pytest.raises(
        InputError, match=r"multiband_db\.tif: units='linear' was given but the file says 'dB'"
    ):
        open_geotiff(path, units="linear")
    with pytest.raises(InputError, match=r"multiband_db\.tif: band 1 is VV in the file but VH"):
        open_geotiff(path, polarizations=["VH", "VV"])
    with pytest.raises(InputError, match="has 2 backscatter band"):
        open_geotiff(path, polarizations=["VV"])
    with pytest.raises(InputError, match=r"conflicting_units\.tif: .*conflicting units"):
        open_geotiff(gt / "conflicting_units.tif")
    with pytest.raises(InputError, match=r"scene_VH\.tif: holds VH .* but VV was given"):
        open_geotiff({"VV": gt / "scene_VH.tif"}, quantity="sigma0")


def test_broken_files_name_the_file(gt):
    with pytest.raises(InputError, match=r"truncated\.tif: truncated"):
        open_geotiff(gt / "truncated.tif")
    with pytest.raises(InputError, match=r"not_a_tiff\.tif: not a TIFF file"):
        open_geotiff(gt / "not_a_tiff.tif")
    with pytest.raises(InputError, match=r"absent\.tif: no such file"):
        open_geotiff(gt / "absent.tif")
    with pytest.raises(InputError, match=r"shifted_VH\.tif: transform .* must share one grid"):
        open_geotiff([gt / "scene_VV.tif", gt / "shifted_VH.tif"])


@pytest.mark.parametrize("cog", [True, False])
def test_write_read_round_trip(gt, tmp_path, cog):
    ds = open_geotiff(gt / "multiband_db.tif")
    ds.attrs.update(platform="Sentinel-1A", mode="IW", product="GRD")
    out = write_geotiff(ds, tmp_path / "round.tif", cog=cog)
    back = open_geotiff(out)  # no help from the caller: the file says it all
    xr.testing.assert_identical(back["backscatter"], ds["backscatter"])
    xr.testing.assert_identical(back["incidence_angle"], ds["incidence_angle"])
    assert back.rio.crs == ds.rio.crs
    assert back.rio.transform() == ds.rio.transform()
    assert {k: back.attrs[k] for k in ("platform", "mode", "product", "scene_id")} == {
        "platform": "Sentinel-1A",
        "mode": "IW",
        "product": "GRD",
        "scene_id": "multiband_scene",
    }
    with rasterio.open(out) as src:
        assert src.descriptions == ("VV", "VH", "incidence_angle")
        assert np.isnan(src.nodata)
        assert src.tags()["UNITS"] == "dB" and src.tags()["QUANTITY"] == "sigma0"
        assert (src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG") is cog
    assert [p.name for p in tmp_path.iterdir()] == ["round.tif"]


def test_failed_write_leaves_nothing(gt, tmp_path):
    ds = open_geotiff(gt / "multiband_db.tif")

    def fail(block):
        raise RuntimeError("disk full")

    angle = ds["incidence_angle"]
    bad = ds.assign(incidence_angle=angle.copy(data=angle.data.map_blocks(fail, dtype="f4")))
    with pytest.raises(RuntimeError, match="disk full"):  # fails after the file was opened
        write_geotiff(bad, tmp_path / "bad.tif")
    assert list(tmp_path.iterdir()) == []
    unlabelled = ds.copy()
    unlabelled["backscatter"].attrs = {}
    with pytest.raises(UnitsError):
        write_geotiff(unlabelled, tmp_path / "bad.tif")


def test_real_safe_measurement_file(shared_data):
    """A real Sentinel-1 GRD measurement TIFF (dummy pixels, real size and layout)."""
    safe = "S1B_IW_GRDH_1SDV_20210401T052623_20210401T052648_026269_032297_ECC8.SAFE"
    path = next((shared_data / "s1_safe" / safe / "measurement").glob("*-vv-*.tiff"))
    ds = open_geotiff([path], units="linear", quantity="amplitude")  # VV from the file name
    image = ds["backscatter"]
    assert list(image["band"].values) == ["VV"] and image.shape == (1, 16685, 25788)
    assert image.chunks is not None  # nothing read yet: 860 MB of float32 stays on disk
    with rasterio.open(path) as src:
        corner = src.read(1, window=((16680, 16685), (25780, 25788)))
    np.testing.assert_array_equal(image[0, 16680:, 25780:].values, corner)
    assert (ds.attrs["platform"], ds.attrs["mode"], ds.attrs["product"]) == (
        "Sentinel-1B",
        "IW",
        "GRD",
    )


def test_parse_s1_name():
    slc = parse_s1_name("S1B_IW_SLC__1SDV_20210401T052622_20210401T052650_026269_032297_EFA4.SAFE")
    assert slc == {
        "platform": "Sentinel-1B",
        "mode": "IW",
        "product": "SLC",
        "start_time": "2021-04-01T05:26:22",
        "polarizations": "VV,VH",
    }
    sm = parse_s1_name("S1A_S3_GRDH_1SSH_20200101T000000_x")
    assert (sm["mode"], sm["product"], sm["polarizations"]) == ("SM", "GRD", "HH")
    assert parse_s1_name("Bolivia_103757_S1Hand") == {}
