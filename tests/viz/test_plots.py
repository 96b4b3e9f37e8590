"""Teaching plots: the numbers behind them, not just that they draw."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pytest
from scipy import special

from sarlab.viz.plots import db_histogram, filter_comparison, image, intensity_histogram


def _speckle(looks: float, shape=(256, 256), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.gamma(looks, 1.0 / looks, size=shape).astype(np.float32)


def test_intensity_histogram_follows_the_gamma_density_of_the_given_looks() -> None:
    overlay = intensity_histogram(_speckle(4.0, (512, 512)), looks=4.0)
    histogram = next(e for e in overlay if isinstance(e, hv.Histogram))
    curve = next(e for e in overlay if isinstance(e, hv.Curve))
    density = histogram.dimension_values("density")
    pdf = curve.dimension_values("density")
    assert np.abs(density - pdf).max() < 0.08
    width = np.diff(histogram.edges)
    assert 0.97 < float((density * width).sum()) <= 1.0 + 1e-9


def test_db_histogram_marks_the_log_bias_of_speckle() -> None:
    looks = 1.0
    overlay = db_histogram(_speckle(looks, (512, 512)), looks=looks)
    marked = next(e for e in overlay if isinstance(e, hv.VLine)).data
    expected = -10 / np.log(10) * (np.log(looks) - special.digamma(looks))
    assert marked == pytest.approx(expected)
    assert expected == pytest.approx(-2.507, abs=1e-3)  # the textbook 2.5 dB for one look


def test_filter_comparison_raises_enl_and_keeps_the_mean() -> None:
    intensity = _speckle(1.0, (96, 96), seed=1)
    holomap, table = filter_comparison(intensity, sizes=[3, 7], looks=1.0)
    assert list(holomap.keys()) == [3, 7]
    none = table.set_index("filter").loc["none", "ENL"]
    assert none == pytest.approx(1.0, rel=0.15)
    box = table[(table["filter"] == "boxcar")].set_index("window")
    assert box.loc[7, "ENL"] > box.loc[3, "ENL"] > 3 * none
    assert box["mean / original mean"].to_numpy() == pytest.approx(1.0, abs=0.02)
    assert set(table["filter"]) == {"boxcar", "lee", "refined_lee", "gamma_map", "none"}


def test_image_block_averages_large_rasters_for_the_browser() -> None:
    data = np.arange(1024 * 512, dtype=np.float32).reshape(1024, 512)
    view = image(data, "big", max_pixels=256)
    assert isinstance(view, hv.Image)
    values = view.dimension_values(2, flat=False)
    assert values.shape == (256, 128)
    assert values.mean() == pytest.approx(data.mean(), rel=1e-4)


def test_image_shows_row_zero_at_the_top() -> None:
    """Rasters keep their orientation: the first row (north in a north-up grid) on top."""
    data = np.zeros((4, 6), np.float32)
    data[0, 0] = 1.0
    view = image(data, "orientation")
    assert view[0.5, 3.5] == 1.0 and view[0.5, 0.5] == 0.0
