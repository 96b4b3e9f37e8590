"""The sea-ice simulator measures what it was told to: ENL, sigma0, slopes, noise, charts."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from sarlab.io.ai4arctic import CHART_CLASSES, open_ai4arctic, write_ai4arctic
from sarlab.preprocess.incidence import fit_incidence_slope
from sarlab.preprocess.speckle import estimate_enl
from sarlab.simulate import gmf
from sarlab.simulate.geometry import (
    BURST_LENGTH_M,
    EW_SUBSWATH_EDGES_DEG,
    incidence_profile,
    nesz_db,
    subswath_of,
)
from sarlab.simulate.radiometry import (
    SURFACE_CLASSES,
    THETA_REF,
    reflectivity,
    render_intensity,
)
from sarlab.simulate.sea_ice import remove_noise, repeat_pass, sea_ice_scene
from sarlab.simulate.texture import SmoothField, cells

LAND, OPEN_WATER, DEFORMED = 7, 0, 6
PIXEL_M = 80.0


@pytest.fixture(scope="module")
def scene():
    """A 512-pixel Svalbard scene holding every surface class and several SIC classes."""
    return sea_ice_scene(3, 512, keep_reflectivity=True)


@pytest.fixture(scope="module")
def calm():
    """Mostly open water under a 2 m/s wind: HV water far below the noise floor."""
    return sea_ice_scene(0, 384, wind_speed=2.0, keep_reflectivity=True)


def _homogeneous(code: int, ny: int = 128, nx: int = 512, **kw) -> tuple[np.ndarray, ...]:
    """A constant class over the EW incidence ramp, rendered without thermal noise."""
    surface = np.full((ny, nx), code, np.uint8)
    theta = np.broadcast_to(incidence_profile(nx, (19.0, 47.0)), (ny, nx))
    refl = reflectivity(surface, theta)
    rng = np.random.default_rng(code)
    intensity, _ = render_intensity(refl, surface, rng, enl=kw.pop("enl", 10.7), **kw)
    return intensity, refl, theta


@pytest.mark.parametrize("enl", [4.4, 10.7])
def test_enl_of_a_homogeneous_region_is_the_configured_one(enl):
    intensity, refl, _ = _homogeneous(4, 256, 512, enl=enl, texture=False)
    # the incidence trend is divided out; what is left is the speckle alone
    assert estimate_enl(intensity / refl) == pytest.approx(enl, rel=0.05)
    # a strip of 24 columns (< 0.7 deg) is homogeneous enough as it stands
    for band in intensity:
        assert estimate_enl(band[:, 200:224]) == pytest.approx(enl, rel=0.05)


def test_enl_through_the_whole_scene_chain(scene):
    """Texture, noise and speckle as the scene records them: the speckle has the ENL."""
    linear = 10.0 ** (scene["backscatter"].values.astype(np.float64) / 10.0)
    expected = scene["reflectivity"].values * scene["texture"].values + scene["nesz"].values
    assert estimate_enl(linear / expected) == pytest.approx(scene.attrs["enl"], rel=0.05)


@pytest.mark.parametrize("code", [1, 2, 3, 4, 5, 6, 7])
def test_mean_sigma0_at_the_reference_angle_is_the_table_value(code):
    intensity, _, theta = _homogeneous(code, 256, 512)
    near = np.abs(theta - THETA_REF) < 1.0
    table = SURFACE_CLASSES[code]
    for band, value in enumerate((table.hh_db, table.hv_db)):
        measured = 10.0 * np.log10(intensity[band][near].mean())
        assert measured == pytest.approx(value, abs=0.3)


@pytest.mark.parametrize("code", [2, 4, 5, 6])
def test_recovered_incidence_slope_is_the_configured_one(code):
    intensity, _, theta = _homogeneous(code, 128, 512)
    db = 10.0 * np.log10(intensity)
    table = SURFACE_CLASSES[code]
    for band, slope in enumerate((table.hh_slope, table.hv_slope)):
        assert fit_incidence_slope(db[band], theta) == pytest.approx(slope, rel=0.10)


def test_scene_sigma0_is_the_reflectivity_it_records(scene):
    """Per class, the noise-subtracted mean intensity is the recorded reflectivity."""
    linear = 10.0 ** (scene["backscatter"].values.astype(np.float64) / 10.0)
    signal = linear - scene["nesz"].values
    surface = scene["surface"].values
    checked = 0
    for code in (3, 4, 5, 6, 7):
        here = surface == code
        if here.sum() < 3000:
            continue
        ratio = signal[0][here].mean() / scene["reflectivity"].values[0][here].mean()
        assert 10.0 * np.log10(ratio) == pytest.approx(0.0, abs=0.3)
        checked += 1
    assert checked >= 3


def test_calm_open_water_in_hv_sits_at_the_noise_floor(calm):
    water = (calm["surface"].values == OPEN_WATER) & (calm["SIC"].values == 0)
    assert water.mean() > 0.3
    hv = 10.0 ** (calm["backscatter"].sel(band="HV").values.astype(np.float64)[water] / 10.0)
    nesz = calm["nesz"].sel(band="HV").values[water]
    truth = calm["reflectivity"].sel(band="HV").values[water]
    assert 10 * np.log10(truth.mean() / nesz.mean()) < -6.0  # the water is far below the noise
    assert 10 * np.log10(hv.mean() / nesz.mean()) == pytest.approx(0.0, abs=1.0)
    # subtracting the recorded noise gives back the water's own sigma0 (on average)
    assert 10 * np.log10((hv - nesz).mean() / truth.mean()) == pytest.approx(0.0, abs=1.0)
    cleaned = remove_noise(calm)
    assert cleaned.attrs["noise_removed"] == 1
    after = 10.0 ** (cleaned["backscatter"].sel(band="HV").values.astype(np.float64)[water] / 10)
    assert 10 * np.log10(after.mean() / nesz.mean()) < -4.0
    with pytest.raises(ValueError, match="already removed"):
        remove_noise(cleaned)
    assert np.isfinite(cleaned["backscatter"].values).all()  # clipped, never log(<= 0)


def test_noise_removed_scene_is_the_scene_with_its_noise_removed():
    cleaned = sea_ice_scene(4, 96, noise_removed=True)
    assert cleaned.attrs["noise_removed"] == 1
    np.testing.assert_array_equal(
        cleaned["backscatter"].values, remove_noise(sea_ice_scene(4, 96))["backscatter"].values
    )


def test_open_water_gmfs_behave_like_c_band_sea():
    theta = np.array([20.0, 30.0, 40.0, 47.0])
    weak, strong = gmf.cmod5n_vv(4.0, 0.0, theta), gmf.cmod5n_vv(12.0, 0.0, theta)
    assert (strong > weak).all() and (np.diff(weak) < 0).all()  # rougher, and darker far out
    assert (gmf.cmod5n_vv(8.0, 0.0, theta) > gmf.cmod5n_vv(8.0, 90.0, theta)).all()
    ratio = gmf.polarisation_ratio(theta, 0.0)
    assert (ratio > 1.0).all() and (np.diff(ratio) > 0).all()  # HH below VV, more so far out
    assert 10 * np.log10(gmf.hv_sigma0(5.0)) == pytest.approx(-35.6 + 0.59 * 5.0)


def test_noise_has_sub_swath_steps_and_azimuth_scalloping():
    theta = incidence_profile(1000, (19.0, 47.0))
    rows = np.arange(2000) * PIXEL_M
    noise = nesz_db(theta, rows, -26.0, np.zeros(5))
    assert noise.shape == (2000, 1000)
    assert noise.min() > -26.5 and noise.max() < -21.0
    swath = subswath_of(theta)
    assert sorted(set(swath.tolist())) == [0, 1, 2, 3, 4]
    # quietest at each beam centre, noisier at both of its edges
    for k in range(5):
        profile = noise[0][swath == k]
        assert profile.min() < profile[0] and profile.min() < profile[-1]
    # periodic along track with the burst length
    column = noise[:, 500].astype(np.float64)
    period = round(BURST_LENGTH_M / PIXEL_M)
    np.testing.assert_allclose(column[:-period], column[period:], atol=1e-4)
    assert np.ptp(column) > 0.3
    assert EW_SUBSWATH_EDGES_DEG[0] < theta.min() + 0.2 and theta.max() < EW_SUBSWATH_EDGES_DEG[-1]


def test_labels_follow_autoice_conventions(scene):
    sic, sod, floe = (scene[c].values for c in ("SIC", "SOD", "FLOE"))
    for chart, classes in CHART_CLASSES.items():
        assert scene[chart].dtype == np.uint8
        assert set(np.unique(scene[chart].values)) <= {*classes.values(), 255}
    land = scene["surface"].values == LAND
    assert 0 < land.mean() < 0.5
    for label in (sic, sod, floe):
        np.testing.assert_array_equal(label == 255, land)
    np.testing.assert_array_equal(scene["distance_map"].values == 0, land)
    sea = ~land
    np.testing.assert_array_equal((sic == 0)[sea], (sod == 0)[sea])
    np.testing.assert_array_equal((sic == 0)[sea], (floe == 0)[sea])
    assert (sod[sea & (sic > 0)] >= 1).all() and (floe[sea & (sic > 0)] >= 1).all()
    assert (sic[floe == 5] >= 9).all()  # vast floes only in the pack
    assert len(np.unique(sic[sea])) >= 5
    # open-water polygons hold only water
    assert (scene["surface"].values[sea & (sic == 0)] == OPEN_WATER).all()


def test_polygons_ice_fraction_and_dominant_stage_agree_with_the_chart(scene):
    polygon, surface = scene["polygon"].values, scene["surface"].values
    sic, sod = scene["SIC"].values, scene["SOD"].values
    fractions = 0
    for pid in np.unique(polygon[polygon >= 0]):
        here = polygon == pid
        assert len(np.unique(sic[here])) == 1 and len(np.unique(sod[here])) == 1
        ice = surface[here] > 0
        if here.sum() >= 2000:
            assert ice.mean() == pytest.approx(sic[here][0] / 10.0, abs=0.06)
            fractions += 1
        if ice.sum() >= 500:
            stages = surface[here][ice]
            stage = sod[here][0]
            own = (stages == stage) | ((stages == DEFORMED) & (stage in (3, 4)))
            assert own.mean() > 0.5, (pid, stage, np.unique(stages, return_counts=True))
    assert fractions >= 3


def test_write_and_open_round_trip(scene, tmp_path):
    path = write_ai4arctic(scene, tmp_path / f"{scene.attrs['scene_id']}.nc")
    back = open_ai4arctic(path, chunks=None)
    np.testing.assert_allclose(back["backscatter"].values, scene["backscatter"].values, atol=1e-4)
    np.testing.assert_allclose(
        back["incidence_angle"].values, scene["incidence_angle"].values, atol=1e-4
    )
    np.testing.assert_allclose(back["distance_map"].values, scene["distance_map"].values, atol=1e-4)
    for chart in CHART_CLASSES:
        np.testing.assert_array_equal(back[chart].values, scene[chart].values)
    np.testing.assert_allclose(back["latitude"].values, scene["latitude"].values, atol=2e-3)
    np.testing.assert_allclose(back["longitude"].values, scene["longitude"].values, atol=2e-3)
    assert back.attrs["scene_id"] == scene.attrs["scene_id"]
    assert back.attrs["platform"] == "Sentinel-1A" and back.attrs["ice_service"] == "dmi"
    assert back.attrs["pixel_spacing"] == 80.0


def test_same_seed_same_bytes_other_seed_other_scene(tmp_path):
    first = write_ai4arctic(sea_ice_scene(21, 128), tmp_path / "a.nc")
    again = write_ai4arctic(sea_ice_scene(21, 128), tmp_path / "b.nc")
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (first, again)]
    assert digest[0] == digest[1]
    other = sea_ice_scene(22, 128)
    assert not np.array_equal(other["backscatter"].values, sea_ice_scene(21, 128)["backscatter"])


def test_repeat_pass_moves_the_ice_and_keeps_the_land(scene):
    drift = (8 * PIXEL_M, -5 * PIXEL_M)  # 8 columns east, 5 rows down the image
    later = repeat_pass(scene, 7, drift_m=drift, rotation_deg=0.0, days=2)
    old, new = scene["polygon"].values, later["polygon"].values
    moved = (slice(5, None), slice(8, None))
    source = (slice(None, -5), slice(None, -8))
    valid = (old[source] >= 0) & (new[moved] >= 0)
    assert valid.mean() > 0.7
    for name in ("SIC", "SOD", "FLOE", "surface", "polygon"):
        np.testing.assert_array_equal(
            later[name].values[moved][valid], scene[name].values[source][valid]
        )
    land = scene["surface"].values == LAND
    np.testing.assert_array_equal(later["surface"].values == LAND, land)
    # new speckle: on the land (same reflectivity) the two passes' fluctuations are unrelated
    ratio = [
        d["backscatter"].values[0][land] - 10 * np.log10(d["reflectivity"].values[0][land])
        for d in (scene, later)
    ]
    assert abs(np.corrcoef(*ratio)[0, 1]) < 0.1
    assert later.attrs["scene_id"] != scene.attrs["scene_id"]
    assert later.attrs["days_since_first"] == 2 and later.attrs["drift_x_m"] == drift[0]
    again = repeat_pass(scene, 7, drift_m=drift, rotation_deg=0.0, days=2)
    np.testing.assert_array_equal(again["backscatter"].values, later["backscatter"].values)


def test_default_repeat_pass_rotates_drifts_and_chains(scene):
    later = repeat_pass(scene, 1)
    land = scene["surface"].values == LAND
    np.testing.assert_array_equal(later["surface"].values == LAND, land)
    assert later.attrs["rotation_deg"] != 0.0
    assert np.hypot(later.attrs["drift_x_m"], later.attrs["drift_y_m"]) >= 9e3  # 3 days
    assert not np.array_equal(later["SIC"].values, scene["SIC"].values)
    assert later.attrs["acquisition_start"] > scene.attrs["acquisition_start"]
    twice = repeat_pass(later, 2, drift_m=(0.0, 0.0), rotation_deg=0.0, days=1)
    assert twice.attrs["days_since_first"] == 4
    # no further motion: the ice is where the first repeat left it
    np.testing.assert_array_equal(twice["SIC"].values, later["SIC"].values)
    with pytest.raises(ValueError, match="sea_ice_scene"):
        repeat_pass(scene.assign_attrs(simulator="other"), 1)


def test_procedural_fields_do_not_depend_on_the_grid():
    y, x = np.meshgrid(np.arange(64) * 90.0, np.arange(96) * 90.0, indexing="ij")
    field = SmoothField(5, 3000.0)
    np.testing.assert_array_equal(
        field(x, y)[10:40, 20:60], field(x[10:40, 20:60], y[10:40, 20:60])
    )
    full, part = cells(x, y, 400.0, 9), cells(x[:, 30:], y[:, 30:], 400.0, 9)
    for a, b in zip(full, part, strict=True):
        np.testing.assert_array_equal(a[:, 30:], b)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="seed"):
        sea_ice_scene(-1, 64)
    with pytest.raises(ValueError, match="region"):
        sea_ice_scene(1, 64, region="atlantis")
    with pytest.raises(ValueError, match="incidence_range"):
        sea_ice_scene(1, 64, incidence_range=(40.0, 20.0))
