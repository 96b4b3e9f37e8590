"""Pixel-level sea-ice surface inside the chart polygons, plus the fixed coast.

The chart polygons and their attributes come from :mod:`sarlab.simulate.icechart`;
here each point gets its surface class:

* floes: jittered Voronoi cells of the polygon's floe size (WMO: cake < 20 m, small
  20-100 m, medium 100-500 m, big 0.5-2 km, vast 2-10 km; never below 1.5 pixels).
  Resolved floes lose water to the leads between them (narrow in the pack, wide at low
  SIC); unresolved ones are ice or water floe by floe with probability SIC/10. Either
  way a polygon's ice fraction follows its SIC. Where SIC is 10 the leads are refrozen
  (new ice).
* stages: the polygon's dominant stage, with patches (at most 1.2 km) of a secondary
  one; first-year ice carries ridges (elongated lines) and rubble fields, which turn it
  into deformed FYI; pack ice (SIC >= 8) is cut by long leads, most refrozen.
* per-floe sigma0 offsets (0.5 dB spread): floes of one class differ a little.
* the coast: land and fast ice are fixed in the image frame (SIC 10, SOD thick FYI, FLOE
  vast for fast ice; labels 255 on land). Ice that drifted in from where the coast is
  would be open water: a coastal polynya.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, special

from sarlab.simulate.icechart import (
    DEFORMED_FYI,
    FLOE_SIZE_M,
    LAND,
    NEW_ICE,
    OPEN_WATER,
    THICK_FYI,
    THIN_FYI,
    IceState,
    polygons,
)
from sarlab.simulate.texture import SmoothField, cell_uniform, cells, gap_quantile

__all__ = ["compose", "distance_km", "distance_zones", "surface_fields"]

_GAP = {1: 0.0, 2: 0.0, 3: 0.10, 4: 0.08, 5: 0.05}  # least lead area between floes
_FLOE_JITTER_DB = 0.5  # floe-to-floe spread of sigma0
_PATCH_M = 1200.0  # largest patch of one stage inside a polygon of another
_ZONE_KM = 0.5 * 2.0 ** np.arange(9)  # AI4Arctic distance-to-land zones: 0.5, 1, 2, ... 128 km


def surface_fields(state: IceState, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The ice surface at map points (x, y) in the frame of the *drifting* ice.

    Returns ``surface`` (class codes, no land), ``SIC``/``SOD``/``FLOE`` (AutoICE codes),
    ``offset_db`` (per-floe sigma0 offset) and ``polygon`` (chart polygon index).
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    poly, attrs = polygons(state, x, y)
    sic = attrs["sic"][poly]
    out = {"SIC": sic, "SOD": attrs["sod"][poly], "FLOE": attrs["floe"][poly]}
    out["polygon"] = attrs["id"][poly]
    surface = np.zeros(x.shape, np.uint8)
    offset = np.zeros(x.shape, np.float32)
    for code, size in FLOE_SIZE_M.items():
        here = (out["FLOE"] == code) & (sic > 0)
        if not here.any():
            continue
        scale = max(size, 1.5 * state.pixel_m)
        ci, cj, gap = cells(x[here], y[here], scale, state.key("floe", code))
        frac = sic[here] / 10.0
        # resolved floes (> 2 px) lose their water to the leads between them, narrow at
        # high SIC, wide at low; unresolved ones are ice or water floe by floe
        if scale > 2 * state.pixel_m:
            lead_area = np.where(frac < 1.0, np.maximum(_GAP[code], 1.0 - frac), _GAP[code])
        else:
            lead_area = np.zeros_like(frac)
        is_ice = cell_uniform(ci, cj, state.key("ice", code)) < np.minimum(
            1.0, frac / (1.0 - lead_area)
        )
        in_gap = gap < _gap_threshold(lead_area)
        p = poly[here]
        # the secondary stage comes in patches no bigger than big floes, so a vast-floe
        # polygon is not decided by two or three floes
        patch = (
            (ci, cj)
            if scale <= _PATCH_M
            else cells(x[here], y[here], _PATCH_M, state.key("patch"))[:2]
        )
        second = cell_uniform(*patch, state.key("stage", code)) < attrs["secondary_fraction"][p]
        stage = np.where(second, attrs["secondary"][p], attrs["sod"][p])
        stage = np.where(is_ice & ~in_gap, stage, np.where(frac >= 1.0, NEW_ICE, OPEN_WATER))
        jitter = special.ndtri(
            np.clip(cell_uniform(ci, cj, state.key("jit", code)), 1e-9, 1 - 1e-9)
        )
        surface[here] = stage
        offset[here] = np.where(stage > 0, _FLOE_JITTER_DB * jitter, 0.0)
    _deform(state, x, y, surface, attrs["deformed"][poly])
    _leads(state, x, y, surface, sic)
    out["surface"] = surface
    out["offset_db"] = offset
    return out


def _gap_threshold(area: np.ndarray) -> np.ndarray:
    """Per point, the cell gap below which ``area`` of a cell's surface lies."""
    values, inverse = np.unique(area, return_inverse=True)
    return np.array([gap_quantile(float(v)) for v in values])[inverse.reshape(area.shape)]


def _rotated(x, y, angle: float, stretch: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates along ``angle`` shrunk by ``stretch``: fields become elongated along it."""
    c, s = np.cos(angle), np.sin(angle)
    return (x * c + y * s) / stretch, -x * s + y * c


def _deform(state, x, y, surface: np.ndarray, fraction: np.ndarray) -> None:
    """Ridges (thin lines across the floes) and rubble fields turn level FYI into deformed."""
    fyi = (surface == THIN_FYI) | (surface == THICK_FYI)
    if not fyi.any():
        return
    u, v = _rotated(x[fyi], y[fyi], state.ridge_angle, 3.0)
    ridge = np.abs(SmoothField(state.key("ridge"), 700.0)(u, v))
    rubble = SmoothField(state.key("rubble"), 5000.0)(x[fyi], y[fyi])
    f = fraction[fyi]
    deformed = (ridge < special.ndtri((1 + 0.5 * f) / 2)) | (rubble > special.ndtri(1 - 0.5 * f))
    surface[fyi] = np.where(deformed, DEFORMED_FYI, surface[fyi])


def _leads(state, x, y, surface: np.ndarray, sic: np.ndarray) -> None:
    """Long leads through the pack (SIC >= 8): mostly refrozen (new ice), some open."""
    pack = (sic >= 8) & (surface > 0)
    if not pack.any():
        return
    u, v = _rotated(x[pack], y[pack], state.lead_angle, 3.0)
    lead = np.abs(SmoothField(state.key("lead"), 15e3)(u, v)) < 0.015
    is_open = SmoothField(state.key("lead-open"), 20e3)(x[pack], y[pack]) > 0.6
    surface[pack] = np.where(lead, np.where(is_open, OPEN_WATER, NEW_ICE), surface[pack])


def distance_km(land: np.ndarray, pixel_m: float) -> np.ndarray:
    """Distance to the nearest land pixel in km (1000 km where the scene has no land)."""
    if not land.any():
        return np.full(land.shape, 1e3, np.float32)
    return (ndimage.distance_transform_edt(~land) * pixel_m / 1000.0).astype(np.float32)


def distance_zones(km: np.ndarray, land: np.ndarray) -> np.ndarray:
    """AI4Arctic distance-to-land zone ids: 0 land, 1 (< 0.5 km), 2 (0.5-1 km) ... 10 (>128)."""
    zones = 1 + np.searchsorted(_ZONE_KM, km, side="right")
    return np.where(land, 0, zones).astype(np.float32)


def compose(
    state: IceState,
    x: np.ndarray,
    y: np.ndarray,
    ice_x: np.ndarray | None = None,
    ice_y: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The whole surface at image points (x, y): drifting ice, then fast ice and land.

    ``ice_x``/``ice_y`` say where the ice now at (x, y) was when the scene was drawn
    (None: not moved). Ice cannot come from the coast: such points become open water.
    """
    land, fast = state.fixed(x, y)
    moved = ice_x is not None and ice_y is not None
    out = surface_fields(state, ice_x if moved else x, ice_y if moved else y)
    if moved:
        was_land, was_fast = state.fixed(ice_x, ice_y)
        gone = was_land | was_fast
        for name in ("SIC", "SOD", "FLOE", "surface"):
            out[name][gone] = 0
        out["offset_db"][gone] = 0.0
        out["polygon"][gone] = -1
    for name, value in (("surface", THICK_FYI), ("SIC", 10), ("SOD", 4), ("FLOE", 5)):
        out[name][fast] = value
    for name, value in (("surface", LAND), ("SIC", 255), ("SOD", 255), ("FLOE", 255)):
        out[name][land] = value
    out["offset_db"][fast | land] = 0.0
    out["polygon"][fast | land] = -1
    out["land"] = land
    return out
