"""Teaching views of the sea-ice simulator: scenes, incidence slopes, the noise floor, knobs.

Each view answers one question of the primer (notebooks/00_sar_primer.ipynb): what does
a scene and its ice chart look like, which dB-per-degree slope does each surface have,
where does cross-pol meet the thermal-noise floor, and what do ENL, wind, noise floor
and incidence angle do to an image. The widget explorer needs a kernel; its static twin
(:func:`simulator_holomap`) keeps a slider in exported HTML reports.
"""

from __future__ import annotations

from collections.abc import Sequence

import holoviews as hv
import ipywidgets as widgets
import numpy as np
import pandas as pd
import xarray as xr

from sarlab.conventions import IGNORE_INDEX, IMAGE_VAR, INCIDENCE_VAR
from sarlab.preprocess import fit_incidence_slope
from sarlab.simulate.radiometry import SURFACE_CLASSES
from sarlab.simulate.sea_ice import remove_noise, sea_ice_scene
from sarlab.viz.plots import image, incidence_dependence
from sarlab.viz.widgets import live_controls

__all__ = [
    "SURFACE_NAMES",
    "noise_floor_profile",
    "scene_views",
    "simulator_explorer",
    "simulator_holomap",
    "slope_table",
    "surface_incidence_plot",
]

SURFACE_NAMES = {c.code: c.name.replace("_", " ") for c in SURFACE_CLASSES}
_CHART_CLIM = {"SIC": (0, 10), "SOD": (0, 5), "FLOE": (0, 6)}


def _chart(ds: xr.Dataset, name: str) -> hv.Image:
    values = np.asarray(ds[name].values, dtype=np.float32)
    values[values == IGNORE_INDEX] = np.nan  # land and unlabelled pixels stay blank
    return image(values, f"{name} (AutoICE code)", clim=_CHART_CLIM[name], cmap="viridis")


def scene_views(ds: xr.Dataset, charts: Sequence[str] = ("SIC", "SOD")) -> hv.Layout:
    """HH and HV in dB, the incidence angle and the ice charts of one scene, side by side."""
    db = ds[IMAGE_VAR]
    panels = [
        image(db.sel(band=b), f"{b} sigma0 (dB)", clim=(-32.0, -5.0)) for b in db["band"].values
    ]
    panels.append(image(ds[INCIDENCE_VAR], "incidence angle (deg)", cmap="plasma"))
    panels += [_chart(ds, name) for name in charts if name in ds]
    return hv.Layout(panels).cols(3)


def _configured_slope(code: int, band: str) -> float:
    surface = next(c for c in SURFACE_CLASSES if c.code == code)
    return float(surface.hh_slope if band == "HH" else surface.hv_slope)


def slope_table(ds: xr.Dataset, min_pixels: int = 2000) -> pd.DataFrame:
    """Configured against fitted dB-per-degree slopes, per surface class and band.

    Fitted twice: on the product as delivered (noise included) and after thermal-noise
    removal, so the table shows where the noise floor flattens the cross-pol slope.
    Open water has no single slope (its GMF depends on the wind too) and is left out.
    """
    classes = ds["surface"].where(ds["surface"] != 0, IGNORE_INDEX).astype(np.uint8)
    fitted = fit_incidence_slope(ds, classes=classes.values, min_pixels=min_pixels)
    cleaned = fit_incidence_slope(remove_noise(ds), classes=classes.values, min_pixels=min_pixels)
    rows = []
    for band, per_class in fitted.items():
        for code, slope in sorted(per_class.items()):
            rows.append(
                {
                    "surface": SURFACE_NAMES[int(code)],
                    "band": band,
                    "configured (dB/deg)": _configured_slope(int(code), band),
                    "fitted (dB/deg)": slope,
                    "fitted, noise removed": cleaned[band].get(code, np.nan),
                    "pixels": int((classes.values == code).sum()),
                }
            )
    return pd.DataFrame(rows)


def surface_incidence_plot(ds: xr.Dataset, band: str = "HH", max_points: int = 3000) -> hv.Overlay:
    """Backscatter against incidence per surface class, with fitted lines (no open water)."""
    surface = np.asarray(ds["surface"].values)
    classes = np.where(surface == 0, -1, surface)  # open water's GMF is not a straight line
    return incidence_dependence(
        ds[IMAGE_VAR].sel(band=band).values,
        np.asarray(ds[INCIDENCE_VAR].values),
        classes,
        {**SURFACE_NAMES, -1: "open water (wind GMF)"},
        max_points=max_points,
    ).opts(title=f"{band}: sigma0 against incidence angle")


def noise_floor_profile(ds: xr.Dataset, band: str = "HV") -> hv.Overlay:
    """Mean open-water sigma0 across the swath, before and after noise removal, with the NESZ.

    Over calm water cross-pol is weaker than the sensor's thermal noise: the measured
    curve follows the NESZ (with its sub-swath steps) instead of the sea surface.
    """
    water = np.asarray(ds["surface"].values) == 0
    if water.sum() < 100:
        raise ValueError(f"{ds.attrs.get('scene_id', 'scene')} has too little open water")
    incidence = np.asarray(ds[INCIDENCE_VAR].values)[0]

    measured = 10 ** (np.asarray(ds[IMAGE_VAR].sel(band=band).values, np.float64) / 10)
    cleaned = 10 ** (np.asarray(remove_noise(ds)[IMAGE_VAR].sel(band=band).values) / 10)
    nesz = np.asarray(ds["nesz"].sel(band=band).values, np.float64)
    curves = {
        "measured (noise included)": _column_mean_db(measured, water),
        "after noise removal": _column_mean_db(cleaned, water),
        "NESZ (noise floor)": 10 * np.log10(nesz.mean(axis=0)),
    }
    dims = ("incidence angle (deg)", f"{band} open water (dB)")
    overlay = hv.Overlay([hv.Curve((incidence, v), *dims, label=k) for k, v in curves.items()])
    return overlay.opts(width=640, height=340, legend_position="bottom_left")


def _column_mean_db(linear: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Mean over rows (in linear units, then dB) of the pixels in ``where``; NaN if none."""
    counts = where.sum(axis=0)
    sums = np.where(where, linear, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, 10 * np.log10(sums / np.maximum(counts, 1)), np.nan)


def _render(seed: int, size: int, enl: float, wind: float, floor: float, near: float) -> hv.Layout:
    scene = sea_ice_scene(
        seed,
        size=size,
        enl=enl,
        wind_speed=wind,
        noise_floor_db=floor,
        incidence_range=(near, near + 28.0),
    )
    db = scene[IMAGE_VAR]
    return hv.Layout(
        [image(db.sel(band=b), f"{b} (dB)", clim=(-32.0, -5.0)) for b in ("HH", "HV")]
    ).cols(2)


def simulator_explorer(seed: int = 0, size: int = 256) -> widgets.VBox:
    """Sliders for ENL, wind speed, noise floor and near-range incidence (JupyterLab)."""
    style = {"description_width": "initial"}
    controls = {
        "enl": widgets.FloatLogSlider(value=10.7, base=10, min=0, max=2, description="ENL"),
        "wind": widgets.FloatSlider(value=8.0, min=1.0, max=20.0, description="wind (m/s)"),
        "floor": widgets.FloatSlider(
            value=-26.0, min=-35.0, max=-18.0, description="noise floor (dB)", style=style
        ),
        "near": widgets.FloatSlider(
            value=19.0, min=15.0, max=30.0, description="near incidence (deg)", style=style
        ),
    }
    for control in controls.values():
        control.continuous_update = False

    def render(enl: float, wind: float, floor: float, near: float) -> hv.Layout:
        return _render(seed, size, enl, wind, floor, near)

    return live_controls(render, controls)


def simulator_holomap(
    seed: int = 0,
    size: int = 192,
    enls: Sequence[float] = (1.0, 4.4, 10.7),
    noise_floors: Sequence[float] = (-32.0, -26.0, -20.0),
    wind: float = 8.0,
    near: float = 19.0,
) -> hv.Layout:
    """The explorer's static twin: HH/HV for a grid of ENL and noise floor (works offline).

    Returns the HoloMap collated into a Layout of one HoloMap per panel, which bokeh
    shows as two images under one pair of sliders.
    """
    frames = {
        (float(enl), float(floor)): _render(seed, size, enl, wind, floor, near)
        for enl in enls
        for floor in noise_floors
    }
    return hv.HoloMap(frames, kdims=["ENL", "noise floor (dB)"]).collate()
