"""flood_chip / flood_pair: speckle statistics, class radiometry, labels, files, determinism."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage
from skimage.filters import threshold_otsu

from sarlab.conventions import IGNORE_INDEX, check_backscatter
from sarlab.io.sen1floods11 import open_sen1floods11, write_sen1floods11
from sarlab.preprocess.radiometry import to_db, to_linear
from sarlab.preprocess.speckle import boxcar, estimate_enl
from sarlab.simulate.flood import LAND_COVER, REGIONS, flood_chip, flood_pair
from sarlab.simulate.flood_radiometry import NOISE_RESIDUAL_DB, REFERENCE_INCIDENCE_DEG

CODE = {name: lc.code for name, lc in LAND_COVER.items()}
WATER = ("permanent_water", "flooded_water")
LAND = ("flooded_vegetation", "crops_grassland", "forest", "urban", "bare_soil")
INUNDATED = (CODE["flooded_water"], CODE["flooded_vegetation"])


@pytest.fixture(scope="module")
def chip() -> xr.Dataset:
    return flood_chip(4)


@pytest.fixture(scope="module")
def flat() -> xr.Dataset:
    """Constant 37 deg incidence and the reflectivity kept: for checks against the table."""
    return flood_chip(0, incidence_deg=37.0, keep_reflectivity=True)


def _linear(ds: xr.Dataset) -> np.ndarray:
    return 10.0 ** (ds["backscatter"].values.astype(np.float64) / 10.0)


def _class_mean_db(ds: xr.Dataset, name: str) -> np.ndarray:
    """(VV, VH) mean sigma0 of a class, averaged in linear power (speckle has mean 1)."""
    mask = ds["land_cover"].values == CODE[name]
    assert mask.sum() > 1000, f"too few {name} pixels to test"
    return 10.0 * np.log10(_linear(ds)[:, mask].mean(axis=1))


def _expected_db(name: str, incidence: float, nesz_db: float) -> np.ndarray:
    """The table's sigma0 at ``incidence`` plus the residual noise floor, in dB."""
    lc = LAND_COVER[name]
    delta = incidence - REFERENCE_INCIDENCE_DEG
    sigma = np.array([lc.vv_db + lc.vv_slope * delta, lc.vh_db + lc.vh_slope * delta])
    floor = 10.0 ** ((nesz_db + NOISE_RESIDUAL_DB) / 10.0)
    return 10.0 * np.log10(10.0 ** (sigma / 10.0) + floor)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_speckle_has_the_configured_enl():
    for enl in (4.4, 1.0):
        ds = flood_chip(0, incidence_deg=37.0, texture=False, enl=enl)
        water = ds["land_cover"].values == CODE["flooded_water"]
        assert water.sum() > 20_000
        for band in range(2):
            measured = estimate_enl(_linear(ds)[band], water)
            assert measured == pytest.approx(enl, rel=0.05), (enl, band)


def test_texture_lowers_the_enl_as_the_product_model_predicts(flat):
    # I = R * T * v with unit-mean Gamma texture T (order nu) and speckle v (ENL L):
    # var/mean^2 = (1 + 1/L)(1 + 1/nu) - 1
    forest = flat["land_cover"].values == CODE["forest"]
    nu, looks = LAND_COVER["forest"].texture_order, 4.4
    expected = 1.0 / ((1 + 1 / looks) * (1 + 1 / nu) - 1)
    measured = estimate_enl(_linear(flat)[0], forest)
    assert measured == pytest.approx(expected, rel=0.1)
    assert measured < 0.7 * looks


def test_class_means_match_the_table(flat):
    nesz = flat.attrs["nesz_db"]
    for name in ("permanent_water", "flooded_water", "flooded_vegetation", "forest", "urban"):
        got = _class_mean_db(flat, name)
        np.testing.assert_allclose(got, _expected_db(name, 37.0, nesz), atol=0.3, err_msg=name)
    # crops and bare soil vary field to field (crop stage, moisture): pool three chips
    chips = [flat] + [flood_chip(seed, incidence_deg=37.0) for seed in (1, 2)]
    for name in ("crops_grassland", "bare_soil"):
        errors = [
            _class_mean_db(ds, name) - _expected_db(name, 37.0, ds.attrs["nesz_db"]) for ds in chips
        ]
        pooled = 10 * np.log10(np.mean(10 ** (np.array(errors) / 10), axis=0))
        np.testing.assert_allclose(pooled, 0.0, atol=0.3, err_msg=name)


def test_reflectivity_is_the_speckle_free_mean(flat):
    refl = flat["reflectivity"]
    check_backscatter(refl)
    assert refl.attrs["units"] == "linear"
    floor = 10.0 ** ((flat.attrs["nesz_db"] + NOISE_RESIDUAL_DB) / 10.0)
    ratio = _linear(flat) / (refl.values + floor)  # the speckle alone
    assert np.nanmean(ratio) == pytest.approx(1.0, abs=0.01)
    assert 1.0 / np.nanvar(ratio) == pytest.approx(4.4, rel=0.05)


def test_backscatter_falls_with_incidence_at_each_class_slope():
    near, far = flood_chip(5, incidence_deg=32.0), flood_chip(5, incidence_deg=44.0)
    nesz = near.attrs["nesz_db"]
    for name in ("flooded_water", "forest"):
        change = _class_mean_db(far, name) - _class_mean_db(near, name)
        expected = _expected_db(name, 44.0, nesz) - _expected_db(name, 32.0, nesz)
        np.testing.assert_allclose(change, expected, atol=0.2, err_msg=name)


def test_water_is_darkest_and_double_bounce_is_bright(chip):
    means = {name: _class_mean_db(chip, name) for name in WATER + LAND}
    for band in range(2):
        assert max(means[w][band] for w in WATER) < min(means[n][band] for n in LAND) - 5.0
    crops_vv = means["crops_grassland"][0]
    assert means["urban"][0] > crops_vv + 3.0
    assert means["flooded_vegetation"][0] > crops_vv + 3.0
    # double bounce is a co-pol effect: the cross-pol gain of flooded vegetation is smaller
    gain = means["flooded_vegetation"] - means["crops_grassland"]
    assert gain[1] < gain[0] - 1.5


def test_otsu_on_vh_separates_water_after_a_boxcar():
    for seed in (0, 4, 7):
        ds = flood_chip(seed)
        vh = to_db(boxcar(to_linear(ds["backscatter"]), 5)).sel(band="VH").values
        water, valid = ds["water"].values == 1, ds["water"].values != IGNORE_INDEX
        found = vh < threshold_otsu(vh[valid & np.isfinite(vh)])
        iou = (found & water & valid).sum() / ((found | water) & valid).sum()
        assert iou > 0.8, (seed, iou)


def test_labels_agree_with_land_cover_and_nodata(chip):
    nodata_seed = next(
        s for s in range(20) if np.isnan(flood_chip(s, size=64)["backscatter"]).any()
    )
    for ds in (chip, flood_chip(nodata_seed, size=128)):
        water, cover = ds["water"].values, ds["land_cover"].values
        assert water.dtype == np.uint8 and cover.dtype == np.uint8
        valid = water != IGNORE_INDEX
        in_water = np.isin(cover, [CODE[n] for n in WATER])
        np.testing.assert_array_equal(water[valid], in_water[valid].astype(np.uint8))
        nan = np.isnan(ds["backscatter"].values)
        np.testing.assert_array_equal(nan[0], ~valid)
        np.testing.assert_array_equal(nan[1], ~valid)
        np.testing.assert_array_equal(cover == IGNORE_INDEX, ~valid)
        np.testing.assert_array_equal(np.isnan(ds["incidence_angle"].values), ~valid)
    assert (flood_chip(nodata_seed, size=128)["water"].values == IGNORE_INDEX).any()
    meanings = chip["land_cover"].attrs["flag_meanings"].split()
    assert dict(zip(meanings, chip["land_cover"].attrs["flag_values"], strict=True)) == CODE


def test_sar_conventions_geometry_and_attrs(chip):
    image = chip["backscatter"]
    check_backscatter(image)
    assert image.dims == ("band", "y", "x") and image.dtype == np.float32
    assert list(image["band"].values) == ["VV", "VH"] and image.attrs["units"] == "dB"
    assert {k: chip.attrs[k] for k in ("mode", "product", "simulated")} == {
        "mode": "IW",
        "product": "GRD",
        "simulated": 1,
    }
    assert chip.attrs["platform"] in ("Sentinel-1A", "Sentinel-1B")
    event, number = chip.attrs["scene_id"].rsplit("_", 1)
    assert event == chip.attrs["event"] and number == "4"
    region = next(r for r in REGIONS if r[0] == event)
    t = chip.rio.transform()
    assert chip.rio.crs.to_epsg() == 4326
    assert t.a == pytest.approx(8.983152841195215e-05) and t.e == -t.a
    assert region[2][0] <= t.c <= region[2][1] and region[3][0] <= t.f <= region[3][1]
    theta = chip["incidence_angle"].values
    assert np.nanmin(theta) >= 30.0 and np.nanmax(theta) <= 46.0
    assert np.nanmax(np.nanstd(theta, axis=0)) < 1e-3  # constant along azimuth (y)
    ramp = theta[:, -1] - theta[:, 0]
    assert 0.2 < abs(np.nanmean(ramp)) < 0.5  # 5 km of a 250 km, 17 deg swath
    assert (np.nanmean(ramp) > 0) == (chip.attrs["orbit_pass"] == "ASCENDING")


def test_flood_rises_from_the_river_to_the_requested_extent():
    ds = flood_chip(11, flood_fraction=0.3)
    cover = ds["land_cover"].values
    assert not (cover == IGNORE_INDEX).any()
    inundated = np.isin(cover, INUNDATED)
    assert inundated.mean() == pytest.approx(0.3, abs=0.02)
    assert ds.attrs["flood_fraction"] == pytest.approx(inundated.mean(), abs=1e-4)
    labels, _ = ndimage.label(inundated | (cover == CODE["permanent_water"]))
    touching_water = np.unique(labels[cover == CODE["permanent_water"]])
    assert np.isin(np.unique(labels[inundated]), touching_water).all()
    dry = flood_chip(11, flood_fraction=0.0)["land_cover"].values
    assert not np.isin(dry, INUNDATED).any()


def test_pair_shares_the_place_and_changes_where_it_floods():
    pre, post = flood_pair(2, size=256)
    xr.testing.assert_identical(post, flood_chip(2, size=256))
    before, after = pre["land_cover"].values, post["land_cover"].values
    assert not np.isin(before, INUNDATED).any()
    unchanged = ~np.isin(after, INUNDATED)
    np.testing.assert_array_equal(before[unchanged], after[unchanged])
    ratio = post["backscatter"].values - pre["backscatter"].values  # dB difference
    assert np.nanstd(ratio[:, unchanged]) > 2.0  # new speckle, not a copy
    open_flood = after == CODE["flooded_water"]
    under_canopy = after == CODE["flooded_vegetation"]
    assert np.nanmean(ratio[1][open_flood]) < -6.0  # land turns dark
    assert np.nanmean(ratio[0][under_canopy]) > 2.0  # double bounce appears
    assert pre.attrs["acquisition"] == "pre-flood" and post.attrs["acquisition"] == "during-flood"


def test_written_chip_reads_back_unchanged_and_bytes_are_reproducible(tmp_path, chip):
    written = []
    for name in ("a", "b"):
        folder = tmp_path / name
        name_id = chip.attrs["scene_id"]
        s1, label = write_sen1floods11(chip, folder / "S1Hand" / f"{name_id}_S1Hand.tif", None)
        written.append((s1, label))
    (s1, label), (s1_again, label_again) = written
    assert label == s1.parents[1] / "LabelHand" / f"{chip.attrs['scene_id']}_LabelHand.tif"
    assert _sha256(s1) == _sha256(s1_again) and _sha256(label) == _sha256(label_again)

    back = open_sen1floods11(s1)
    np.testing.assert_array_equal(back["backscatter"].values, chip["backscatter"].values)
    np.testing.assert_array_equal(back["water"].values, chip["water"].values)
    assert back.rio.transform() == chip.rio.transform() and back.rio.crs == chip.rio.crs
    np.testing.assert_array_equal(back["x"].values, chip["x"].values)
    np.testing.assert_array_equal(back["y"].values, chip["y"].values)
    assert back.attrs["scene_id"] == chip.attrs["scene_id"]
    assert back.attrs["event"] == chip.attrs["event"]

    other = tmp_path / "c" / "S1Hand" / f"{chip.attrs['scene_id']}_S1Hand.tif"
    write_sen1floods11(flood_chip(5), other)
    assert _sha256(other) != _sha256(s1)


def test_same_seed_same_values_other_seed_other_values(chip):
    xr.testing.assert_identical(flood_chip(4), chip)
    other = flood_chip(5)
    assert not np.array_equal(other["land_cover"].values, chip["land_cover"].values)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="flood_fraction"):
        flood_chip(0, size=64, flood_fraction=1.5)
    with pytest.raises(ValueError, match="incidence"):
        flood_chip(0, size=64, incidence_deg=70.0)
    with pytest.raises(ValueError, match="enl"):
        flood_chip(0, size=64, enl=0.0)
    with pytest.raises(ValueError, match="size"):
        flood_chip(0, size=8)
