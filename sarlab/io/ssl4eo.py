"""SSL4EO-S12 Sentinel-1 GRD (VV, VH; sigma0 in dB) as a shard stream, in its published layouts.

SSL4EO-S12 (Wang et al. 2022, https://github.com/zhu-xlab/SSL4EO-S12) holds 264 x 264 px
(10 m) patches at about 250k locations, four acquisitions per location, exported
from Earth Engine ``COPERNICUS/S1_GRD`` (IW, sigma0 in dB). Three layouts exist;
``layout="auto"`` recognises each from the files under the given folder:

``"webdataset"`` -- v1.1 on Hugging Face today (https://huggingface.co/datasets/
    embed2scale/SSL4EO-S12-v1.1, since Feb 2026; ``hf download embed2scale/SSL4EO-S12-v1.1
    --repo-type dataset --include "train/S1GRD/*"``): ``{split}/S1GRD/
    ssl4eos12_shard_NNNNNN.tar``, each member ``<key>.zarr.zip`` one location: a zarr v2
    group with ``bands`` (time, band, y, x), ``band`` names, ``file_id`` (the S1 product of
    each timestamp), ``center_lat``/``center_lon``. Loader code:
    github.com/DLR-MF-DAS/SSL4EO-S12-v1.1 ``ssl4eos12_dataset.py``.
``"zarr"`` -- the v1.1 "Zarr chunk file" release (https://huggingface.co/datasets/
    embed2scale/SSL4EO-S12-v1.1-Zarr, also https://datapub.fz-juelich.de/ssl4eo-s12/):
    ``{split}/S1GRD/ssl4eos12_{split}_seasonal_data_NNNNNN.zarr.zip``, 64 locations per
    file, zarr v2 (written by xarray) with ``bands`` (sample, time, band, y, x) float16 dB,
    ``band`` = ["vv", "vh"], ``sample_id`` (sample, time) like "0080717_0", ``file_id``,
    ``time_``, ``center_lat``/``center_lon``, ``crs``, ``x_``/``y_`` (per the repository
    README). Read one storage chunk at a time (whatever the chunking) through zarr's
    ZipStore, so a file is never loaded whole.
``"geotiff"`` -- the original v1 release (mediaTUM 1660427, or huggingface.co/datasets/
    wangyi111/SSL4EO-S12 ``s1_grd/s1.tar.gz.part*``): ``s1/<location>/<product>/VV.tif``
    and ``VH.tif``, float32 dB (zhu-xlab ``ssl4eo_dataset.py``), one location folder = one
    shard. This is the layout data_manifests/ssl4eo-s12-s1.yaml describes.

v1.1 timestamps are sorted by date, not by season. Each (location, timestamp) is
one sample (``timestamps="all"``); ``"random"`` takes one per location and epoch,
a list takes those timestamp positions. Published band statistics (mean/std in
dB, no percentiles) are :data:`S1GRD_MEAN_STD`; :meth:`~ShardStream.band_stats`
computes full :class:`~sarlab.preprocess.normalize.BandStats` from a stream.
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.storage import MemoryStore, ZipStore

from sarlab.errors import InputError
from sarlab.io.streaming import ShardStream, find_shards

__all__ = ["LAYOUTS", "S1GRD_MEAN_STD", "SSL4EOS1Stream", "detect_layout"]

PathLike = str | os.PathLike[str]
LAYOUTS = ("webdataset", "zarr", "geotiff")
BANDS = ("VV", "VH")
MAX_TIMES = 64  # item number = location * MAX_TIMES + timestamp
#: Published S1GRD mean/std (dB): v1.1 (DLR-MF-DAS/SSL4EO-S12-v1.1 README) and v1
#: (zhu-xlab/SSL4EO-S12 ssl4eo_dataset.py S1_MEAN/S1_STD, "calculated from 50k data").
S1GRD_MEAN_STD = {
    "v1.1": {"bands": ["VV", "VH"], "mean": [-12.577, -20.265], "std": [5.179, 5.872]},
    "v1": {
        "bands": ["VV", "VH"],
        "mean": [-12.54847273, -20.19237134],
        "std": [5.25697717, 5.91150917],
    },
}


def detect_layout(root: PathLike) -> str:
    """ "webdataset", "zarr" or "geotiff" from the files under ``root``."""
    root = Path(root)
    if root.is_file():
        name = root.name
        if name.endswith(".tar"):
            return "webdataset"
        if name.endswith(".zarr.zip"):
            return "zarr"
    elif root.is_dir():
        if next(root.glob("**/*.zarr.zip"), None) is not None:
            return "zarr"
        if next(root.glob("**/*.tar"), None) is not None:
            return "webdataset"
        if _location_dirs(root):
            return "geotiff"
    raise InputError(
        root,
        "holds no SSL4EO-S12 S1 data: expected *.tar (v1.1 webdataset), *.zarr.zip (v1.1 "
        "Zarr) or s1/<location>/<product>/VV.tif (v1)",
    )


def _location_dirs(root: Path) -> list[Path]:
    """v1 location folders: ``root/s1/*`` or ``root/*`` whose product folders hold VV.tif."""
    base = root / "s1" if (root / "s1").is_dir() else root
    locations = sorted(p for p in base.iterdir() if p.is_dir())
    for loc in locations[:1]:
        if next(loc.glob("*/VV.tif"), None) is None:
            return []
    return locations


def _zip_group(data: bytes, where: str) -> zarr.Group:
    """A zarr group from the bytes of a .zarr.zip (one webdataset member), in memory."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            proto = default_buffer_prototype().buffer
            entries = {
                n: proto.from_bytes(zf.read(n)) for n in zf.namelist() if not n.endswith("/")
            }
        return zarr.open_group(MemoryStore(entries), mode="r")
    except (zipfile.BadZipFile, zarr.errors.GroupNotFoundError, ValueError, KeyError) as err:
        raise InputError(where, f"is not a zarr.zip group ({err})") from err


class SSL4EOS1Stream(ShardStream):
    """SSL4EO-S12 Sentinel-1 GRD patches (sigma0, dB) read shard by shard; see the module doc.

    ``root`` is a folder (searched recursively) or one shard file. Keyword
    arguments are those of :class:`~sarlab.io.streaming.ShardStream`.
    """

    name = "SSL4EO-S12 S1GRD"
    native_bands = BANDS
    quantity = "sigma0"
    native_units = "dB"

    def __init__(
        self,
        root: PathLike,
        *,
        layout: str = "auto",
        timestamps: str | Sequence[int] = "all",
        **kwargs: Any,
    ) -> None:
        root = Path(root).expanduser()
        self.layout = detect_layout(root) if layout == "auto" else layout
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be 'auto' or one of {LAYOUTS}, got {layout!r}")
        if isinstance(timestamps, str):
            if timestamps not in ("all", "random"):
                raise ValueError(
                    f"timestamps must be 'all', 'random' or a list, got {timestamps!r}"
                )
            self.timestamps: str | list[int] = timestamps
        else:
            self.timestamps = sorted({int(t) for t in timestamps})
            if not self.timestamps or min(self.timestamps) < 0 or max(self.timestamps) >= MAX_TIMES:
                raise ValueError(
                    f"timestamps must be positions in [0, {MAX_TIMES}), got {timestamps}"
                )
        if self.layout == "geotiff":
            shards = _location_dirs(root) if root.is_dir() else [root]
        else:
            pattern = "*.tar" if self.layout == "webdataset" else "*.zarr.zip"
            shards = find_shards(root, [pattern])
        super().__init__(shards, root=root, **kwargs)

    # ----------------------------------------------------------------- helpers
    def _times(self, n_times: int, shard_number: int, location: int) -> list[int]:
        if self.timestamps == "all":
            return list(range(n_times))
        if self.timestamps == "random":
            rng = np.random.default_rng([self.seed, self.epoch, shard_number, location, 3])
            return [int(rng.integers(n_times))]
        return [t for t in self.timestamps if t < n_times]

    def _band_positions(self, group: zarr.Group, n_bands: int, where: str) -> list[int]:
        """Positions of (VV, VH) along the band axis, from the ``band`` names when present."""
        if "band" in group:
            names = [str(b).upper() for b in np.asarray(group["band"][...]).ravel()]
        else:
            names = list(BANDS)
        if len(names) != n_bands or any(b not in names for b in BANDS):
            raise InputError(where, f"bands {names} (axis of {n_bands}) do not hold VV and VH")
        return [names.index(b) for b in BANDS]

    @staticmethod
    def _bands_array(group: zarr.Group, ndim: int, where: str) -> zarr.Array:
        if "bands" not in group or not isinstance(group["bands"], zarr.Array):
            raise InputError(where, f"has no 'bands' array (has {sorted(group.keys())})")
        bands = group["bands"]
        if bands.ndim != ndim:
            dims = "(sample, time, band, y, x)" if ndim == 5 else "(time, band, y, x)"
            raise InputError(where, f"'bands' has shape {bands.shape}, expected {dims}")
        return bands

    # ----------------------------------------------------------------- layouts
    def _items(self, shard: Path, shard_number: int) -> Iterator[tuple[int, str, np.ndarray]]:
        if self.layout == "zarr":
            yield from self._zarr_items(shard, shard_number)
        elif self.layout == "webdataset":
            yield from self._tar_items(shard, shard_number)
        else:
            yield from self._geotiff_items(shard, shard_number)

    def _count(self, shard: Path) -> int | None:
        if self.layout != "zarr":
            return None
        with ZipStore(shard, mode="r") as store:
            bands = self._bands_array(zarr.open_group(store, mode="r"), 5, str(shard))
            n, n_times = bands.shape[:2]
        return n * len(self._times(n_times, 0, 0))

    def _zarr_items(self, shard: Path, k: int) -> Iterator[tuple[int, str, np.ndarray]]:
        try:
            store = ZipStore(shard, mode="r")
            group = zarr.open_group(store, mode="r")
        except (zipfile.BadZipFile, zarr.errors.GroupNotFoundError, OSError) as err:
            raise InputError(shard, f"is not a zarr.zip group ({err})") from err
        try:
            bands = self._bands_array(group, 5, str(shard))
            order = self._band_positions(group, bands.shape[2], str(shard))
            n, n_times = bands.shape[:2]
            ids = np.asarray(group["sample_id"][...]) if "sample_id" in group else None
            names = np.asarray(group["sample"][...]) if "sample" in group else None
            chosen = [set(self._times(n_times, k, i)) for i in range(n)]
            step_s, step_t = bands.chunks[:2]
            for s0 in range(0, n, step_s):
                for t0 in range(0, n_times, step_t):
                    s1, t1 = min(n, s0 + step_s), min(n_times, t0 + step_t)
                    wanted = [
                        (i, t) for i in range(s0, s1) for t in range(t0, t1) if t in chosen[i]
                    ]
                    if not wanted:
                        continue
                    block = np.asarray(bands[s0:s1, t0:t1])  # one storage chunk (or a few)
                    for i, t in wanted:
                        if ids is not None and ids.shape == (n, n_times):
                            chip_id = str(ids[i, t])
                        elif names is not None and names.shape == (n,):
                            chip_id = f"{names[i]}_{t}"
                        else:
                            chip_id = f"{shard.name}:{i}_{t}"
                        yield i * MAX_TIMES + t, chip_id, block[i - s0, t - t0][order]
        finally:
            store.close()

    def _tar_items(self, shard: Path, k: int) -> Iterator[tuple[int, str, np.ndarray]]:
        try:
            with tarfile.open(shard, mode="r|*") as tar:  # a stream: members in file order
                location = 0
                for member in tar:
                    if not (member.isfile() and member.name.endswith(".zarr.zip")):
                        continue
                    where = f"{shard}:{member.name}"
                    handle = tar.extractfile(member)
                    group = _zip_group(handle.read() if handle is not None else b"", where)
                    bands = self._bands_array(group, 4, where)
                    order = self._band_positions(group, bands.shape[1], where)
                    key = Path(member.name).name[: -len(".zarr.zip")]
                    data = np.asarray(bands[...])
                    for t in self._times(bands.shape[0], k, location):
                        yield location * MAX_TIMES + t, f"{key}_{t}", data[t][order]
                    location += 1
        except (tarfile.TarError, OSError) as err:
            raise InputError(shard, f"is not a readable tar shard ({err})") from err

    def _geotiff_items(self, location: Path, k: int) -> Iterator[tuple[int, str, np.ndarray]]:
        products = sorted(p for p in location.iterdir() if p.is_dir())
        if not products:
            raise InputError(location, "holds no product folders with VV.tif and VH.tif")
        for t in self._times(len(products), k, 0):
            product, planes = products[t], []
            for band in BANDS:
                path = product / f"{band}.tif"
                if not path.is_file():
                    raise InputError(product, f"has no {band}.tif")
                with rasterio.open(path) as src:
                    plane = src.read(1).astype(np.float32)
                    if src.nodata is not None and not np.isnan(src.nodata):
                        plane[plane == src.nodata] = np.nan
                planes.append(plane)
            if planes[0].shape != planes[1].shape:
                raise InputError(
                    product, f"VV.tif is {planes[0].shape} but VH.tif {planes[1].shape}"
                )
            yield t, f"{location.name}/{product.name}", np.stack(planes)
