"""AI4Arctic Sea Ice Challenge scenes (AutoICE 2022-23) as sarlab Datasets, and back.

One NetCDF per Sentinel-1 EW GRDM scene (HH = ``nersc_sar_primary``, HV =
``nersc_sar_secondary``, NERSC thermal-noise correction) on dims
(``sar_lines``, ``sar_samples``). The dataset comes in two layouts; both are read:

ready-to-train, ``<YYYYMMDDThhmmss>_<dmi|cis>_prep.nc`` (80 m, written by :func:`write_ai4arctic`)
    SAR, ``sar_incidenceangle`` and ``distance_map`` are float32 *standard scaled*,
    ``(value - mean) / std`` with the challenge's global constants (:data:`RTT_SCALER`),
    and nodata holds ``variable_fill_value`` (0). ``sar_grid2d_latitude``/``_longitude``
    are a ~21x21 tie-point grid spanning the image corners; its dims are named
    (``sar_sample_2dgrid_points``, ``sar_line_2dgrid_points``) but axis 0 runs along the
    lines, so it is read by position. AMSR2 ``btemp_*`` (standard scaled too) and ERA5
    sit on (``2km_grid_lines``, ``2km_grid_samples``). ``SIC``/``SOD``/``FLOE`` are uint8
    with ``chart_fill_value`` 255; test scenes keep them in ``<scene>_reference.nc``.
raw, ``S1?_EW_GRDM_1SDH_..._icechart_<service>_....nc`` (40 m)
    SAR in dB with NaN nodata; ``sar_grid_line``/``_sample``/``_latitude``/``_longitude``/
    ``_incidenceangle``/``_height`` on ``sar_grid_points`` (~441 tie points); ``btemp_*`` in
    kelvin; the ice chart as polygons (``polygon_icechart``), which is not converted here.

Tie-point fields are interpolated lazily, block by block, to every pixel: bilinearly in
(line, sample) when the points come in rows of equal line, as geolocation grids do (exact at
the points, held constant past the outermost ones), else linearly on their Delaunay
triangles (nearest point outside their hull). Longitudes crossing 180 stay continuous.
AMSR2 stays on its own 2 km grid (``amsr2_y``/``amsr2_x`` give each cell centre in SAR
pixels, the starter kit's bilinear upsampling convention): upsampling 14 channels to
5000x5200 pixels would cost ~1.5 GB per scene for no information.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator
from scipy.spatial import QhullError

from sarlab.atomic import atomic_file
from sarlab.conventions import IGNORE_INDEX, IMAGE_VAR, INCIDENCE_VAR, check_backscatter, sar_attrs
from sarlab.errors import InputError, UnitsError
from sarlab.io.safe_luts import VectorLut, lazy_field

__all__ = [
    "AMSR2_VARS",
    "AUTOICE_WEIGHTS",
    "CHARTS",
    "CHART_CLASSES",
    "FLOE_CLASSES",
    "RTT_SCALER",
    "SIC_CLASSES",
    "SOD_CLASSES",
    "open_ai4arctic",
    "write_ai4arctic",
]

PathLike = str | os.PathLike[str]
Chunks = str | int | Mapping[str, int] | None
Evaluate = Callable[[np.ndarray, np.ndarray], np.ndarray]

CHARTS = ("SIC", "SOD", "FLOE")
# AutoICE classes (starter kit utils.py; Stokholm et al., The Cryosphere 18, 3471, 2024).
SIC_CLASSES = {f"{10 * code}_percent": code for code in range(11)}
_SOD = "open_water new_ice young_ice thin_first_year_ice thick_first_year_ice old_ice"
_FLOE = "open_water cake_ice small_floe medium_floe big_floe vast_floe bergs"
SOD_CLASSES = {name: code for code, name in enumerate(_SOD.split())}
FLOE_CLASSES = {name: code for code, name in enumerate(_FLOE.split())}
CHART_CLASSES = {"SIC": SIC_CLASSES, "SOD": SOD_CLASSES, "FLOE": FLOE_CLASSES}
# The combined AutoICE score: (2 R2(SIC) + 2 weighted-F1(SOD) + 1 weighted-F1(FLOE)) / 5.
AUTOICE_WEIGHTS = {"SIC": 2, "SOD": 2, "FLOE": 1}
_GHZ = ("6_9", "7_3", "10_7", "18_7", "23_8", "36_5", "89_0")
AMSR2_VARS = tuple(f"btemp_{ghz}{pol}" for ghz in _GHZ for pol in "hv")
# Global (mean, std) of the ready-to-train standard scaling: misc/global_meanstd.npy of
# github.com/astokholm/AI4ArcticSeaIceChallenge (dB, degrees, distance-zone ids).
RTT_SCALER = {
    "nersc_sar_primary": (-14.5082551552228, 5.6597459193818676),
    "nersc_sar_secondary": (-24.701205147144236, 4.746759305258515),
    "sar_incidenceangle": (33.99801788456536, 8.322267212079046),
    "distance_map": (23.627669500714102, 14.99018630794473),
}
_SAR = {"HH": "nersc_sar_primary", "HV": "nersc_sar_secondary"}
_RTT_NEEDS = (*_SAR.values(), "sar_incidenceangle", "sar_grid2d_latitude", "sar_grid2d_longitude")
_RAW_GRID = ("sar_grid_line", "sar_grid_sample", "sar_grid_latitude", "sar_grid_longitude")
_RAW_NEEDS = (*_SAR.values(), *_RAW_GRID, "sar_grid_incidenceangle")
_RTT_DIMS = ("sar_lines", "sar_samples")
_RTT_GRID_DIMS = ("sar_sample_2dgrid_points", "sar_line_2dgrid_points")  # sic, see above
_CHART_TITLES = dict(SIC="Sea Ice Concentration [%]", SOD="Stage of Development", FLOE="Floe Size")
_SIC_NOTE = "class k is a total sea-ice concentration of 10*k percent (0 ice free, 10 = 100 %)"
_DISTANCE_ATTRS = ("long_name", "zonal_range_description")
_ANGLE_ATTRS = {"units": "degrees", "long_name": "incidence angle"}
_LAT_ATTRS = {"units": "degrees_north", "standard_name": "latitude"}
_LON_ATTRS = {"units": "degrees_east", "standard_name": "longitude"}


class _Scattered:
    """Linear on the Delaunay triangulation of the points; nearest point outside their hull."""

    def __init__(self, lines: np.ndarray, samples: np.ndarray, values: np.ndarray) -> None:
        points = np.column_stack([lines, samples]).astype(float)
        self.linear = LinearNDInterpolator(points, values)
        self.nearest = NearestNDInterpolator(points, values)

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        rr, cc = np.meshgrid(np.asarray(rows, float), np.asarray(cols, float), indexing="ij")
        out = self.linear(rr, cc)
        gap = np.isnan(out)
        if gap.any():
            out[gap] = self.nearest(rr[gap], cc[gap])
        return out


def _lut(make: Callable[..., Evaluate], lines, samples, values, *, longitude=False) -> Evaluate:
    """Longitudes of a scene crossing the antimeridian are interpolated on [0, 360)."""
    values = np.asarray(values, float)
    if not (longitude and np.ptp(values) > 180.0):
        return make(lines, samples, values)
    return partial(_wrapped, make(lines, samples, np.where(values < 0, values + 360.0, values)))


def _wrapped(lut: Evaluate, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return (lut(rows, cols) + 180.0) % 360.0 - 180.0


def _rtt_grid(lines: np.ndarray, samples: np.ndarray, values: np.ndarray) -> Evaluate:
    return VectorLut.from_vectors(
        list(lines), [np.asarray(samples, float)] * len(lines), list(values)
    )


def _tie_points(path: Path, lines: np.ndarray, samples: np.ndarray) -> Callable[..., Evaluate]:
    """Raw tie points in rows of equal line (a geolocation grid) interpolate row-wise
    (exact at the points); anything else is triangulated."""
    lines, samples = np.asarray(lines, float).ravel(), np.asarray(samples, float).ravel()
    rows, counts = np.unique(lines, return_counts=True)
    if rows.size > 1 and counts.min() > 1:
        order = np.lexsort((samples, lines))
        cuts = np.cumsum(counts)[:-1]

        def by_rows(_l, _s, values):
            parts = np.split(np.asarray(values, float).ravel()[order], cuts)
            return VectorLut.from_vectors(list(rows), np.split(samples[order], cuts), parts)

        return by_rows

    def scattered(_l, _s, values):
        try:
            return _Scattered(lines, samples, np.asarray(values).ravel())
        except (QhullError, ValueError) as exc:
            raise InputError(path, f"its {lines.size} SAR tie points span no area ({exc})") from exc

    return scattered


def _open(path: Path, chunks: Chunks) -> xr.Dataset:
    """Open without CF masking (uint8 charts would turn float) with h5netcdf, or scipy (v3)."""
    if not path.is_file():
        raise InputError(path, "does not exist")
    problems = []
    for engine in ("h5netcdf", "scipy"):
        try:
            return xr.open_dataset(
                path, engine=engine, chunks=chunks, mask_and_scale=False, decode_times=False
            )
        except (OSError, ValueError, TypeError, KeyError) as exc:
            problems.append(f"{engine}: {exc}")
    raise InputError(path, f"is not a readable NetCDF file (truncated?): {'; '.join(problems)}")


def _physical(src: xr.Dataset, name: str, scaled: bool) -> xr.DataArray:
    """Float32 values with NaN for nodata; the ready-to-train scaling undone."""
    da = src[name]
    fills = [
        da.attrs[k] for k in ("_FillValue", "missing_value", "variable_fill_value") if k in da.attrs
    ]
    if scaled and "variable_fill_value" not in da.attrs:
        fills.append(0.0)  # the starter kit: "NaN values in the SAR images are replaced with 0"
    valid = np.isfinite(da)
    for fill in fills:
        valid = valid & (da != fill)
    out = da.astype(np.float64)
    if scaled:
        mean, std = RTT_SCALER[name]
        out = out * std + mean
    return out.where(valid).astype(np.float32)


def _chart(da: xr.DataArray, chart: str, where: Path) -> xr.DataArray:
    fill = da.attrs.get("chart_fill_value", da.attrs.get("_FillValue", IGNORE_INDEX))
    if not np.issubdtype(da.dtype, np.number):
        raise InputError(where, f"{chart} holds {da.dtype} values; ice charts are integer classes")
    bad = da == fill
    if np.issubdtype(da.dtype, np.floating):
        bad = bad | ~np.isfinite(da)
    values = da.where(~bad, IGNORE_INDEX).astype(np.uint8).data
    classes = CHART_CLASSES[chart]
    attrs = {
        "long_name": _CHART_TITLES[chart],
        "flag_values": list(classes.values()),
        "flag_meanings": " ".join(classes),
        "ignore_index": IGNORE_INDEX,
        "source": str(where),
    }
    if chart == "SIC":
        attrs.update(percent_per_class=10, comment=_SIC_NOTE)
    return xr.DataArray(values, dims=("y", "x"), attrs=attrs)


def _reference_beside(path: Path) -> Path | None:
    """Where the test set keeps a scene's charts: ``<scene>_reference.nc`` beside it."""
    stems = (path.stem, path.stem.removesuffix("_prep"))
    found = [path.with_name(f"{stem}_reference.nc") for stem in stems]
    return next((p for p in found if p.is_file()), None)


def _charts(src, path, shape, labels: PathLike | None, chunks, opened: list) -> dict:
    source, where = src, path
    present = [c for c in CHARTS if c in src.variables]
    if labels is None and not present:
        labels = _reference_beside(path)
    if labels is not None:
        where = Path(labels)
        source = _open(where, chunks)
        opened.append(source)
        present = [c for c in CHARTS if c in source.variables]
        if not present:
            raise InputError(where, f"holds none of the ice charts {', '.join(CHARTS)}")
    out = {}
    for chart in present:
        if source[chart].shape != shape:
            raise InputError(
                where, f"{chart} is {source[chart].shape} but the SAR image of {path} is {shape}"
            )
        out[chart] = _chart(source[chart], chart, where)
    return out


def _amsr2(src: xr.Dataset, path: Path, shape: tuple[int, int], scaled: bool) -> xr.Dataset:
    names = [n for n in AMSR2_VARS if n in src.variables]
    if not names:
        return xr.Dataset()
    dims = src[names[0]].dims
    if len(dims) != 2 or any(src[n].dims != dims for n in names):
        raise InputError(path, f"AMSR2 variables are not all on one 2-D grid ({dims})")
    coords = {}
    for new, dim, size in zip(("amsr2_y", "amsr2_x"), dims, shape, strict=True):
        centres = (np.arange(src.sizes[dim]) + 0.5) * size / src.sizes[dim] - 0.5
        coords[new] = (new, centres, {"long_name": "cell centre in SAR pixels", "units": "1"})
    units = (
        {"units": "1", "scaling": "ready-to-train standard scaling"} if scaled else {"units": "K"}
    )
    dims = ("amsr2_y", "amsr2_x")
    return xr.Dataset({n: (dims, _physical(src, n, False).data, units) for n in names}, coords)


def _scene_attrs(src: xr.Dataset, path: Path, raw: bool) -> dict:
    given = {k: v for k, v in src.attrs.items() if isinstance(v, str | int | float | np.number)}
    original = str(given.get("original_id") or (path.name if raw else ""))
    match = re.match(r"S1([A-D])_", original)
    service = re.search(r"_(dmi|cis)_", path.name)
    return {
        **given,
        "platform": f"Sentinel-1{match[1]}" if match else "Sentinel-1",
        "mode": "EW",
        "product": "GRD",
        "product_type": "GRDM",
        "scene_id": str(given.get("scene_id") or path.stem).removesuffix(".nc"),
        "source": str(path),
        "dataset": "AI4Arctic Sea Ice Challenge",
        "layout": "raw" if raw else "ready-to-train",
        "ice_service": str(given.get("ice_service") or (service[1] if service else "")),
        "pixel_spacing": float(given.get("pixel_spacing") or (40.0 if raw else 80.0)),
    }


def _geolocation(src: xr.Dataset, path: Path, shape: tuple[int, int], raw: bool) -> dict:
    """Evaluators (rows, cols) -> values for latitude, longitude (and the raw incidence)."""
    if raw:
        lines, samples = src["sar_grid_line"].values, src["sar_grid_sample"].values
        make = _tie_points(path, lines, samples)
        names = {"latitude": "sar_grid_latitude", "longitude": "sar_grid_longitude"}
        names[INCIDENCE_VAR] = "sar_grid_incidenceangle"
        grids = {key: np.ravel(src[name].values) for key, name in names.items()}
        if any(g.size != np.size(lines) for g in grids.values()) or np.size(samples) != lines.size:
            raise InputError(path, "the sar_grid_* variables differ in length")
    else:
        grids = {k: src[f"sar_grid2d_{k}"].values for k in ("latitude", "longitude")}
        lat = grids["latitude"]
        if lat.ndim != 2 or min(lat.shape) < 2 or grids["longitude"].shape != lat.shape:
            raise InputError(
                path, f"sar_grid2d_latitude/longitude are not one 2-D grid {lat.shape}"
            )
        lines = np.linspace(0, shape[0] - 1, lat.shape[0])
        samples = np.linspace(0, shape[1] - 1, lat.shape[1])
        make = _rtt_grid
    return {k: _lut(make, lines, samples, v, longitude=k == "longitude") for k, v in grids.items()}


def open_ai4arctic(
    path: PathLike,
    *,
    labels: PathLike | None = None,
    chunks: Chunks = "auto",
    include_amsr2: bool = True,
) -> xr.Dataset:
    """Read one AI4Arctic scene (ready-to-train or raw layout) in the sarlab convention.

    Returns ``backscatter`` (band=HH,HV; y, x) sigma0 in dB with NaN nodata,
    ``incidence_angle`` (degrees), ``distance_map`` (distance-to-land zone id) where
    present, 2-D ``latitude``/``longitude`` coords, the charts ``SIC``/``SOD``/``FLOE``
    (uint8, 255 = ignore) from ``labels`` if given, else from the scene or a
    ``<scene>_reference.nc`` beside it (the test set), and with ``include_amsr2`` the
    ``btemp_*`` on their own grid (kelvin in raw files, standard scaled in ready-to-train).
    ``chunks="auto"`` keeps everything lazy (dask); ``chunks=None`` reads into memory.
    """
    path = Path(path)
    if isinstance(chunks, Mapping):  # y/x are sar_lines/sar_samples in both layouts
        chunks = {{"y": _RTT_DIMS[0], "x": _RTT_DIMS[1]}.get(k, k): v for k, v in chunks.items()}
    src = _open(path, chunks)
    raw = "sar_grid_line" in src.variables or "polygon_icechart" in src.variables
    missing = [n for n in (_RAW_NEEDS if raw else _RTT_NEEDS) if n not in src.variables]
    if missing:
        kind = "raw" if raw else "ready-to-train"
        raise InputError(
            path, f"is not an AI4Arctic {kind} scene: no variable {', '.join(missing)}"
        )
    hh = src[_SAR["HH"]]
    if hh.ndim != 2:
        raise InputError(path, f"nersc_sar_primary has dims {hh.dims}; expected (lines, samples)")
    full = [*_SAR.values(), *(() if raw else ("sar_incidenceangle",))]
    full += ["distance_map"] if "distance_map" in src.variables else []
    for name in full:
        if src[name].dims != hh.dims:
            raise InputError(path, f"{name} is on {dict(src[name].sizes)}, SAR on {dict(hh.sizes)}")
    shape = hh.shape
    bands = [_physical(src, _SAR[pol], not raw).data for pol in _SAR]
    image = xr.concat([xr.DataArray(b, dims=("y", "x")) for b in bands], dim="band")
    image.attrs = {
        **sar_attrs("sigma0", "dB", _SAR),
        "long_name": "NERSC noise-corrected sigma0",
        "nodata": "NaN (the file's fill value, land and outside the swath)",
    }
    rows, cols = np.arange(shape[0], dtype=float), np.arange(shape[1], dtype=float)
    chunked = getattr(hh.data, "chunks", None)

    def field(evaluate: Evaluate, dtype) -> np.ndarray:
        if chunked is None:
            return evaluate(rows, cols).astype(dtype)
        return lazy_field(evaluate, rows, cols, chunked, dtype)

    geo = _geolocation(src, path, shape, raw)
    if raw:
        angle = field(geo[INCIDENCE_VAR], np.float32)
    else:
        angle = _physical(src, "sar_incidenceangle", True).data
    ds = xr.Dataset(
        {IMAGE_VAR: image, INCIDENCE_VAR: (("y", "x"), angle, _ANGLE_ATTRS)},
        coords={
            "band": ("band", list(_SAR)),
            "y": ("y", np.arange(shape[0])),
            "x": ("x", np.arange(shape[1])),
            "latitude": (("y", "x"), field(geo["latitude"], np.float64), _LAT_ATTRS),
            "longitude": (("y", "x"), field(geo["longitude"], np.float64), _LON_ATTRS),
        },
    )
    if "distance_map" in src.variables:
        keep = {k: v for k, v in src["distance_map"].attrs.items() if k in _DISTANCE_ATTRS}
        # zone ids are integers: round off the float32 error of the standard scaling
        zones = np.round(_physical(src, "distance_map", not raw))
        ds["distance_map"] = (("y", "x"), zones.data, keep)
    opened = [src]
    for chart, da in _charts(src, path, shape, labels, chunks, opened).items():
        ds[chart] = da
    if include_amsr2:
        ds = ds.merge(_amsr2(src, path, shape, not raw))
    ds.attrs = _scene_attrs(src, path, raw)
    ds.set_close(partial(_close_all, opened))  # ds.close() releases the files
    return ds


def _close_all(datasets: list[xr.Dataset]) -> None:
    for opened in datasets:
        opened.close()


def _scaled(values, name: str):
    """Standard-scale as the ready-to-train set does: nodata -> 0, a true 0 nudged off it."""
    mean, std = RTT_SCALER[name]
    z = ((values.astype(np.float64) - mean) / std).astype(np.float32)
    z = np.where(z == 0, np.nextafter(np.float32(0), np.float32(1)), z)
    return np.where(np.isfinite(values), z, np.float32(0)).astype(np.float32)


def _grid_of(field: xr.DataArray, lines: np.ndarray, samples: np.ndarray, lon: bool) -> np.ndarray:
    """Bilinear samples of a per-pixel field at tie-point positions, reading only nearby pixels."""
    field = field.transpose("y", "x")
    near = []
    for pos, size in ((lines, field.sizes["y"]), (samples, field.sizes["x"])):
        lower = np.floor(pos).astype(int)
        near.append(np.unique(np.concatenate([lower, np.minimum(lower + 1, size - 1)])))
    sub = np.asarray(field.isel(y=near[0], x=near[1]).values, dtype=np.float64)
    if not np.isfinite(sub).all():
        raise ValueError(f"{field.name} has NaN at the tie points; geolocation must be complete")
    return _lut(_rtt_grid, near[0], near[1], sub, longitude=lon)(lines, samples)


def write_ai4arctic(ds: xr.Dataset, path: PathLike, *, grid_points: int = 21) -> Path:
    """Write a scene as an AI4Arctic ready-to-train NetCDF (the inverse of :func:`open_ai4arctic`).

    ``ds`` is in the reader's convention: ``backscatter`` (band = HH, HV; y, x) sigma0 in
    dB with NaN nodata, ``incidence_angle`` (y, x) in degrees, 2-D ``latitude``/
    ``longitude`` coords, optionally ``distance_map`` (y, x; distance-to-land zone id, 0 =
    land) and ``SIC``/``SOD``/``FLOE`` (uint8 AutoICE classes, 255 = no label). Attrs
    ``scene_id``, ``original_id``, ``ice_service`` and ``pixel_spacing`` (m, default 80)
    are carried over. Values are standard scaled with :data:`RTT_SCALER` (nodata -> 0),
    latitude/longitude are sampled on a ``grid_points`` x ``grid_points`` tie-point grid
    spanning the image corners, and the file is gzip-compressed and written atomically
    (the scene is computed in memory first: ~0.5 GB for a full 5000 x 5200 scene). AMSR2
    and ERA5 variables are not written.
    """
    image = ds[IMAGE_VAR]
    check_backscatter(image)
    kind = tuple(image.attrs[k] for k in ("quantity", "units", "polarization"))
    if kind != ("sigma0", "dB", "HH,HV"):
        raise UnitsError(
            f"AI4Arctic scenes hold sigma0 in dB, HH,HV; got {kind}: convert explicitly first"
        )
    absent = [n for n in (INCIDENCE_VAR, "latitude", "longitude") if n not in ds.variables]
    if absent:
        raise ValueError(f"an AI4Arctic scene needs {', '.join(absent)} in the Dataset")
    image = image.transpose("band", "y", "x")
    ny, nx = image.sizes["y"], image.sizes["x"]
    if min(ny, nx, grid_points) < 2:
        raise ValueError(
            f"need 2x2 pixels or more and grid_points >= 2; got {ny}x{nx}, {grid_points}"
        )
    dims, fill = _RTT_DIMS, {"variable_fill_value": 0.0}
    out = {
        n: (dims, _scaled(image.sel(band=p).data, n), {**fill, "polarisation": p})
        for p, n in _SAR.items()
    }
    for key, name in ((INCIDENCE_VAR, "sar_incidenceangle"), ("distance_map", "distance_map")):
        if key in ds:
            out[name] = (dims, _scaled(ds[key].transpose("y", "x").data, name), dict(fill))
    lines, samples = (np.linspace(0, n - 1, min(grid_points, n)) for n in (ny, nx))
    for key, geo_attrs in (("latitude", _LAT_ATTRS), ("longitude", _LON_ATTRS)):
        values = _grid_of(ds[key], lines, samples, key == "longitude")
        out[f"sar_grid2d_{key}"] = (_RTT_GRID_DIMS, values, geo_attrs)
    for chart, classes in CHART_CLASSES.items():
        if chart in ds:
            values = np.asarray(ds[chart].transpose("y", "x").values)
            bad = np.setdiff1d(np.unique(values), [*classes.values(), IGNORE_INDEX])
            if bad.size or not np.issubdtype(values.dtype, np.integer):
                found = bad.tolist() or values.dtype
                raise ValueError(f"{chart} holds {found}; expected {list(classes.values())} or 255")
            chart_attrs = {"polygon": _CHART_TITLES[chart], "chart_fill_value": IGNORE_INDEX}
            out[chart] = (dims, values.astype(np.uint8), chart_attrs)
    attrs = {
        "scene_id": str(ds.attrs.get("scene_id", Path(path).stem)),
        "original_id": str(ds.attrs.get("original_id", "")),
        "ice_service": str(ds.attrs.get("ice_service", "")),
        "pixel_spacing": float(ds.attrs.get("pixel_spacing", 80.0)),
        "history": "written by sarlab.io.ai4arctic.write_ai4arctic",
    }
    packed, cell = {"zlib": True, "complevel": 4, "shuffle": True}, (min(ny, 1024), min(nx, 1024))
    encoding = {
        n: {**packed, "chunksizes": cell} if v[0] == dims else packed for n, v in out.items()
    }
    path = Path(path)
    # computed before the file exists: a dask task failing mid-write would leave worker
    # threads that reopen and recreate the temporary file after it is cleaned up
    scene = xr.Dataset(out, attrs=attrs).compute()
    with atomic_file(path) as tmp:
        scene.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
    return path
