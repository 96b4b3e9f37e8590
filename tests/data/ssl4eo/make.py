"""Generate small SSL4EO-S12 Sentinel-1 GRD shards in the three published layouts (seeded).

Written with xarray/zarr/zipfile/tarfile/rasterio directly, not with sarlab, so the
reader is tested against the formats (see sarlab/io/ssl4eo.py for the sources):

* ``v11_zarr/train/S1GRD/ssl4eos12_train_seasonal_data_00000{1,2,3}.zarr.zip``: the
  v1.1 "Zarr chunk file" release: an xarray-written zarr v2 store (consolidated),
  zipped uncompressed, with ``bands`` (sample, time, band, y, x) float16 dB chunked
  one timestamp at a time, ``band`` = ["vv", "vh"], ``sample`` ids, ``sample_id``
  ("<sample>_<t>"), ``file_id`` (S1 product names), ``time_``, ``center_lat``/
  ``center_lon``, ``crs``, ``x_``/``y_``. 4 locations x 4 timestamps of 40 x 40 px
  (the real files: 64 x 4 of 264 x 264).
* ``v11_wds/train/S1GRD/ssl4eos12_shard_00000{1,2}.tar``: the v1.1 webdataset release:
  3 members ``<sample>.zarr.zip`` per tar, each a zarr v2 group with ``bands``
  (time, band, y, x) float16 of one location.
* ``v1/s1/<location>/<product>/{VV,VH}.tif``: the original release, float32 dB
  GeoTIFFs (UTM, 10 m), 3 locations x 2 acquisitions of 44 x 44 px (real: 4 x 264).

Values: VV ~ N(-12, 3) dB, VH = VV - 8 dB + N(0, 1), as float16 where the format
stores float16; location 1, timestamp 2 of the first zarr shard has a NaN block
(rows 0-9, columns 0-9). Everything a test compares is recomputed by ``values()``.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr
from rasterio.transform import from_origin

SEED = 11
N_TIMES = 4
ZARR_SHARDS, ZARR_SAMPLES, ZARR_PX = 3, 4, 40
WDS_SHARDS, WDS_SAMPLES = 2, 3
V1_LOCATIONS, V1_TIMES, V1_PX = 3, 2, 44
ZARR_DIR = "v11_zarr/train/S1GRD"
WDS_DIR = "v11_wds/train/S1GRD"
V1_DIR = "v1/s1"
NAN_AT = (0, 1, 2)  # (zarr shard, location, timestamp) with a NaN block


def values(seed: int, shape: tuple[int, ...], dtype: str = "float16") -> np.ndarray:
    """(..., 2, H, W) dB values of VV and VH."""
    rng = np.random.default_rng(seed)
    vv = rng.normal(-12.0, 3.0, shape)
    vh = vv - 8.0 + rng.normal(0.0, 1.0, shape)
    return np.stack([vv, vh], axis=-3).astype(dtype)


def product_id(location: int, t: int) -> str:
    day = 1 + 90 * t
    date = np.datetime64("2020-01-01") + np.timedelta64(day, "D")
    stamp = str(date).replace("-", "") + "T054512"
    return f"S1A_IW_GRDH_1SDV_{stamp}_{stamp[:-2]}37_03{location:04d}_05E{t}A1_{location:04X}"


def zip_store(folder: Path, out: Path) -> None:
    """Zip a zarr directory store the way zarr 2's ZipStore does (stored, relative names)."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())


def zarr_shard_dataset(shard: int) -> xr.Dataset:
    n, h = ZARR_SAMPLES, ZARR_PX
    bands = values(SEED + shard, (n, N_TIMES, h, h))
    if shard == NAN_AT[0]:
        bands[NAN_AT[1], NAN_AT[2], :, :10, :10] = np.nan
    samples = [f"{1000 * (shard + 1) + i:07d}" for i in range(n)]
    times = np.array(
        [[np.datetime64("2020-01-01T05:45:12") + np.timedelta64(90 * t, "D") for t in range(4)]] * n
    ).astype("datetime64[ns]")
    rng = np.random.default_rng(100 + shard)
    x0 = rng.uniform(300_000, 700_000, n)
    y0 = rng.uniform(4_000_000, 6_000_000, n)
    return xr.Dataset(
        {
            "bands": (("sample", "time", "band", "y", "x"), bands),
            "center_lat": (("sample",), rng.uniform(-50, 60, n)),
            "center_lon": (("sample",), rng.uniform(-120, 140, n)),
            "crs": (("sample",), np.full(n, 32633, dtype="int64")),
            "file_id": (
                ("sample", "time"),
                np.array([[product_id(1000 * shard + i, t) for t in range(4)] for i in range(n)]),
            ),
            "sample_id": (
                ("sample", "time"),
                np.array([[f"{s}_{t}" for t in range(N_TIMES)] for s in samples]),
            ),
            "time_": (("sample", "time"), times),
            "x_": (("sample", "x"), x0[:, None] + 10.0 * np.arange(h)),
            "y_": (("sample", "y"), y0[:, None] - 10.0 * np.arange(h)),
        },
        coords={
            "band": ["vv", "vh"],
            "sample": samples,
            "time": np.arange(N_TIMES),
            "x": np.arange(h),
            "y": np.arange(h),
        },
    )


def write_zarr_shards(out: Path, tmp: Path) -> list[Path]:
    folder = out / ZARR_DIR
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for shard in range(ZARR_SHARDS):
        ds = zarr_shard_dataset(shard)
        store = tmp / f"zarr{shard}.zarr"
        chunks = (ZARR_SAMPLES, 1, 2, ZARR_PX, ZARR_PX)  # timestamps chunked separately
        ds.to_zarr(store, zarr_format=2, consolidated=True, encoding={"bands": {"chunks": chunks}})
        path = folder / f"ssl4eos12_train_seasonal_data_{shard + 1:06d}.zarr.zip"
        zip_store(store, path)
        paths.append(path)
    return paths


def wds_seed(shard: int, i: int) -> int:
    return SEED + 50 + 7 * shard + i


def wds_member(shard: int, i: int, tmp: Path) -> tuple[str, bytes]:
    key = f"{5000 + 10 * shard + i:07d}"
    ds = xr.Dataset(
        {
            "bands": (
                ("time", "band", "y", "x"),
                values(SEED + 50 + 7 * shard + i, (N_TIMES, 36, 36)),
            ),
            "center_lat": ((), 10.0 + i),
            "center_lon": ((), 20.0 + shard),
            "file_id": (("time",), np.array([product_id(i, t) for t in range(N_TIMES)])),
            "time": (("time",), np.arange(N_TIMES, dtype="int64") * 7_776_000 * 10**9),
        },
        coords={"band": ["vv", "vh"], "sample": key},
    )
    store = tmp / f"wds{shard}_{i}.zarr"
    ds.to_zarr(store, zarr_format=2, consolidated=True)
    buf = tmp / f"wds{shard}_{i}.zarr.zip"
    zip_store(store, buf)
    return f"{key}.zarr.zip", buf.read_bytes()


def write_wds_shards(out: Path, tmp: Path) -> list[Path]:
    folder = out / WDS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for shard in range(WDS_SHARDS):
        path = folder / f"ssl4eos12_shard_{shard + 1:06d}.tar"
        with tarfile.open(path, "w") as tar:
            for i in range(WDS_SAMPLES):
                name, data = wds_member(shard, i, tmp)
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), 1_700_000_000
                tar.addfile(info, io.BytesIO(data))
        paths.append(path)
    return paths


def write_v1(out: Path) -> list[Path]:
    root = out / V1_DIR
    locations = []
    for loc in range(V1_LOCATIONS):
        location = root / f"{loc:07d}"
        data = values(SEED + 200 + loc, (V1_TIMES, V1_PX, V1_PX), dtype="float32")
        for t in range(V1_TIMES):
            product = location / product_id(loc, t)
            product.mkdir(parents=True, exist_ok=True)
            transform = from_origin(400_000 + 3000 * loc, 5_500_000, 10.0, 10.0)
            for b, band in enumerate(("VV", "VH")):
                with rasterio.open(
                    product / f"{band}.tif", "w", driver="GTiff", width=V1_PX, height=V1_PX,
                    count=1, dtype="float32", crs="EPSG:32633", transform=transform,
                ) as dst:  # fmt: skip
                    dst.write(data[t, b], 1)
        locations.append(location)
    return locations


def make(out_dir: Path) -> Path:
    """Write the three layouts under ``out_dir``; return ``out_dir``."""
    out = Path(out_dir)
    tmp = out / "_tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    write_zarr_shards(out, tmp)
    write_wds_shards(out, tmp)
    write_v1(out)
    for path in sorted(tmp.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    tmp.rmdir()
    return out


if __name__ == "__main__":
    import sys

    print(make(Path(sys.argv[1] if len(sys.argv) > 1 else "ssl4eo_fixture")))
