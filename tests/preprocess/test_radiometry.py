"""dB/linear conversions and sigma0/gamma0/beta0 relations, with their refusals."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

from sarlab.errors import UnitsError
from sarlab.preprocess import (
    beta0_to_sigma0,
    db_to_linear,
    gamma0_to_sigma0,
    linear_to_db,
    sigma0_to_beta0,
    sigma0_to_gamma0,
    to_db,
    to_intensity,
    to_linear,
)


def _scene(values: np.ndarray, units: str = "linear", quantity: str = "sigma0") -> xr.Dataset:
    bands = ["VV", "VH"]
    ny, nx = values.shape[1:]
    image = xr.DataArray(
        values.astype(np.float32),
        dims=("band", "y", "x"),
        coords={"band": bands, "y": 100.0 - 10 * np.arange(ny), "x": 10 * np.arange(nx) + 5.0},
        attrs={"quantity": quantity, "units": units, "polarization": "VV,VH"},
    )
    theta = xr.DataArray(
        np.tile(np.linspace(30.0, 60.0, nx, dtype=np.float32), (ny, 1)),
        dims=("y", "x"),
        attrs={"units": "degrees"},
    )
    return xr.Dataset({"backscatter": image, "incidence_angle": theta}, attrs={"scene_id": "t"})


def test_known_db_values():
    np.testing.assert_allclose(
        linear_to_db([1.0, 10.0, 0.1, 0.5]), [0, 10, -10, -3.0103], atol=1e-4
    )
    np.testing.assert_allclose(db_to_linear([0.0, 10.0, -20.0]), [1, 10, 0.01])
    np.testing.assert_allclose(linear_to_db([10.0], amplitude=True), [20.0])
    np.testing.assert_allclose(db_to_linear([20.0], amplitude=True), [10.0])


def test_nonpositive_and_nan_become_nan():
    out = linear_to_db(np.array([0.0, -1.0, np.nan, 1.0], dtype=np.float32))
    assert out.dtype == np.float32
    assert np.isnan(out[:3]).all() and out[3] == 0.0
    assert np.isnan(db_to_linear([np.nan])).all()


@given(st.floats(1e-12, 1e12))
def test_round_trip(value):
    assert db_to_linear(linear_to_db(value)) == pytest.approx(value, rel=1e-12)
    assert db_to_linear(linear_to_db(value, amplitude=True), amplitude=True) == pytest.approx(
        value, rel=1e-12
    )


def test_dataset_round_trip_updates_units_and_keeps_the_rest():
    rng = np.random.default_rng(0)
    ds = _scene(rng.gamma(2.0, 0.05, (2, 4, 5)))
    db = to_db(ds)
    assert db["backscatter"].attrs == {**ds["backscatter"].attrs, "units": "dB"}
    assert db["backscatter"].dtype == np.float32
    xr.testing.assert_identical(db["incidence_angle"], ds["incidence_angle"])
    assert db.attrs == ds.attrs
    np.testing.assert_allclose(db["backscatter"], 10 * np.log10(ds["backscatter"]), rtol=1e-6)
    back = to_linear(db)
    xr.testing.assert_allclose(back, ds, rtol=1e-5)
    assert back["backscatter"].attrs["units"] == "linear"


def test_double_conversion_and_missing_units_are_refused():
    ds = _scene(np.ones((2, 3, 3)))
    db = to_db(ds)
    with pytest.raises(UnitsError, match="in 'dB', expected 'linear'"):
        to_db(db)
    with pytest.raises(UnitsError, match="in 'linear', expected 'dB'"):
        to_linear(ds)
    bare = xr.DataArray(np.ones((3, 3)), dims=("y", "x"))
    with pytest.raises(UnitsError, match="lacks a 'units' attr"):
        to_db(bare)
    with pytest.raises(UnitsError, match="unknown units"):
        to_db(bare.assign_attrs(units="dBm", quantity="sigma0"))
    with pytest.raises(UnitsError, match="quantity"):
        to_db(bare.assign_attrs(units="linear"))


def test_amplitude_db_equals_intensity_db():
    amp = _scene(np.full((2, 2, 2), 3.0), quantity="amplitude")
    intensity = to_intensity(amp)
    assert intensity["backscatter"].attrs["quantity"] == "intensity"
    np.testing.assert_allclose(intensity["backscatter"], 9.0)
    np.testing.assert_allclose(
        to_db(amp)["backscatter"], to_db(intensity)["backscatter"], rtol=1e-6
    )
    np.testing.assert_allclose(to_linear(to_db(amp))["backscatter"], 3.0, rtol=1e-6)
    with pytest.raises(UnitsError, match="already 'intensity'"):
        to_intensity(intensity)
    with pytest.raises(UnitsError):
        to_intensity(to_db(amp))


def test_dask_stays_lazy():
    ds = _scene(np.full((2, 4, 4), 0.1)).chunk({"y": 2})
    db = to_db(ds)
    assert db["backscatter"].chunks is not None
    np.testing.assert_allclose(db["backscatter"].values, -10.0, rtol=1e-6)


def test_sigma0_gamma0_at_known_angles():
    ds = _scene(np.full((2, 1, 3), 0.2))  # incidence 30, 45, 60 degrees across x
    gamma = sigma0_to_gamma0(ds)["backscatter"]
    assert gamma.attrs["quantity"] == "gamma0" and gamma.dtype == np.float32
    expected = 0.2 / np.cos(np.deg2rad([30.0, 45.0, 60.0]))
    np.testing.assert_allclose(gamma.values[0, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(gamma.values[0, 0, 2], 0.4, rtol=1e-6)  # cos 60 = 1/2
    back = gamma0_to_sigma0(sigma0_to_gamma0(ds))
    np.testing.assert_allclose(back["backscatter"], 0.2, rtol=1e-6)
    assert back["backscatter"].attrs["quantity"] == "sigma0"
    assert list(back["backscatter"].dims) == ["band", "y", "x"]


def test_beta0_to_sigma0_at_known_angles():
    ds = _scene(np.full((2, 1, 3), 0.5), quantity="beta0")
    sigma = beta0_to_sigma0(ds)["backscatter"]
    np.testing.assert_allclose(
        sigma.values[1, 0], 0.5 * np.sin(np.deg2rad([30, 45, 60])), rtol=1e-6
    )
    np.testing.assert_allclose(sigma.values[0, 0, 0], 0.25, rtol=1e-6)  # sin 30 = 1/2
    np.testing.assert_allclose(sigma0_to_beta0(beta0_to_sigma0(ds))["backscatter"], 0.5, rtol=1e-6)


def test_explicit_angles_for_dataarray_and_numpy():
    da = _scene(np.full((2, 2, 2), 1.0))["backscatter"]
    out = sigma0_to_gamma0(da, incidence_angle=np.full((2, 2), 60.0))
    np.testing.assert_allclose(out, 2.0, rtol=1e-6)
    np.testing.assert_allclose(sigma0_to_gamma0(np.ones(3), incidence_angle=60.0), 2.0)
    with pytest.raises(UnitsError, match="no incidence angle"):
        sigma0_to_gamma0(da)
    with pytest.raises(UnitsError, match=r"degrees within \[0, 90\)"):
        sigma0_to_gamma0(da, incidence_angle=np.full((2, 2), 100.0))
    with pytest.raises(UnitsError, match="shape"):
        sigma0_to_gamma0(da, incidence_angle=np.full((3, 3), 40.0))


def test_angle_conversions_refuse_db_and_wrong_quantity():
    ds = _scene(np.ones((2, 2, 2)))
    with pytest.raises(UnitsError, match="'dB'"):
        sigma0_to_gamma0(to_db(ds))
    with pytest.raises(UnitsError, match="quantity is 'sigma0'"):
        gamma0_to_sigma0(ds)
    with pytest.raises(UnitsError, match="quantity is 'sigma0'"):
        beta0_to_sigma0(ds)
