"""open_sen1floods11 / write_sen1floods11 on a generated chip in the bucket layout."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import rasterio
import xarray as xr

from sarlab.conventions import IGNORE_INDEX, check_backscatter
from sarlab.errors import InputError, UnitsError
from sarlab.io.sen1floods11 import open_sen1floods11, write_sen1floods11

HAND = "v1.1/data/flood_events/HandLabeled"


@pytest.fixture(scope="module")
def chip(make_fixture):
    root = make_fixture("sen1floods11")
    return root / HAND / "S1Hand" / "Bolivia_103757_S1Hand.tif"


def _raw(path, band=1):
    with rasterio.open(path) as src:
        return src.read(band)


def test_chip_and_label_in_the_sarlab_convention(chip):
    ds = open_sen1floods11(chip)  # the label is found in ../LabelHand
    image = ds["backscatter"]
    check_backscatter(image)
    assert list(image["band"].values) == ["VV", "VH"]
    assert (image.attrs["quantity"], image.attrs["units"]) == ("sigma0", "dB")
    assert image.shape == (2, 512, 512) and image.dtype == np.float32
    assert ds.rio.crs.to_epsg() == 4326
    assert ds.rio.transform().c == -65.9 and ds.rio.transform().f == -14.3
    assert {k: ds.attrs[k] for k in ("mode", "product", "scene_id", "event")} == {
        "mode": "IW",
        "product": "GRD",
        "scene_id": "Bolivia_103757",
        "event": "Bolivia",
    }
    values = image.values
    assert np.isnan(values[:, :, :16]).all() and not np.isnan(values[:, :, 16:]).any()
    assert values[1, 100, 200] == _raw(chip, 2)[100, 200]

    label_path = chip.parents[1] / "LabelHand" / "Bolivia_103757_LabelHand.tif"
    assert ds.attrs["label_source"] == str(label_path)
    raw = _raw(label_path)
    water = ds["water"]
    assert water.dtype == np.uint8 and water.dims == ("y", "x")
    np.testing.assert_array_equal(water.values == IGNORE_INDEX, raw == -1)
    np.testing.assert_array_equal(water.values[raw != -1], raw[raw != -1])
    assert int((water == IGNORE_INDEX).sum()) == 512 * 16 + 20 * 20
    assert water.attrs["flag_values"] == [0, 1]
    assert water.attrs["flag_meanings"] == "not_water water"
    # water is dark: the labels and the pixels belong together
    assert float(image.sel(band="VH").where(water == 1).mean()) < -25.0


def test_label_shape_mismatch_names_both_files(chip):
    bad = chip.parents[5] / "mismatched_LabelHand.tif"
    with pytest.raises(InputError) as info:
        open_sen1floods11(chip, bad)
    message = str(info.value)
    assert "mismatched_LabelHand.tif" in message and "Bolivia_103757_S1Hand.tif" in message
    assert "(256, 256)" in message and "(512, 512)" in message


def test_chip_without_label_and_wrong_products(chip, tmp_path):
    alone = shutil.copy(chip, tmp_path / "Ghana_5079_S1Hand.tif")
    ds = open_sen1floods11(alone)
    assert "water" not in ds and ds.attrs["scene_id"] == "Ghana_5079"
    # an S2Hand chip (13 bands) given by mistake
    with rasterio.open(chip) as src:
        profile = {**src.profile, "dtype": "uint16", "count": 13, "height": 8, "width": 8}
    with rasterio.open(tmp_path / "Ghana_5079_S2Hand.tif", "w", **profile) as dst:
        dst.write(np.ones((13, 8, 8), dtype=np.uint16))
    with pytest.raises(InputError, match=r"S2Hand\.tif: has 13 backscatter band"):
        open_sen1floods11(tmp_path / "Ghana_5079_S2Hand.tif")


def test_label_values_outside_the_scheme(chip, tmp_path):
    label = _raw(chip.parents[1] / "LabelHand" / "Bolivia_103757_LabelHand.tif")
    label[0, 0] = 2
    with rasterio.open(chip) as src:
        profile = {**src.profile, "count": 1, "dtype": "int16", "nodata": None}
    with rasterio.open(tmp_path / "odd_LabelHand.tif", "w", **profile) as dst:
        dst.write(label, 1)
    with pytest.raises(InputError, match=r"odd_LabelHand\.tif: unexpected label values \[2\]"):
        open_sen1floods11(chip, tmp_path / "odd_LabelHand.tif")


def test_write_read_round_trip(chip, tmp_path):
    ds = open_sen1floods11(chip)
    s1_path, label_path = write_sen1floods11(ds, tmp_path / "S1Hand" / "USA_1010394_S1Hand.tif")
    assert label_path == tmp_path / "LabelHand" / "USA_1010394_LabelHand.tif"
    back = open_sen1floods11(s1_path)
    xr.testing.assert_identical(back["backscatter"], ds["backscatter"])
    np.testing.assert_array_equal(back["water"].values, ds["water"].values)
    assert back.rio.transform() == ds.rio.transform() and back.rio.crs == ds.rio.crs
    assert back.attrs["scene_id"] == "USA_1010394"
    with rasterio.open(label_path) as src:
        assert src.dtypes == ("int16",)
        np.testing.assert_array_equal(src.read(1), _raw(ds.attrs["label_source"]))


def test_writer_refuses_what_the_dataset_does_not_hold(chip, tmp_path):
    ds = open_sen1floods11(chip)
    linear = ds.copy()
    linear["backscatter"] = 10 ** (ds["backscatter"] / 10)
    linear["backscatter"].attrs = {**ds["backscatter"].attrs, "units": "linear"}
    with pytest.raises(UnitsError, match="convert explicitly"):
        write_sen1floods11(linear, tmp_path / "x_1_S1Hand.tif")
    swapped = ds.isel(band=[1, 0])
    swapped["backscatter"].attrs["polarization"] = "VH,VV"
    with pytest.raises(UnitsError, match="bands"):
        write_sen1floods11(swapped, tmp_path / "x_1_S1Hand.tif")
    assert list(tmp_path.iterdir()) == []
