"""Speckle filters against brute-force loops, constant images, ENL of simulated speckle."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from sarlab.errors import UnitsError
from sarlab.preprocess import (
    boxcar,
    enl_map,
    estimate_enl,
    estimate_enl_auto,
    gamma_map,
    lee,
    local_stats,
    refined_lee,
)

# ---------------------------------------------------------------- brute-force references


def _window(x: np.ndarray, i: int, j: int, r: int) -> np.ndarray:
    """Finite values of the (2r+1)^2 window around (i, j), truncated at the border."""
    w = x[max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1]
    return w[np.isfinite(w)]


def _brute(x: np.ndarray, size: int, pixel) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            if np.isfinite(x[i, j]):
                w = _window(x, i, j, size // 2)
                out[i, j] = pixel(x[i, j], w.mean(), w.var())
    return out


def _lee_pixel(looks: float):
    def pixel(z: float, m: float, v: float) -> float:
        var_x = max((v - m * m / looks) / (1 + 1 / looks), 0.0)
        b = var_x / v if v > 0 else 0.0
        return m + b * (z - m)

    return pixel


def _gamma_map_pixel(looks: float):
    def pixel(z: float, m: float, v: float) -> float:
        cu, ci = 1 / np.sqrt(looks), np.sqrt(v) / m
        if ci <= cu:
            return m
        if ci >= np.sqrt(2) * cu:
            return z
        a = (1 + cu**2) / (ci**2 - cu**2)
        b = a - looks - 1
        return (b * m + np.sqrt(m * m * b * b + 4 * a * looks * m * z)) / (2 * a)

    return pixel


def _brute_refined_lee(x: np.ndarray, looks: float) -> np.ndarray:
    """Refined Lee written out per pixel from its description (Lee et al. 1999)."""

    def at(i: int, j: int) -> float:
        inside = 0 <= i < x.shape[0] and 0 <= j < x.shape[1]
        return x[i, j] if inside else np.nan

    halves = {  # (direction, side) -> condition on the (row, column) offset
        0: lambda a, b: b <= 0,
        1: lambda a, b: b >= 0,
        2: lambda a, b: a <= 0,
        3: lambda a, b: a >= 0,
        4: lambda a, b: b >= a,
        5: lambda a, b: b <= a,
        6: lambda a, b: a + b <= 0,
        7: lambda a, b: a + b >= 0,
    }
    sides = [(3, 5), (1, 7), (2, 6), (0, 8)]
    out = np.full(x.shape, np.nan)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            if not np.isfinite(x[i, j]):
                continue
            m = []
            for di in (-2, 0, 2):
                for dj in (-2, 0, 2):
                    vals = [at(i + di + p, j + dj + q) for p in (-1, 0, 1) for q in (-1, 0, 1)]
                    vals = [v for v in vals if np.isfinite(v)]
                    m.append(sum(vals) / len(vals) if vals else np.nan)
            g = [m[4] if np.isnan(v) else v for v in m]
            grads = [
                abs((g[2] + g[5] + g[8]) - (g[0] + g[3] + g[6])),
                abs((g[6] + g[7] + g[8]) - (g[0] + g[1] + g[2])),
                abs((g[1] + g[2] + g[5]) - (g[3] + g[6] + g[7])),
                abs((g[0] + g[1] + g[3]) - (g[5] + g[7] + g[8])),
            ]
            d = int(np.argmax(grads))
            first, second = sides[d]
            dist = [abs(m[k] - m[4]) if np.isfinite(m[k]) else np.inf for k in (first, second)]
            keep = halves[2 * d + (0 if dist[0] <= dist[1] else 1)]
            vals = [
                at(i + a, j + b)
                for a in range(-3, 4)
                for b in range(-3, 4)
                if keep(a, b) and np.isfinite(at(i + a, j + b))
            ]
            out[i, j] = _lee_pixel(looks)(x[i, j], np.mean(vals), np.var(vals))
    return out


def _speckled(shape: tuple[int, int], looks: float, seed: int, nan_fraction: float = 0.1):
    """Two-level scene with a diagonal edge, Gamma speckle, NaNs; values on a 1/64 grid."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(shape)
    reflectivity = np.where(yy + 0.6 * xx > shape[0] * 0.8, 4.0, 1.0)
    x = reflectivity * rng.gamma(looks, 1 / looks, shape)
    x = (np.round(x * 64) + 1) / 64  # exactly representable sums keep edge decisions exact
    x[rng.random(shape) < nan_fraction] = np.nan
    return x


# ---------------------------------------------------------------- agreement with loops


@pytest.mark.parametrize("size", [1, 3, 5, 9])
def test_local_stats_match_loops(size):
    x = _speckled((13, 11), 2.0, seed=1)
    count, mean, var = local_stats(x, size)
    r = size // 2
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            w = _window(x, i, j, r)
            assert count[i, j] == w.size
            if w.size:
                assert mean[i, j] == pytest.approx(w.mean(), rel=1e-12)
                assert var[i, j] == pytest.approx(w.var(), rel=1e-9, abs=1e-12)
            else:
                assert np.isnan(mean[i, j])


@pytest.mark.parametrize("size", [3, 5, 7])
def test_boxcar_lee_gamma_map_match_loops(size):
    x = _speckled((14, 12), 3.0, seed=size)
    np.testing.assert_allclose(boxcar(x, size), _brute(x, size, lambda z, m, v: m), rtol=1e-12)
    np.testing.assert_allclose(
        lee(x, looks=3.0, size=size), _brute(x, size, _lee_pixel(3.0)), rtol=1e-10
    )
    np.testing.assert_allclose(
        gamma_map(x, looks=3.0, size=size), _brute(x, size, _gamma_map_pixel(3.0)), rtol=1e-10
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_refined_lee_matches_loops(seed):
    x = _speckled((16, 15), 1.0, seed=seed, nan_fraction=0.15)
    x[:4, :5] = np.nan  # a whole empty corner: sub-windows without valid pixels
    expected = _brute_refined_lee(x, 1.0)
    np.testing.assert_allclose(refined_lee(x, looks=1.0), expected, rtol=1e-10)


def test_filters_work_on_band_stacks_and_keep_nan():
    stack = np.stack([_speckled((12, 12), 2.0, seed=s) for s in (3, 4)])
    for f in (lambda a: lee(a, looks=2.0), lambda a: refined_lee(a, looks=2.0)):
        out = f(stack)
        assert out.shape == stack.shape
        np.testing.assert_allclose(out[1], f(stack[1]), rtol=1e-12)
        assert np.array_equal(np.isnan(out), np.isnan(stack))


# ---------------------------------------------------------------- O(1) windows


def test_window_cost_is_independent_of_size():
    """A 10001-pixel window: a kernel-based filter would need a 10^8-element kernel.

    With cumulative sums the result is the global statistic at every pixel, and
    the same for any window covering the image.
    """
    x = _speckled((25, 30), 2.0, seed=7)
    count, mean, var = local_stats(x, 10001)
    valid = x[np.isfinite(x)]
    assert np.all(count == valid.size)
    np.testing.assert_allclose(mean, valid.mean(), rtol=1e-12)
    np.testing.assert_allclose(var, valid.var(), rtol=1e-9)
    huge = lee(x, looks=2.0, size=10001)
    covering = lee(x, looks=2.0, size=2 * max(x.shape) + 1)
    np.testing.assert_allclose(huge, covering, rtol=1e-12)
    np.testing.assert_allclose(boxcar(x, 10001)[np.isfinite(x)], valid.mean(), rtol=1e-12)


# ---------------------------------------------------------------- constant images


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    size=st.sampled_from([1, 3, 5, 7, 11]),
    value=st.floats(1e-5, 1e4),
    looks=st.floats(0.5, 20),
    seed=st.integers(0, 1000),
)
def test_constant_images_stay_constant(h, w, size, value, looks, seed):
    x = np.full((h, w), value)
    x[np.random.default_rng(seed).random((h, w)) < 0.2] = np.nan
    valid = np.isfinite(x)
    for out in (
        boxcar(x, size),
        lee(x, looks=looks, size=size),
        gamma_map(x, looks=looks, size=size),
        refined_lee(x, looks=looks),
    ):
        np.testing.assert_allclose(out[valid], value, rtol=1e-9)
        assert np.isnan(out[~valid]).all()


# ---------------------------------------------------------------- ENL


@pytest.mark.parametrize("looks", [1.0, 4.4, 10.0])
def test_enl_of_gamma_speckle(looks):
    x = np.random.default_rng(0).gamma(looks, 1 / looks, (1000, 1000))
    assert estimate_enl(x) == pytest.approx(looks, rel=0.05)
    assert estimate_enl_auto(x) == pytest.approx(looks, rel=0.05)


@pytest.mark.parametrize("looks", [1.0, 4.4])
def test_auto_enl_finds_homogeneous_blocks_in_textured_scene(looks):
    rng = np.random.default_rng(1)
    reflectivity = np.ones((512, 512))
    reflectivity[:, :320] = rng.gamma(1.5, 1 / 1.5, (512, 320))  # K-distributed clutter
    x = reflectivity * rng.gamma(looks, 1 / looks, (512, 512))
    x[rng.random(x.shape) < 0.01] = np.nan
    assert estimate_enl(x[:, :320]) < 0.7 * looks  # the clutter alone is far from L looks
    assert estimate_enl_auto(x) == pytest.approx(looks, rel=0.08)


def test_estimate_enl_mask_selects_region():
    rng = np.random.default_rng(2)
    x = rng.gamma(4.0, 0.25, (300, 300))
    x[:, :150] *= rng.gamma(1.0, 1.0, (300, 150))
    mask = np.zeros(x.shape, bool)
    mask[:, 150:] = True
    assert estimate_enl(x, mask) == pytest.approx(4.0, rel=0.05)
    assert estimate_enl(x) < 2.0


@pytest.mark.parametrize("looks", [1.0, 4.4])
def test_filters_raise_enl_of_homogeneous_speckle(looks):
    x = np.random.default_rng(3).gamma(looks, 1 / looks, (128, 128))
    before = estimate_enl(x)
    filtered = {
        "boxcar": (boxcar(x, 5), 0.01),
        "lee": (lee(x, looks=looks), 0.01),
        # Choosing the half-window on the centre's side, and the MAP (not mean)
        # estimate, pull the mean down a little at few looks (about 1.5 % and 3.5 % at L=1).
        "refined_lee": (refined_lee(x, looks=looks), 0.03),
        "gamma_map": (gamma_map(x, looks=looks), 0.05),
    }
    for name, (out, bias) in filtered.items():
        assert estimate_enl(out) > 5 * before, name
        assert np.mean(out) == pytest.approx(x.mean(), rel=bias), name


def test_enl_map_is_local():
    rng = np.random.default_rng(4)
    x = rng.gamma(8.0, 1 / 8.0, (64, 64))
    x[:, 32:] *= 10.0
    m = enl_map(x, 7)
    assert np.median(m[:, :25]) == pytest.approx(8.0, rel=0.25)
    assert np.median(m[:, 29:35]) < 2.0  # windows straddling the step


# ---------------------------------------------------------------- xarray / dask / units


def _dataarray(values: np.ndarray, units: str = "linear", quantity: str = "sigma0") -> xr.DataArray:
    bands = ["VV", "VH"][: values.shape[0]]
    return xr.DataArray(
        values.astype(np.float32),
        dims=("band", "y", "x"),
        coords={
            "band": bands,
            "y": np.arange(values.shape[1]) * -10.0,
            "x": np.arange(values.shape[2]) * 10.0,
        },
        attrs={"quantity": quantity, "units": units, "polarization": ",".join(bands)},
    )


def test_xarray_wrappers_keep_attrs_coords_and_match_numpy():
    values = np.stack([_speckled((20, 24), 2.0, seed=s) for s in (5, 6)])
    da = _dataarray(values)
    out = lee(da, looks=2.0, size=5)
    assert out.dtype == np.float32
    assert out.attrs["units"] == "linear" and out.attrs["speckle_filter"] == "lee(size=5, looks=2)"
    xr.testing.assert_equal(out.coords.to_dataset(), da.coords.to_dataset())
    np.testing.assert_allclose(
        out.values, lee(values.astype(np.float32), looks=2.0, size=5), rtol=1e-6
    )
    ds = xr.Dataset({"backscatter": da})
    assert "boxcar(size=3)" in boxcar(ds, 3)["backscatter"].attrs["speckle_filter"]


@pytest.mark.parametrize(
    "apply",
    [
        lambda a: boxcar(a, 5),
        lambda a: lee(a, looks=2.0, size=7),
        lambda a: gamma_map(a, looks=2.0, size=5),
        lambda a: refined_lee(a, looks=2.0),
    ],
)
def test_dask_chunks_match_numpy(apply):
    values = np.stack([_speckled((40, 36), 2.0, seed=s) for s in (8, 9)])
    da = _dataarray(values)
    lazy = apply(da.chunk({"band": 1, "y": 13, "x": 11}))
    assert lazy.chunks is not None
    np.testing.assert_allclose(lazy.compute().values, apply(da).values, rtol=1e-6)


def test_filters_refuse_db_amplitude_and_unlabelled_arrays():
    values = np.ones((1, 8, 8))
    with pytest.raises(UnitsError, match="'dB'"):
        lee(_dataarray(values, units="dB"), looks=1.0)
    with pytest.raises(UnitsError, match="amplitude"):
        refined_lee(_dataarray(values, quantity="amplitude"), looks=1.0)
    with pytest.raises(UnitsError, match="lacks a 'units'"):
        boxcar(xr.DataArray(values[0], dims=("y", "x")))
    with pytest.raises(UnitsError):
        estimate_enl(_dataarray(values, units="dB"))
    with pytest.raises(ValueError, match="odd"):
        boxcar(values[0], 4)
    with pytest.raises(ValueError, match="looks"):
        lee(values[0], looks=0.0)


def test_estimate_enl_per_band():
    rng = np.random.default_rng(5)
    values = np.stack([rng.gamma(L, 1 / L, (200, 200)) for L in (2.0, 6.0)])
    enl = estimate_enl(_dataarray(values))
    assert list(enl["band"].values) == ["VV", "VH"]
    np.testing.assert_allclose(enl.values, [2.0, 6.0], rtol=0.05)
    auto = estimate_enl_auto(_dataarray(values))
    np.testing.assert_allclose(auto.values, [2.0, 6.0], rtol=0.08)


def test_real_sentinel1_speckle_is_reduced(shared_data):
    """Real ~1-look Sentinel-1 pixels of an urban scene, where texture dominates."""
    cov = np.load(shared_data / "s1_speckle" / "shanghai_sentinel1_c64.npy")
    intensity = cov[..., 0, 0].real.astype(np.float64)
    before = np.nanmedian(enl_map(intensity, 9))
    assert 0.2 < before < 1.5  # texture: below the nominal ~1.2 looks almost everywhere
    for out in (boxcar(intensity, 5), lee(intensity, looks=1.0), refined_lee(intensity, looks=1.0)):
        assert np.nanmedian(enl_map(out, 9)) > 4 * before
    # Gamma MAP keeps pixels whose window varies more than sqrt(2) x speckle: most of this scene.
    assert np.nanmedian(enl_map(gamma_map(intensity, looks=1.0), 9)) > before
