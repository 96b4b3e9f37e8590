"""Package a simulated EW scene as a sarlab Dataset (the reader convention of AI4Arctic).

The variables and attrs follow :func:`sarlab.io.ai4arctic.open_ai4arctic`, so
:func:`sarlab.io.ai4arctic.write_ai4arctic` writes them as a ready-to-train NetCDF: sigma0
in dB (band HH, HV), incidence angle, the AutoICE charts (uint8, 255 = ignore) and the
distance-to-land zones; plus what only a simulation knows (surface class, the NESZ it
added, and on request the noise-free reflectivity, texture, wind and chart polygons).
Coordinates are EPSG:3413 metres with a rioxarray CRS and transform, and 2-D
latitude/longitude.
"""

from __future__ import annotations

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from rasterio.transform import from_origin

from sarlab.conventions import IGNORE_INDEX, IMAGE_VAR, INCIDENCE_VAR, sar_attrs
from sarlab.io.ai4arctic import CHART_CLASSES
from sarlab.simulate.geometry import Grid
from sarlab.simulate.radiometry import BANDS, SURFACE_CLASSES

__all__ = ["add_diagnostics", "linear_attrs", "to_dataset"]

_TITLES = {"SIC": "Sea Ice Concentration [%]", "SOD": "Stage of Development"}
_TITLES["FLOE"] = "Floe Size"
_ZONES = "\n".join(
    ["dist_id; dist_range_km", "0; land", "1; 0 -> 0.5"]
    + [f"{k + 2}; {0.5 * 2**k:g} -> {2 ** (k + 1) * 0.5:g}" for k in range(8)]
    + ["10; >128"]
)
_ANGLE = {"units": "degrees", "long_name": "incidence angle"}
_DISTANCE = {
    "long_name": "Distance to land zones numbered with ids ranging from 0 to N",
    "zonal_range_description": _ZONES,
}


def linear_attrs(name: str) -> dict:
    """Attrs of a linear sigma0 (band, y, x) array."""
    return {**sar_attrs("sigma0", "linear", BANDS), "long_name": name}


def _chart_attrs(chart: str) -> dict:
    classes = CHART_CLASSES[chart]
    attrs = {
        "long_name": _TITLES[chart],
        "flag_values": list(classes.values()),
        "flag_meanings": " ".join(classes),
        "ignore_index": IGNORE_INDEX,
    }
    if chart == "SIC":
        attrs.update(percent_per_class=10, comment="class k is 10*k percent ice cover")
    return attrs


def to_dataset(
    grid: Grid,
    intensity: np.ndarray,
    fields: dict[str, np.ndarray],
    distance: np.ndarray,
    nesz: np.ndarray,
) -> xr.Dataset:
    """The measured intensity (band, y, x; linear) and the surface as a Dataset."""
    with np.errstate(divide="ignore"):
        db = (10.0 * np.log10(intensity)).astype(np.float32)
    image_attrs = {
        **sar_attrs("sigma0", "dB", BANDS),
        "long_name": "simulated sigma0 (thermal noise not removed)",
        "nodata": "NaN",
    }
    names = [c.name for c in SURFACE_CLASSES]
    surface_attrs = {
        "long_name": "simulated surface class",
        "flag_values": list(range(len(names))),
        "flag_meanings": " ".join(names),
    }
    incidence = np.broadcast_to(grid.incidence[None, :].astype(np.float32), grid.shape)
    dims = ("y", "x")
    data = {
        IMAGE_VAR: (("band", *dims), db, image_attrs),
        INCIDENCE_VAR: (dims, np.array(incidence), _ANGLE),
        "distance_map": (dims, distance, _DISTANCE),
        "surface": (dims, fields["surface"], surface_attrs),
        "nesz": (("band", *dims), nesz, linear_attrs("noise-equivalent sigma0")),
    }
    for chart in CHART_CLASSES:
        data[chart] = (dims, fields[chart].astype(np.uint8), _chart_attrs(chart))
    coords = {
        "band": ("band", list(BANDS)),
        "y": ("y", grid.y, {"units": "m", "standard_name": "projection_y_coordinate"}),
        "x": ("x", grid.x, {"units": "m", "standard_name": "projection_x_coordinate"}),
        "latitude": (dims, grid.latitude, {"units": "degrees_north"}),
        "longitude": (dims, grid.longitude, {"units": "degrees_east"}),
    }
    ds = xr.Dataset(data, coords).rio.write_crs("EPSG:3413")
    half = grid.pixel_m / 2
    transform = from_origin(grid.x[0] - half, grid.y[0] + half, grid.pixel_m, grid.pixel_m)
    return ds.rio.write_transform(transform)


def add_diagnostics(
    ds: xr.Dataset,
    reflectivity: np.ndarray,
    texture: np.ndarray,
    wind: np.ndarray,
    fields: dict[str, np.ndarray],
) -> None:
    """What the simulation knows and a real scene does not (in place)."""
    dims = ("y", "x")
    ds["reflectivity"] = (("band", *dims), reflectivity, linear_attrs("noise-free mean sigma0"))
    ds["texture"] = (dims, texture, {"long_name": "unit-mean K-distribution texture"})
    water = fields["surface"] == 0
    ds["wind_speed"] = (dims, np.where(water, wind, np.nan).astype(np.float32))
    ds["wind_speed"].attrs = {"units": "m s-1", "long_name": "10 m wind over open water"}
    ds["polygon"] = (dims, fields["polygon"], {"long_name": "chart polygon id (-1: none)"})
