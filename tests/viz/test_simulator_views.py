"""The primer's simulator views: slope table, noise-floor profile, explorer and its twin."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pytest

from sarlab.simulate import sea_ice_scene
from sarlab.simulate.radiometry import SURFACE_CLASSES
from sarlab.viz.simulator import (
    noise_floor_profile,
    scene_views,
    simulator_explorer,
    simulator_holomap,
    slope_table,
)


@pytest.fixture(scope="module")
def scene():
    return sea_ice_scene(0, size=384, wind_speed=2.0)


def test_slope_table_compares_configured_and_fitted_slopes(scene):
    table = slope_table(scene, min_pixels=500)
    assert set(table["band"]) == {"HH", "HV"} and "open water" not in set(table["surface"])
    land = table[(table["surface"] == "land") & (table["band"] == "HH")].iloc[0]
    configured = next(c.hh_slope for c in SURFACE_CLASSES if c.name == "land")
    assert land["configured (dB/deg)"] == configured
    # land is bright, far above the noise floor: its slope is recovered closely
    assert land["fitted, noise removed"] == pytest.approx(configured, abs=0.03)


def test_calm_water_hv_follows_the_noise_floor_until_noise_removal(scene):
    curves = {c.label: np.asarray(c.dimension_values(1)) for c in noise_floor_profile(scene)}
    measured = curves["measured (noise included)"]
    nesz = curves["NESZ (noise floor)"]
    cleaned = curves["after noise removal"]
    ok = np.isfinite(measured) & np.isfinite(cleaned)
    assert ok.sum() > 50
    assert np.nanmedian(np.abs(measured[ok] - nesz[ok])) < 1.0  # 2 m/s water hides in noise
    assert np.nanmedian(nesz[ok] - cleaned[ok]) > 3.0


def test_scene_views_and_the_static_twin_of_the_explorer(scene):
    assert len(scene_views(scene)) == 5  # HH, HV, incidence, SIC, SOD
    frames = simulator_holomap(seed=1, size=48, enls=(1.0, 10.0), noise_floors=(-30.0, -20.0))
    assert isinstance(frames, hv.Layout) and len(frames) == 2  # HH and HV
    for panel in frames:
        assert isinstance(panel, hv.HoloMap)
        assert set(panel.keys()) == {(1.0, -30.0), (1.0, -20.0), (10.0, -30.0), (10.0, -20.0)}


def test_explorer_redraws_when_a_slider_moves(monkeypatch):
    import sarlab.viz.simulator as views

    calls = []

    def recording_scene(seed, **settings):
        calls.append(settings)
        return sea_ice_scene(seed, **settings)

    monkeypatch.setattr(views, "sea_ice_scene", recording_scene)
    box = simulator_explorer(seed=2, size=32)
    sliders, output = box.children
    assert len(output.outputs) == 1 and calls[-1]["enl"] == 10.7
    sliders.children[0].value = 2.0  # ENL
    sliders.children[2].value = -30.0  # noise floor
    assert len(output.outputs) == 1 and len(calls) == 3
    assert calls[-1]["enl"] == 2.0 and calls[-1]["noise_floor_db"] == -30.0
