"""Simulated Sentinel-1 EW GRDM HH/HV sea-ice scenes with AutoICE ice charts.

:func:`sea_ice_scene` draws a surface from the seed (:mod:`sarlab.simulate.icechart`),
places it on an EPSG:3413 grid in an Arctic sea (:mod:`sarlab.simulate.geometry`),
computes the HH/HV reflectivity of every pixel (:mod:`sarlab.simulate.radiometry`,
open water from the wind GMFs of :mod:`sarlab.simulate.gmf`) and measures it as the
instrument does: K-distributed texture, thermal noise with sub-swath steps and azimuth
scalloping, Gamma speckle. The result is in the convention of
:func:`sarlab.io.ai4arctic.open_ai4arctic` and can be written with
:func:`sarlab.io.ai4arctic.write_ai4arctic`. :func:`repeat_pass` observes the same ice
days later, drifted and rotated, under a new wind; :func:`remove_noise` subtracts the
recorded noise as a thermal-noise correction would.

The surface comes from a counter-based hash of (seed, field name, lattice index), the
acquisition (wind, noise bursts, texture, speckle) from numpy ``Generator(PCG64)``
streams keyed by the seed and the repeat seed: the same arguments give the same arrays,
bit for bit, and the written files are byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import xarray as xr

from sarlab.conventions import IMAGE_VAR
from sarlab.simulate import gmf
from sarlab.simulate.floes import compose, distance_km, distance_zones
from sarlab.simulate.geometry import REGIONS, Grid, Region, make_grid, nesz_db
from sarlab.simulate.icechart import IceState, make_state
from sarlab.simulate.product import add_diagnostics, to_dataset
from sarlab.simulate.radiometry import reflectivity, render_intensity
from sarlab.simulate.texture import key_of

__all__ = ["DEFAULT_ENL", "DEFAULT_NOISE_FLOOR_DB", "remove_noise", "repeat_pass", "sea_ice_scene"]

DEFAULT_ENL = 10.7  # EW GRD medium resolution (ESA)
DEFAULT_NOISE_FLOOR_DB = -26.0  # NESZ at the centre of the quietest sub-swath
SIMULATOR = "sarlab.simulate.sea_ice"


@dataclass(frozen=True)
class _Pass:
    """One acquisition of a scene's surface: when, how the ice moved, what to return."""

    when: datetime
    attrs: dict
    rng: np.random.Generator
    wind_speed: float | None
    wind_direction: float | None
    keep: bool
    noise_removed: bool
    ice_xy: tuple[np.ndarray, np.ndarray] | None = None


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    shape = (int(size), int(size)) if np.ndim(size) == 0 else tuple(int(s) for s in size)
    if len(shape) != 2 or min(shape) < 8:
        raise ValueError(f"size must be an int or (ny, nx) of at least 8 pixels, got {size!r}")
    return shape  # type: ignore[return-value]


def _region(name: str | None, seed: int) -> Region:
    if name is None:
        names = sorted(REGIONS)
        return REGIONS[names[np.random.default_rng([seed, 0x4E6]).integers(len(names))]]
    if name not in REGIONS:
        raise ValueError(f"unknown region {name!r}; expected one of {sorted(REGIONS)}")
    return REGIONS[name]


def _first_time(seed: int) -> datetime:
    """A winter acquisition time (Nov-Apr, 2018-2021), fixed by the seed."""
    rng = np.random.default_rng([seed, 0x7135])
    day = int(rng.choice(np.r_[5:120, 320:360]))
    start = datetime(int(rng.integers(2018, 2022)), 1, 1, tzinfo=UTC)
    return start + timedelta(days=day, seconds=int(rng.integers(0, 86400)))


def sea_ice_scene(
    seed: int,
    size: int | tuple[int, int] = 1024,
    pixel_m: float = 80.0,
    *,
    enl: float = DEFAULT_ENL,
    wind_speed: float | None = None,
    wind_direction: float | None = None,
    noise_floor_db: float | None = None,
    incidence_range: tuple[float, float] = (19.0, 47.0),
    region: str | None = None,
    keep_reflectivity: bool = False,
    noise_removed: bool = False,
) -> xr.Dataset:
    """One simulated EW GRDM HH/HV scene with its ice chart, drawn from ``seed``.

    ``size`` pixels (int or (ny, nx)) of ``pixel_m`` metres; ``enl`` looks of speckle;
    ``wind_speed`` (m/s, default drawn from 3-12) and ``wind_direction`` (deg the wind
    blows to, clockwise from north; default drawn) over open water; ``noise_floor_db``
    the NESZ at the quietest sub-swath centre (default -26 dB, -26 to -22 dB across the
    swath); incidence rising across the columns over ``incidence_range``; ``region`` one
    of :data:`sarlab.simulate.geometry.REGIONS` (default drawn). The backscatter is not
    thermal-noise corrected unless ``noise_removed``.

    Returns ``backscatter`` (band HH, HV; sigma0 dB), ``incidence_angle``, the charts
    ``SIC``/``SOD``/``FLOE`` (AutoICE codes, 255 on land), ``distance_map``, ``surface``
    (:data:`~sarlab.simulate.radiometry.SURFACE_CLASSES` code per pixel) and ``nesz``
    (band, y, x; linear), with 2-D ``latitude``/``longitude`` and EPSG:3413 x/y. With
    ``keep_reflectivity`` also ``reflectivity`` (linear sigma0 before texture, noise and
    speckle), ``texture``, ``wind_speed`` and ``polygon`` (chart polygon id).
    """
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    if not (np.isfinite(enl) and enl > 0 and np.isfinite(pixel_m) and pixel_m > 0):
        raise ValueError(f"enl and pixel_m must be positive, got {enl!r}, {pixel_m!r}")
    shape, chosen = _size(size), _region(region, seed)
    grid, state = _grid_and_state(seed, shape, pixel_m, chosen, incidence_range)
    floor = DEFAULT_NOISE_FLOOR_DB if noise_floor_db is None else float(noise_floor_db)
    attrs = {
        "seed": seed,
        "repeat_seed": -1,
        "region": chosen.name,
        "ice_service": chosen.ice_service,
        "enl": float(enl),
        "noise_floor_db": floor,
        "incidence_near": float(incidence_range[0]),
        "incidence_far": float(incidence_range[1]),
        "days_since_first": 0,
        "drift_x_m": 0.0,
        "drift_y_m": 0.0,
        "rotation_deg": 0.0,
    }
    rng = np.random.default_rng([seed, 0xA55, 0])
    when = _first_time(seed)
    run = _Pass(when, attrs, rng, wind_speed, wind_direction, keep_reflectivity, noise_removed)
    return _observe(state, grid, run)


def _grid_and_state(seed: int, shape, pixel_m, region: Region, incidence_range):
    grid = make_grid(np.random.default_rng([seed, 0x96D]), shape, pixel_m, region, incidence_range)
    return grid, make_state(seed, region, grid)


def _observe(state: IceState, grid: Grid, run: _Pass) -> xr.Dataset:
    """Measure the surface (the ice moved to ``run.ice_xy``) as one EW acquisition."""
    attrs, rng = run.attrs, run.rng
    x, y = grid.mesh()
    fields = compose(state, x, y, *(run.ice_xy or (None, None)))
    km = distance_km(fields["land"], grid.pixel_m)
    speed = float(rng.uniform(3.0, 12.0) if run.wind_speed is None else run.wind_speed)
    direction = rng.uniform(0.0, 360.0) if run.wind_direction is None else run.wind_direction
    wind_key = key_of(attrs["seed"], "wind", attrs["repeat_seed"])
    wind, phi = gmf.wind_field(x, y, speed, float(direction), wind_key, km, fields["SIC"])
    incidence = np.broadcast_to(grid.incidence[None, :], grid.shape)
    refl = reflectivity(fields["surface"], incidence, wind, phi, fields["offset_db"])
    noise_db = nesz_db(grid.incidence, grid.y[0] - grid.y, attrs["noise_floor_db"], rng.random(5))
    nesz = np.broadcast_to(10.0 ** (noise_db / 10.0), refl.shape).astype(np.float32)
    intensity, tex = render_intensity(refl, fields["surface"], rng, enl=attrs["enl"], nesz=nesz)
    ds = to_dataset(grid, intensity, fields, distance_zones(km, fields["land"]), nesz)
    if run.keep:
        add_diagnostics(ds, refl, tex, wind, fields)
    stamp = run.when.strftime("%Y%m%dT%H%M%S")
    suffix = "" if attrs["repeat_seed"] < 0 else f"r{attrs['repeat_seed']}"
    scene_id = f"S1A_EW_GRDM_1SDH_{stamp}_sim{attrs['seed']}{suffix}"
    ds.attrs = {
        "platform": "Sentinel-1A",
        "mode": "EW",
        "product": "GRD",
        "product_type": "GRDM",
        "scene_id": scene_id,
        "original_id": scene_id,
        "pixel_spacing": float(grid.pixel_m),
        "acquisition_start": run.when.isoformat(),
        "simulated": 1,
        "simulator": SIMULATOR,
        "size_y": grid.shape[0],
        "size_x": grid.shape[1],
        **attrs,
        "wind_speed": speed,
        "wind_direction": float(direction),
        "noise_removed": 0,
        "keep_reflectivity": int(run.keep),
    }
    return remove_noise(ds) if run.noise_removed else ds


def remove_noise(ds: xr.Dataset, floor_db: float = -40.0) -> xr.Dataset:
    """Thermal-noise correction: subtract the scene's ``nesz`` from the linear sigma0.

    Where speckle makes the difference negative (half of the pixels at the noise floor)
    the result is clipped to ``floor_db``, as noise-corrected products do.
    """
    if ds.attrs.get("noise_removed"):
        raise ValueError(f"{ds.attrs.get('scene_id', 'scene')}: thermal noise already removed")
    if "nesz" not in ds:
        raise ValueError("the scene records no 'nesz' to subtract")
    linear = 10.0 ** (ds[IMAGE_VAR].astype(np.float64) / 10.0) - ds["nesz"]
    cleaned = 10.0 * np.log10(np.maximum(linear, 10.0 ** (floor_db / 10.0)))
    out = ds.copy()
    out[IMAGE_VAR] = cleaned.astype(np.float32).assign_attrs(
        {**ds[IMAGE_VAR].attrs, "long_name": "simulated sigma0 (thermal noise removed)"}
    )
    out.attrs.update(noise_removed=1, noise_clip_db=float(floor_db))
    return out


def _rotate(x, y, angle_deg: float):
    a = np.radians(angle_deg)
    return x * np.cos(a) - y * np.sin(a), x * np.sin(a) + y * np.cos(a)


def repeat_pass(
    ds: xr.Dataset,
    seed: int,
    *,
    drift_m: tuple[float, float] | None = None,
    rotation_deg: float | None = None,
    days: int = 3,
    wind_speed: float | None = None,
) -> xr.Dataset:
    """The scene of ``ds`` observed ``days`` later: ice drifted by ``drift_m`` (x, y in
    EPSG:3413 metres; default 3-10 km a day in a random direction) and rotated by
    ``rotation_deg`` (counter-clockwise about the scene centre; default within 0.7 deg a
    day), land and fast ice fixed, a new wind, new texture, noise bursts and speckle.
    Drift and rotation add up over repeated calls. ``seed`` fixes the new pass.
    """
    if ds.attrs.get("simulator") != SIMULATOR:
        raise ValueError("repeat_pass needs a scene made by sea_ice_scene (or repeat_pass)")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    first = int(ds.attrs["seed"])
    shape = (int(ds.attrs["size_y"]), int(ds.attrs["size_x"]))
    chosen = REGIONS[str(ds.attrs["region"])]
    incidence_range = (float(ds.attrs["incidence_near"]), float(ds.attrs["incidence_far"]))
    pixel_m = float(ds.attrs["pixel_spacing"])
    grid, state = _grid_and_state(first, shape, pixel_m, chosen, incidence_range)
    if not (np.array_equal(grid.x, ds["x"].values) and np.array_equal(grid.y, ds["y"].values)):
        raise ValueError("the scene's grid was changed (cropped?); repeat_pass needs it whole")
    rng = np.random.default_rng([first, 0xA55, int(seed) + 1])
    if drift_m is None:
        speed, heading = rng.uniform(3e3, 10e3) * days, rng.uniform(0.0, 2.0 * np.pi)
        drift_m = (speed * np.cos(heading), speed * np.sin(heading))
    if rotation_deg is None:
        rotation_deg = rng.uniform(-0.7, 0.7) * days
    # compose with the motion since the first pass: p -> R(a)(p - c) + c + d
    before = (float(ds.attrs["drift_x_m"]), float(ds.attrs["drift_y_m"]))
    turned = _rotate(*before, rotation_deg)
    total_d = (turned[0] + float(drift_m[0]), turned[1] + float(drift_m[1]))
    total_a = float(ds.attrs["rotation_deg"]) + float(rotation_deg)
    x, y = grid.mesh()
    cx, cy = grid.centre
    if total_a == 0.0:
        ice_xy = (x - total_d[0], y - total_d[1])
    else:
        back_x, back_y = _rotate(x - cx - total_d[0], y - cy - total_d[1], -total_a)
        ice_xy = (back_x + cx, back_y + cy)
    kept = ("seed", "region", "ice_service", "enl", "noise_floor_db", "incidence_near")
    attrs = {key: ds.attrs[key] for key in (*kept, "incidence_far")}
    attrs.update(
        seed=first,
        repeat_seed=int(seed),
        days_since_first=int(ds.attrs["days_since_first"]) + int(days),
        drift_x_m=total_d[0],
        drift_y_m=total_d[1],
        rotation_deg=total_a,
        previous_scene_id=str(ds.attrs["scene_id"]),
    )
    when = datetime.fromisoformat(str(ds.attrs["acquisition_start"]))
    when += timedelta(days=int(days), seconds=int(rng.integers(-3 * 3600, 3 * 3600)))
    keep, cleaned = bool(ds.attrs.get("keep_reflectivity")), bool(ds.attrs.get("noise_removed"))
    return _observe(state, grid, _Pass(when, attrs, rng, wind_speed, None, keep, cleaned, ice_xy))
