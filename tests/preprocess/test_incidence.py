"""Incidence-angle slope fits and normalisation to a reference angle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from sarlab.conventions import IGNORE_INDEX
from sarlab.errors import UnitsError
from sarlab.preprocess import fit_incidence_slope, normalize_incidence, to_db

NY, NX = 60, 80
THETA = np.tile(np.linspace(20.0, 45.0, NX), (NY, 1))


def _classes() -> np.ndarray:
    classes = np.zeros((NY, NX), dtype=np.uint8)
    classes[NY // 2 :] = 1
    classes[:5] = IGNORE_INDEX
    return classes


def _db(slopes: dict[int, float], seed: int = 0, noise: float = 0.5) -> np.ndarray:
    """dB image with a class-dependent trend and NaN gaps; ignore-index rows are garbage."""
    rng = np.random.default_rng(seed)
    classes = _classes()
    slope = np.vectorize(lambda c: slopes.get(int(c), 5.0))(classes)
    offset = np.where(classes == 1, -20.0, -12.0)
    db = offset + slope * (THETA - 30.0) + rng.normal(0.0, noise, (NY, NX))
    db[rng.random(db.shape) < 0.05] = np.nan
    return db


def _dataset(vv: np.ndarray, vh: np.ndarray) -> xr.Dataset:
    image = xr.DataArray(
        np.stack([vv, vh]).astype(np.float32),
        dims=("band", "y", "x"),
        coords={"band": ["VV", "VH"]},
        attrs={"quantity": "sigma0", "units": "dB", "polarization": "VV,VH"},
    )
    classes = xr.DataArray(_classes(), dims=("y", "x"))
    theta = xr.DataArray(THETA.astype(np.float32), dims=("y", "x"))
    return xr.Dataset({"backscatter": image, "incidence_angle": theta, "ice_type": classes})


def test_global_slope_recovered_from_numpy():
    db = _db({0: -0.2, 1: -0.2, IGNORE_INDEX: -0.2})
    assert fit_incidence_slope(db, THETA) == pytest.approx(-0.2, abs=0.005)


def test_exact_line_is_fitted_exactly():
    db = 3.0 - 0.137 * THETA
    assert fit_incidence_slope(db, THETA) == pytest.approx(-0.137, rel=1e-10)


def test_per_class_slopes_skip_ignore_index():
    db = _db({0: -0.25, 1: -0.1})
    slopes = fit_incidence_slope(db, THETA, _classes())
    assert set(slopes) == {0, 1}  # IGNORE_INDEX rows carry a wrong slope (+5) and are left out
    assert slopes[0] == pytest.approx(-0.25, abs=0.01)
    assert slopes[1] == pytest.approx(-0.1, abs=0.01)


def test_classes_with_too_few_pixels_are_left_out():
    classes = _classes()
    classes[10, 10] = 7
    slopes = fit_incidence_slope(_db({0: -0.2, 1: -0.2}), THETA, classes, min_pixels=50)
    assert 7 not in slopes
    with pytest.raises(ValueError, match="valid pixels"):
        fit_incidence_slope(np.full((3, 3), np.nan), np.full((3, 3), 30.0))


def test_per_band_and_class_from_dataset():
    ds = _dataset(_db({0: -0.25, 1: -0.1}, seed=1), _db({0: -0.15, 1: -0.05}, seed=2))
    per_band = fit_incidence_slope(ds, classes="ice_type")
    assert set(per_band) == {"VV", "VH"}
    assert per_band["VV"][0] == pytest.approx(-0.25, abs=0.01)
    assert per_band["VH"][1] == pytest.approx(-0.05, abs=0.01)
    assert isinstance(fit_incidence_slope(ds)["VV"], float)


def test_normalisation_removes_the_trend_and_records_it():
    uniform = {0: -0.2, 1: -0.2, IGNORE_INDEX: -0.2}
    ds = _dataset(_db(uniform, seed=3), _db(uniform, seed=4))
    out = normalize_incidence(ds, -0.2, reference_angle=30.0)
    image = out["backscatter"]
    assert image.attrs["incidence_slope"] == -0.2
    assert image.attrs["incidence_reference_angle"] == 30.0
    assert image.attrs["units"] == "dB" and image.dtype == np.float32
    assert abs(fit_incidence_slope(out)["VV"]) < 0.01
    # At theta = ref + 5 the correction is +1 dB (0.2 dB/degree).
    j = int(np.argmin(np.abs(THETA[0] - 35.0)))
    delta = (image - ds["backscatter"]).values[:, :, j]
    np.testing.assert_allclose(delta[np.isfinite(delta)], 0.2 * (THETA[0, j] - 30.0), rtol=1e-5)
    xr.testing.assert_identical(out["incidence_angle"], ds["incidence_angle"])


def test_per_band_per_class_normalisation():
    ds = _dataset(_db({0: -0.3, 1: -0.1}, seed=5), _db({0: -0.2, 1: -0.05}, seed=6))
    slopes = fit_incidence_slope(ds, classes="ice_type")
    out = normalize_incidence(ds, slopes, reference_angle=35.0, classes="ice_type")
    image = out["backscatter"]
    assert json.loads(image.attrs["incidence_slope"])["VV"]["0"] == pytest.approx(-0.3, abs=0.01)
    assert np.isnan(image.values[:, :5]).all()  # ignore-index rows have no slope
    for band in ("VV", "VH"):
        for cls, region in ((0, slice(5, NY // 2)), (1, slice(NY // 2, NY))):
            vals = image.sel(band=band).values[region]
            assert abs(fit_incidence_slope(vals, THETA[region])) < 0.01, (band, cls)


def test_numpy_per_class():
    db = _db({0: -0.3, 1: -0.1})
    out = normalize_incidence(
        db, {0: -0.3, 1: -0.1}, reference_angle=30.0, incidence_angle=THETA, classes=_classes()
    )
    for cls in (0, 1):
        here = _classes() == cls
        assert abs(fit_incidence_slope(out[here], THETA[here])) < 0.01


def test_refusals():
    ds = _dataset(_db({0: -0.2}), _db({0: -0.2}))
    once = normalize_incidence(ds, -0.2, reference_angle=30.0)
    with pytest.raises(UnitsError, match="normalising twice"):
        normalize_incidence(once, -0.2, reference_angle=30.0)
    linear = ds.copy()
    linear["backscatter"] = ds["backscatter"].assign_attrs(units="linear")
    with pytest.raises(UnitsError, match="expected 'dB'"):
        normalize_incidence(linear, -0.2, reference_angle=30.0)
    with pytest.raises(UnitsError, match="expected 'dB'"):
        fit_incidence_slope(linear)
    with pytest.raises(ValueError, match="no slope for bands"):
        normalize_incidence(ds, {"VV": -0.2}, reference_angle=30.0)
    with pytest.raises(ValueError, match="classes"):
        normalize_incidence(ds, {0: -0.2}, reference_angle=30.0)
    with pytest.raises(ValueError, match="reference_angle"):
        normalize_incidence(ds, -0.2, reference_angle=95.0)


def test_linear_data_must_be_converted_first():
    ds = _dataset(_db({0: -0.2}), _db({0: -0.2}))
    linear = ds.copy()
    linear["backscatter"] = ds["backscatter"].assign_attrs(units="linear")
    linear["backscatter"].values[:] = 0.05
    fitted = fit_incidence_slope(to_db(linear))
    assert fitted["VV"] == pytest.approx(0.0, abs=1e-6)
