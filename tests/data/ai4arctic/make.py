"""Generate small AI4Arctic Sea Ice Challenge scenes in the dataset's real layouts (seeded).

Written with h5netcdf directly, not with sarlab's writer, so the reader is tested
against the format. Layouts (see sarlab/io/ai4arctic.py for the sources):

* ready-to-train ``<time>_<service>_prep.nc``: SAR, incidence angle and distance map
  standard scaled with the challenge's global mean/std, nodata = 0
  (``variable_fill_value``); ``sar_grid2d_latitude``/``_longitude`` tie-point grid named
  (sar_sample_2dgrid_points, sar_line_2dgrid_points) with axis 0 along the lines; AMSR2
  and ERA5 on a 2 km grid; SIC/SOD/FLOE uint8 with ``chart_fill_value`` 255. A test
  scene has no charts; they sit in ``<scene>_reference.nc``.
* raw ``S1A_EW_GRDM_..._icechart_....nc``: SAR in dB with NaN, tie points on
  ``sar_grid_points``, ice chart as polygons.

Scene content (chosen so tests can check it): 201 x 241 pixels; open water (HH -22 dB,
HV -30 dB) left of a diagonal ice edge, first-year ice (HH -13 dB, HV -24 dB) right of it;
the 4 leftmost columns are outside the swath and a land block (rows >= 160, columns < 40)
is nodata; the incidence angle grows from 19 to 47 degrees across the swath; tie points
every 20 lines and 20 samples (11 x 13).
"""

from __future__ import annotations

from pathlib import Path

import h5netcdf
import h5py
import numpy as np

SEED = 7
NY, NX = 201, 241
STEP = 20  # tie-point spacing in pixels (lines and samples)
GRID_LINES = np.arange(0, NY, STEP)  # 11
GRID_SAMPLES = np.arange(0, NX, STEP)  # 13
AMSR = (9, 10)  # 2 km cells: 25 pixels of 80 m
TRAIN = "train/20190317T101538_dmi_prep.nc"
TEST = "test/20210506T074016_cis_prep.nc"
REFERENCE = "test/20210506T074016_cis_prep_reference.nc"
RAW_ID = "S1A_EW_GRDM_1SDH_20190317T101538_20190317T101638_026388_02F1E1_5A3B"
RAW = f"raw/{RAW_ID}_icechart_dmi_201903171015_CentralEast_RIC.nc"
IRREGULAR = f"raw/{RAW_ID}_icechart_dmi_irregular.nc"
# misc/global_meanstd.npy of github.com/astokholm/AI4ArcticSeaIceChallenge
SCALER = {
    "nersc_sar_primary": (-14.5082551552228, 5.6597459193818676),
    "nersc_sar_secondary": (-24.701205147144236, 4.746759305258515),
    "sar_incidenceangle": (33.99801788456536, 8.322267212079046),
    "distance_map": (23.627669500714102, 14.99018630794473),
}
AMSR2 = [
    f"btemp_{f}{p}" for f in ("6_9", "7_3", "10_7", "18_7", "23_8", "36_5", "89_0") for p in "hv"
]
ERA5 = ["u10m_rotated", "v10m_rotated", "t2m", "skt", "tcwv", "tclw"]
DIMS = ("sar_lines", "sar_samples")


def geolocation(lines: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude of (line, sample) points: smooth, curved, over East Greenland."""
    lat = 71.0 - 0.0072 * lines + 0.0011 * samples + 2e-6 * samples**2
    lon = -21.0 + 0.0145 * samples + 0.0021 * lines + 3e-6 * lines * samples
    return lat, lon


def scene(seed: int) -> dict[str, np.ndarray]:
    """Physical fields of one scene (dB, degrees, zones, classes)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:NY, 0:NX]
    ice = xx > 60 + 0.5 * yy
    nodata = (xx < 4) | ((yy >= 160) & (xx < 40))
    hh = np.where(ice, -13.0, -22.0) + rng.normal(0.0, 1.0, (NY, NX))
    hv = np.where(ice, -24.0, -30.0) + rng.normal(0.0, 1.0, (NY, NX))
    angle = 19.0 + 28.0 * xx / (NX - 1) + 0.002 * yy
    land = (yy >= 160) & (xx < 40)
    distance = np.where(
        land, 0, np.minimum(1 + np.hypot(yy - 160, np.maximum(xx - 40, 0)) // 8, 41)
    )
    sic = np.where(ice, np.where(xx > 180, 10, 9), 0)
    sod = np.where(ice, np.where(xx > 180, 4, 3), 0)
    floe = np.where(ice, np.where(xx > 180, 4, 3), 0)
    sod[20:40, 200:240] = 255  # an ambiguous polygon: no dominant stage of development
    floe[20:40, 200:240] = 255
    charts = {"SIC": sic, "SOD": sod, "FLOE": floe}
    for chart in charts.values():
        chart[nodata] = 255
    fields = {
        "nersc_sar_primary": np.where(nodata, np.nan, hh),
        "nersc_sar_secondary": np.where(nodata, np.nan, hv),
        "sar_incidenceangle": np.where(nodata, np.nan, angle),
        "distance_map": distance.astype(np.float64),
    }
    fields = {k: v.astype(np.float32) for k, v in fields.items()}
    fields.update({k: v.astype(np.uint8) for k, v in charts.items()})
    grid = np.meshgrid(np.arange(AMSR[0]), np.arange(AMSR[1]), indexing="ij")
    for i, name in enumerate(AMSR2 + ERA5):
        fields[name] = (0.1 * i - 0.5 + 0.05 * grid[0] - 0.03 * grid[1]).astype(np.float32)
    return fields


def standard_scaled(values: np.ndarray, name: str) -> np.ndarray:
    mean, std = SCALER[name]
    z = ((values.astype(np.float64) - mean) / std).astype(np.float32)
    return np.where(np.isnan(values), np.float32(0.0), z)


def _var(f: h5netcdf.File, name: str, dims: tuple[str, ...], data: np.ndarray, **attrs):
    kwargs = {"compression": "gzip"} if data.ndim == 2 and data.size > 1000 else {}
    var = f.create_variable(name, dims, data=data, **kwargs)
    var.attrs.update(attrs)
    return var


def write_prep(path: Path, fields: dict, attrs: dict, *, charts: bool, grid: bool = True) -> None:
    """A ready-to-train scene as published (standard scaled, fill value 0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5netcdf.File(path, "w") as f:
        f.dimensions.update(
            {
                "sar_lines": NY,
                "sar_samples": NX,
                "sar_sample_2dgrid_points": GRID_LINES.size,  # sic: this axis runs along lines
                "sar_line_2dgrid_points": GRID_SAMPLES.size,
                "2km_grid_lines": AMSR[0],
                "2km_grid_samples": AMSR[1],
            }
        )
        f.attrs.update(attrs)
        for name, pol in (("nersc_sar_primary", "HH"), ("nersc_sar_secondary", "HV")):
            data = standard_scaled(fields[name], name)
            _var(f, name, DIMS, data, variable_fill_value=0.0, polarisation=pol)
        angle = standard_scaled(fields["sar_incidenceangle"], "sar_incidenceangle")
        _var(f, "sar_incidenceangle", DIMS, angle, variable_fill_value=0.0)
        distance = standard_scaled(fields["distance_map"], "distance_map")
        _var(
            f,
            "distance_map",
            DIMS,
            distance,
            long_name="Distance to land zones numbered with ids ranging from 0 to N",
        )
        lat, lon = geolocation(*np.meshgrid(GRID_LINES, GRID_SAMPLES, indexing="ij"))
        if grid:
            _var(
                f,
                "sar_grid2d_latitude",
                ("sar_sample_2dgrid_points", "sar_line_2dgrid_points"),
                lat,
            )
        _var(f, "sar_grid2d_longitude", ("sar_sample_2dgrid_points", "sar_line_2dgrid_points"), lon)
        for name in AMSR2 + ERA5:
            _var(f, name, ("2km_grid_lines", "2km_grid_samples"), fields[name])
        if charts:
            write_charts(f, fields)


def write_charts(f: h5netcdf.File, fields: dict, shape: tuple[int, int] = (NY, NX)) -> None:
    titles = {
        "SIC": "Sea Ice Concentration [%]",
        "SOD": "Stage of Development",
        "FLOE": "Floe Size",
    }
    for name, title in titles.items():
        data = fields[name][: shape[0], : shape[1]]
        _var(f, name, DIMS, data, polygon=title, chart_fill_value=255)


def write_reference(path: Path, fields: dict, shape: tuple[int, int] = (NY, NX)) -> None:
    with h5netcdf.File(path, "w") as f:
        f.dimensions.update({"sar_lines": shape[0], "sar_samples": shape[1]})
        write_charts(f, fields, shape)


def write_raw(path: Path, fields: dict, *, jitter: int = 0, lon_offset: float = 0.0) -> None:
    """A raw scene: dB with NaN, 1-D tie points on sar_grid_points (line-major).

    ``jitter`` moves inner tie points by whole lines (a grid no longer: scattered points
    that still lie on pixels); ``lon_offset`` shifts longitudes (wrapped to [-180, 180)).
    """
    lines, samples = (
        g.ravel().astype(np.float64) for g in np.meshgrid(GRID_LINES, GRID_SAMPLES, indexing="ij")
    )
    if jitter:
        inner = (lines > 0) & (lines < NY - 1)
        lines[inner] += np.random.default_rng(SEED).integers(-jitter, jitter + 1, inner.sum())
    lat, lon = geolocation(lines, samples)
    lon = (lon + lon_offset + 180.0) % 360.0 - 180.0
    angle = 19.0 + 28.0 * samples / (NX - 1) + 0.002 * lines
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5netcdf.File(path, "w") as f:
        f.dimensions.update(
            {
                "sar_lines": NY,
                "sar_samples": NX,
                "sar_grid_points": lines.size,
                "2km_grid_lines": AMSR[0],
                "2km_grid_samples": AMSR[1],
                "polygon_codes": 3,
            }
        )
        for name in ("nersc_sar_primary", "nersc_sar_secondary"):
            _var(f, name, DIMS, fields[name])
        _var(f, "distance_map", DIMS, fields["distance_map"])
        for name, values in (
            ("sar_grid_line", lines),
            ("sar_grid_sample", samples),
            ("sar_grid_latitude", lat),
            ("sar_grid_longitude", lon),
            ("sar_grid_incidenceangle", angle),
            ("sar_grid_height", 0.0 * lines),
        ):
            _var(f, name, ("sar_grid_points",), values)
        for i, name in enumerate(AMSR2):
            _var(
                f,
                name,
                ("2km_grid_lines", "2km_grid_samples"),
                (180.0 + 5 * i + fields[name]).astype(np.float64),
                units="K",
            )
        polygons = np.where(fields["SIC"] == 0, 1, 2).astype(np.uint8)
        _var(f, "polygon_icechart", DIMS, polygons)
        codes = [
            "id;CT;CA;SA;FA;CB;SB;FB;CC;SC;FC;CN;CD;CF;POLY_TYPE",
            "1;1;-9;-9;-9;-9;-9;-9;-9;-9;-9;-9;-9;-9;W",
            "2;92;92;93;4;-9;-9;-9;-9;-9;-9;-9;-9;-9;I",
        ]
        var = f.create_variable("polygon_codes", ("polygon_codes",), dtype=h5py.string_dtype())
        var[:] = np.array(codes, dtype=object)


def make(out_dir: Path) -> Path:
    """Write the scenes and the broken files the tests need; return ``out_dir``."""
    out = Path(out_dir)
    train, test = scene(SEED), scene(SEED + 1)
    write_prep(
        out / TRAIN,
        train,
        {
            "scene_id": "20190317T101538_dmi_prep.nc",
            "original_id": RAW_ID,
            "ice_service": "dmi",
            "flip": 0,
            "pixel_spacing": 80,
        },
        charts=True,
    )
    write_prep(
        out / TEST,
        test,
        {
            "scene_id": "20210506T074016_cis_prep.nc",
            "original_id": "S1B_EW_GRDM_1SDH_20210506T074016_20210506T074116_026786_033316_2C1F",
            "ice_service": "cis",
            "flip": 0,
            "pixel_spacing": 80,
        },
        charts=False,
    )
    write_reference(out / REFERENCE, test)
    write_raw(out / RAW, train)
    write_raw(out / IRREGULAR, train, jitter=6)
    broken = out / "broken"
    write_prep(broken / "20190317T101538_dmi_nogrid_prep.nc", train, {}, charts=True, grid=False)
    write_reference(broken / "20210506T074016_cis_small_reference.nc", test, shape=(100, 120))
    (broken / "notes_prep.nc").write_text("scene list\n20190317T101538_dmi_prep.nc\n")
    data = (out / TRAIN).read_bytes()
    (broken / "20190317T101538_dmi_truncated_prep.nc").write_bytes(data[: len(data) // 3])
    return out


if __name__ == "__main__":
    import sys

    print(make(Path(sys.argv[1] if len(sys.argv) > 1 else "generated")))
