"""BandStats: streaming equals one-shot numpy, JSON round trip, (de)normalisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from sarlab.errors import UnitsError
from sarlab.preprocess import BandStats, compute_band_stats


def _db_samples(seed: int = 0, n: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    chunks = []
    for i in range(n):
        c = np.stack(
            [rng.normal(-15.0 + i, 3.0, (20, 17)), rng.normal(-24.0, 2.0 + 0.2 * i, (20, 17))]
        )
        c[rng.random(c.shape) < 0.1] = np.nan
        c[0, 0, :3] = [np.inf, -np.inf, np.nan]
        chunks.append(c.astype(np.float32))
    return chunks


def _numpy_reference(chunks: list[np.ndarray]) -> dict[str, np.ndarray]:
    x = np.concatenate([c.reshape(2, -1) for c in chunks], axis=1).astype(np.float64)
    x[~np.isfinite(x)] = np.nan
    return {
        "mean": np.nanmean(x, axis=1),
        "std": np.nanstd(x, axis=1),
        "median": np.nanmedian(x, axis=1),
        "p01": np.nanpercentile(x, 1, axis=1),
        "p99": np.nanpercentile(x, 99, axis=1),
        "count": np.isfinite(x).sum(axis=1),
    }


def test_streaming_equals_one_shot_numpy():
    chunks = _db_samples()
    ref = _numpy_reference(chunks)
    streamed = compute_band_stats(iter(chunks), ["VV", "VH"], "dB", progress=False)
    one_shot = compute_band_stats(np.concatenate(chunks, axis=2), ["VV", "VH"], "dB")
    for stats in (streamed, one_shot):
        assert stats.count == ref["count"].tolist()
        for name in ("mean", "std", "median", "p01", "p99"):
            np.testing.assert_allclose(getattr(stats, name), ref[name], rtol=1e-12, err_msg=name)


def test_small_reservoir_is_uniform_deterministic_and_close():
    chunks = _db_samples(seed=1, n=30)
    ref = _numpy_reference(chunks)
    a = compute_band_stats(chunks, ["VV", "VH"], "dB", max_samples=2000, progress=False)
    b = compute_band_stats(chunks, ["VV", "VH"], "dB", max_samples=2000, progress=False)
    assert a == b
    np.testing.assert_allclose(a.mean, ref["mean"], rtol=1e-12)  # still exact
    values = np.concatenate([c.reshape(2, -1) for c in chunks], axis=1)
    for b in range(2):
        finite = values[b][np.isfinite(values[b])]
        for name, q, tol in (("p01", 0.01, 0.007), ("median", 0.5, 0.035), ("p99", 0.99, 0.007)):
            rank = np.mean(finite < getattr(a, name)[b])  # the estimate's true quantile
            assert rank == pytest.approx(q, abs=tol), (b, name)


def test_reservoir_keeps_late_values():
    """A stream 0..N-1: a uniform sample has median near N/2 (an early-biased one would not)."""
    stream = (np.arange(i, i + 1000, dtype=float)[None] for i in range(0, 100_000, 1000))
    stats = compute_band_stats(stream, ["HH"], "dB", max_samples=5000, progress=False)
    assert stats.median[0] == pytest.approx(50_000, rel=0.03)
    assert stats.p99[0] == pytest.approx(99_000, rel=0.01)
    assert stats.mean[0] == pytest.approx(49_999.5, rel=1e-12)


def test_dict_round_trip_is_json_safe():
    stats = compute_band_stats(_db_samples(), ["VV", "VH"], "dB", progress=False)
    restored = BandStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert restored == stats
    assert isinstance(restored.count[0], int) and isinstance(restored.mean[0], float)
    with pytest.raises(ValueError, match="unknown"):
        BandStats.from_dict({**stats.to_dict(), "extra": 1})
    with pytest.raises(ValueError, match="values for 2 bands"):
        BandStats.from_dict({**stats.to_dict(), "mean": [0.0]})
    with pytest.raises(UnitsError):
        BandStats.from_dict({**stats.to_dict(), "units": "dBm"})


def _stats() -> BandStats:
    return BandStats(
        bands=["VV", "VH"],
        units="dB",
        mean=[-15.0, -25.0],
        std=[2.0, 4.0],
        median=[-15.0, -25.0],
        p01=[-20.0, -35.0],
        p99=[-10.0, -15.0],
        count=[10, 10],
    )


def test_normalize_clips_then_standardises():
    x = np.array([[[-15.0, -13.0, -40.0, 0.0]], [[-25.0, -21.0, -40.0, np.nan]]])  # (2, 1, 4)
    out = _stats().normalize(x)
    np.testing.assert_allclose(out[0, 0], [0.0, 1.0, -2.5, 2.5])  # -40 -> p01 = -20; 0 -> p99
    np.testing.assert_allclose(out[1, 0, :3], [0.0, 1.0, -2.5])
    assert np.isnan(out[1, 0, 3])
    np.testing.assert_allclose(_stats().normalize(x, clip=False)[0, 0, 2], -12.5)
    back = _stats().denormalize(out)
    np.testing.assert_allclose(back[0, 0], [-15.0, -13.0, -20.0, -10.0])


def test_normalize_band_axis_and_torch_match_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(-20, 5, (3, 4, 5, 2)).astype(np.float32)  # bands last
    stats = _stats()
    out = stats.normalize(x, band_axis=-1)
    assert out.dtype == np.float32
    np.testing.assert_allclose(
        out, np.moveaxis(stats.normalize(np.moveaxis(x, -1, 0)), 0, -1), rtol=1e-6
    )
    t = torch.from_numpy(x)
    out_t = stats.normalize(t, band_axis=3)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.numpy(), out, rtol=1e-6)
    np.testing.assert_allclose(
        stats.denormalize(stats.normalize(t, 3, clip=False), 3).numpy(), x, rtol=1e-5
    )
    with pytest.raises(ValueError, match="should hold 2 bands"):
        stats.normalize(x, band_axis=0)


def test_subset_reorders():
    sub = _stats().subset(["VH", "VV"])
    assert sub.bands == ["VH", "VV"] and sub.mean == [-25.0, -15.0]
    with pytest.raises(ValueError, match="HH"):
        _stats().subset(["HH"])


def test_xarray_units_checked_and_empty_band_refused():
    da = xr.DataArray(np.ones((1, 3, 3)), dims=("band", "y", "x"), attrs={"units": "linear"})
    with pytest.raises(UnitsError, match="'linear'"):
        compute_band_stats(da, ["VV"], "dB")
    x = np.stack([np.arange(9.0).reshape(3, 3), np.full((3, 3), np.nan)])
    with pytest.raises(ValueError, match="VH"):
        compute_band_stats(x, ["VV", "VH"], "dB")
    with pytest.raises(ValueError, match="expected 3"):
        compute_band_stats(x, ["VV"] * 3, "dB")
