"""Multilooking: NaN-aware block means in linear units, geometry carried along."""

from __future__ import annotations

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine

from sarlab.conventions import IGNORE_INDEX
from sarlab.errors import UnitsError
from sarlab.preprocess import estimate_enl, multilook, multilook_array, to_db


def _brute_blocks(x: np.ndarray, fy: int, fx: int) -> np.ndarray:
    ny, nx = x.shape[0] // fy, x.shape[1] // fx
    out = np.full((ny, nx), np.nan)
    for i in range(ny):
        for j in range(nx):
            block = x[i * fy : (i + 1) * fy, j * fx : (j + 1) * fx]
            if np.isfinite(block).any():
                out[i, j] = np.nanmean(block)
    return out


def _scene(ny: int = 7, nx: int = 11) -> xr.Dataset:
    rng = np.random.default_rng(0)
    values = rng.gamma(1.0, 0.1, (2, ny, nx)).astype(np.float32)
    values[0, 0, :2] = np.nan
    values[:, 2:4, 3:6] = np.nan  # one whole (2, 3) block
    transform = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 7000000.0)
    x = transform.c + transform.a * (np.arange(nx) + 0.5)
    y = transform.f + transform.e * (np.arange(ny) + 0.5)
    labels = np.zeros((ny, nx), dtype=np.uint8)
    labels[:, 4:] = 2
    labels[0, :3] = IGNORE_INDEX
    labels[1, 0] = 2
    labels[2:4, :3] = [[3, 3, 3], [1, 1, 1]]
    ds = xr.Dataset(
        {
            "backscatter": xr.DataArray(
                values,
                dims=("band", "y", "x"),
                coords={"band": ["HH", "HV"]},
                attrs={"quantity": "sigma0", "units": "linear", "polarization": "HH,HV"},
            ),
            "incidence_angle": (("y", "x"), np.tile(np.linspace(20, 40, nx), (ny, 1)).astype("f4")),
            "stage": (("y", "x"), labels),
        },
        coords={"x": x, "y": y},
        attrs={"scene_id": "s", "platform": "S1A"},
    )
    return ds.rio.write_crs("EPSG:32633").rio.write_transform(transform)


def test_block_mean_matches_loops_and_nan_rules():
    x = _scene()["backscatter"].values[0]
    out = multilook_array(x, (2, 3))
    assert out.shape == (3, 3)  # the 7th row and the last 2 columns are dropped
    np.testing.assert_allclose(out, _brute_blocks(x, 2, 3), rtol=1e-6)
    assert np.isnan(out[1, 1])  # the all-NaN block
    stack = multilook_array(_scene()["backscatter"].values, 2)
    np.testing.assert_allclose(stack[1], _brute_blocks(_scene()["backscatter"].values[1], 2, 2))


def test_dataset_values_coords_transform_and_labels():
    ds = _scene()
    out = multilook(ds, (2, 3))
    image = out["backscatter"]
    assert image.shape == (2, 3, 3) and image.dtype == np.float32
    for b in range(2):
        np.testing.assert_allclose(
            image.values[b], _brute_blocks(ds["backscatter"].values[b], 2, 3), rtol=1e-6
        )
    np.testing.assert_allclose(
        out["incidence_angle"],
        _brute_blocks(ds["incidence_angle"].values.astype(float), 2, 3),
        rtol=1e-6,
    )
    assert out.rio.transform() == Affine(30.0, 0.0, 500000.0, 0.0, -20.0, 7000000.0)
    assert out.rio.crs.to_epsg() == 32633
    np.testing.assert_allclose(out["x"], 500000.0 + 30.0 * (np.arange(3) + 0.5))
    np.testing.assert_allclose(out["y"], 7000000.0 - 20.0 * (np.arange(3) + 0.5))
    # Majority vote: block (0, 0) holds 3 ignore + 1 class 2 + 2 class 0 -> 0;
    # block (1, 0) ties 3 x class 3 and 3 x class 1 -> 1 (the smaller class).
    assert out["stage"].dtype == np.uint8
    np.testing.assert_array_equal(out["stage"].values, [[0, 2, 2], [1, 2, 2], [0, 2, 2]])
    assert image.attrs["multilook"] == [2, 3] and image.attrs["units"] == "linear"
    assert out.attrs == ds.attrs
    again = multilook(out, (1, 3))
    assert again["backscatter"].attrs["multilook"] == [2, 9]
    assert again.rio.transform().a == 90.0


def test_ignore_only_blocks_stay_ignored():
    ds = _scene()
    ds["stage"].values[:2, :3] = IGNORE_INDEX
    assert multilook(ds, (2, 3))["stage"].values[0, 0] == IGNORE_INDEX


def test_dataarray_and_radar_geometry_coords():
    ds = _scene().drop_vars("spatial_ref")
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    lat = np.linspace(70, 71, ny)[:, None] + np.zeros(nx)
    da = ds["backscatter"].drop_vars(["x", "y"]).assign_coords(latitude=(("y", "x"), lat))
    out = multilook(da, (2, 2))
    assert isinstance(out, xr.DataArray) and out.shape == (2, 3, 5)
    np.testing.assert_allclose(out["latitude"], _brute_blocks(lat, 2, 2))
    assert out.rio.crs is None


def test_multilook_raises_enl():
    rng = np.random.default_rng(1)
    ds = xr.Dataset(
        {
            "backscatter": xr.DataArray(
                rng.gamma(1.0, 1.0, (1, 200, 200)),
                dims=("band", "y", "x"),
                coords={"band": ["VV"]},
                attrs={"quantity": "intensity", "units": "linear", "polarization": "VV"},
            )
        }
    )
    looked = multilook(ds, (2, 3))
    assert estimate_enl(looked["backscatter"]).values[0] == pytest.approx(6.0, rel=0.06)


def test_refuses_db_and_bad_factors():
    ds = _scene()
    with pytest.raises(UnitsError, match="'dB'"):
        multilook(to_db(ds), 2)
    with pytest.raises(ValueError, match="positive integers"):
        multilook(ds, (0, 2))
    with pytest.raises(ValueError, match="smaller than one block"):
        multilook(ds, (8, 1))


def test_dask_backed():
    ds = _scene().chunk({"y": 4})
    out = multilook(ds, (2, 3))
    np.testing.assert_allclose(
        out["backscatter"].values, multilook(_scene(), (2, 3))["backscatter"].values, rtol=1e-6
    )
