"""Chip store vs windowed GeoTIFF reads: training-loader throughput on the same chips.

The baseline is what one would do without a chip store: a torch Dataset reading
``rasterio`` windows of a tiled, deflate-compressed GeoTIFF (what
:func:`sarlab.io.geotiff.write_geotiff` and most COG providers write), with
windows aligned to the 256x256 tiles, its best case. Both loaders read the same
chips in the same shuffled order and normalise them the same way; the first
batch is compared to prove it. Each timing is one epoch with fresh loaders (so
GDAL's block cache cannot serve a second epoch from memory), measured from the
first batch on (steady state), and the median of ``repeats`` runs is reported. A
loader that does no I/O at all gives the ceiling: with several workers the
inter-process transfer of batches, not the storage, can be what limits.
"""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import rasterio
import torch
import xarray as xr
from affine import Affine
from rasterio.windows import Window
from torch.utils.data import DataLoader, Dataset

from sarlab.chips import ChipDataset, ChipStore, ChunkArray, build_chip_store
from sarlab.conventions import sar_attrs
from sarlab.io.geotiff import write_geotiff
from sarlab.preprocess.normalize import BandStats

__all__ = ["run"]

SIZE = 256
BATCH = 32
WORKERS = (0, 2)
TARGET_RATIO = 5.0


def _scene(side: int, seed: int) -> xr.Dataset:
    """A dual-pol IW-like scene: smooth backscatter field x gamma speckle (ENL 4.4), in dB."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    field = -12.0 + 4.0 * np.sin(6.0 * x + 3.0 * y) * np.cos(4.0 * y)
    image = np.empty((2, side, side), np.float32)
    for band, offset in enumerate((0.0, -7.0)):  # one band at a time keeps peak memory low
        speckle = rng.gamma(4.4, 1 / 4.4, size=(side, side)).astype(np.float32)
        image[band] = field + offset + 10 * np.log10(speckle)
    image[:, :, : side // 16] = np.nan  # no-data wedge at the swath edge
    ds = xr.Dataset(
        {"backscatter": (("band", "y", "x"), image, sar_attrs("sigma0", "dB", ["VV", "VH"]))},
        coords={"band": ["VV", "VH"]},
        attrs={"platform": "S1A", "mode": "IW", "product": "GRD", "scene_id": f"bench{seed}"},
    )
    transform = Affine(10.0, 0.0, 400000.0 + seed * side * 10.0, 0.0, -10.0, 5500000.0)
    return ds.rio.write_crs("EPSG:32633").rio.write_transform(transform)


class _GeoTiffWindows(Dataset):
    """The baseline: the store's chips read as rasterio windows of the source GeoTIFFs."""

    def __init__(self, table, paths: dict[str, Path], stats: BandStats) -> None:
        self.items = [
            (paths[r.scene_id], int(r.row), int(r.col), r.chip_id) for r in table.itertuples()
        ]
        self.stats = stats
        self._open: dict[Path, Any] = {}
        self._pid = None

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_open": {}, "_pid": None}

    def close(self) -> None:
        """Close the files (and so drop their blocks from GDAL's cache)."""
        if self._pid == os.getpid():
            for src in self._open.values():
                src.close()
        self._open = {}

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self._pid != os.getpid():
            self._open, self._pid = {}, os.getpid()
        path, row, col, chip_id = self.items[i]
        if path not in self._open:
            self._open[path] = rasterio.open(path)
        src = self._open[path]
        image = src.read([1, 2], window=Window(col, row, SIZE, SIZE))
        x = torch.nan_to_num_(self.stats.normalize(torch.from_numpy(image)), nan=0.0)
        return {"image": x, "index": i, "chip_id": chip_id}


def _loader(ds: Dataset, workers: int) -> DataLoader:
    return DataLoader(
        ds,
        batch_size=BATCH,
        shuffle=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(0),
    )


def _epoch(make: Any, workers: int) -> float:
    """Steady-state chips/s of one epoch through a fresh dataset and DataLoader.

    The clock starts at the first batch: worker start-up (a fork of this process)
    happens once per epoch in training, where epochs are far longer than here.
    """
    ds = make()
    n, start = 0, None
    for batch in _loader(ds, workers):
        if start is None:
            start = time.perf_counter()
        else:
            n += batch["image"].shape[0]
    elapsed = time.perf_counter() - start
    if hasattr(ds, "close"):
        ds.close()
    return n / elapsed


class _Ceiling(Dataset):
    """No I/O at all: the most chips/s a DataLoader moves on this machine."""

    def __init__(self, n: int, bands: int) -> None:
        self.n, self.chip = n, torch.zeros(bands, SIZE, SIZE)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.chip.clone(), "index": i, "chip_id": f"chip{i}"}


def _random_reads(read: Any, n: int, seed: int = 1) -> float:
    order = np.random.default_rng(seed).permutation(n)
    start = time.perf_counter()
    for i in order:
        read(int(i))
    return n / (time.perf_counter() - start)


def _reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux >= 4.0), so phases are measured apart."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_mb(field: str = "VmHWM") -> float:
    """Peak (VmHWM, since the last reset) or current (VmRSS) resident memory of this process."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _compare_loaders(store: ChipStore, paths: dict[str, Path], repeats: int) -> dict[str, Any]:
    """Same chips, same order, same normalisation: store loader vs GeoTIFF-window loader."""
    make_store = partial(ChipDataset, store.path, with_labels=False, with_incidence=False)
    make_tiff = partial(_GeoTiffWindows, store.table, paths, store.stats)
    first_store = next(iter(_loader(make_store(), 0)))
    first_tiff = next(iter(_loader(make_tiff(), 0)))
    result: dict[str, Any] = {
        "same_chips": bool(
            first_store["chip_id"] == first_tiff["chip_id"]
            and torch.equal(first_store["image"], first_tiff["image"])
        )
    }
    make_ceiling = partial(_Ceiling, len(store), len(store.bands))
    for workers in WORKERS:
        runs: dict[str, list[float]] = {"store": [], "geotiff": [], "ceiling": []}
        for _ in range(repeats):  # interleaved, so drift in machine load hits all alike
            runs["geotiff"].append(_epoch(make_tiff, workers))
            runs["store"].append(_epoch(make_store, workers))
            runs["ceiling"].append(_epoch(make_ceiling, workers))
        cps = {k: median(v) for k, v in runs.items()}
        result[f"workers{workers}"] = {
            "store_chips_per_s": round(cps["store"], 1),
            "geotiff_chips_per_s": round(cps["geotiff"], 1),
            "ratio": round(cps["store"] / cps["geotiff"], 2),
            "no_io_ceiling_chips_per_s": round(cps["ceiling"], 1),
            # the ratio a store costing nothing would reach through this loader
            "ceiling_ratio": round(cps["ceiling"] / cps["geotiff"], 2),
        }
    return result


def _direct_reads(store: ChipStore, tiff: Path) -> dict[str, float]:
    """Random single-chip reads without a DataLoader: where the time goes."""
    table = store.table
    image = ChunkArray(store.path / "image")
    windows = [
        Window(int(r.col), int(r.row), SIZE, SIZE)
        for r in table.itertuples()
        if r.source == str(tiff)
    ]
    with rasterio.open(tiff) as src:
        tiff_cps = _random_reads(lambda i: src.read([1, 2], window=windows[i]), len(windows))
    return {
        "chunk_reader_chips_per_s": round(_random_reads(image.__getitem__, len(store)), 1),
        "zarr_api_chips_per_s": round(
            _random_reads(lambda i: store.array("image")[i], len(store)), 1
        ),
        "geotiff_window_chips_per_s": round(tiff_cps, 1),
    }


def _compare_codecs(tiff: Path, work: Path, reader_kwargs: dict[str, str]) -> dict[str, Any]:
    """Store size and random-read speed of each compression, on the same chips."""
    result = {}
    for compression in ("lz4", "none", "zstd"):
        store = build_chip_store(
            [tiff],
            work / f"{compression}.zarr",
            size=SIZE,
            reader="geotiff",
            reader_kwargs=reader_kwargs,
            compression=compression,
            progress=False,
        )
        image = ChunkArray(store.path / "image")
        result[compression] = {
            "store_mb": round(_folder_bytes(store.path) / 2**20, 2),
            "chips_per_s": round(_random_reads(image.__getitem__, len(store)), 1),
        }
    return result


def run(out_dir: Path, quick: bool) -> dict[str, Any]:
    """Build a store from GeoTIFF scenes and compare loader throughput; returns the numbers."""
    side, n_scenes, repeats = (2048, 1, 1) if quick else (4096, 4, 3)
    work = Path(tempfile.mkdtemp(prefix="sarlab-bench-chips-"))
    try:
        paths = {}
        for seed in range(n_scenes):
            path = work / f"bench{seed}.tif"
            write_geotiff(_scene(side, seed), path, cog=False)
            paths[f"bench{seed}"] = path
        reader_kwargs = {"units": "dB", "quantity": "sigma0"}
        phased = _reset_peak_rss()  # scene synthesis above is not part of the measurement
        rss_before = _rss_mb("VmRSS")
        start = time.perf_counter()
        store = build_chip_store(
            list(paths.values()),
            work / "chips.zarr",
            size=SIZE,
            reader="geotiff",
            reader_kwargs=reader_kwargs,
            progress=False,
        )
        build_s = time.perf_counter() - start
        rss_build = _rss_mb()
        _reset_peak_rss()
        loaders = _compare_loaders(store, paths, repeats)
        rss_loaders = _rss_mb()
        ratio = min(loaders[f"workers{w}"]["ratio"] for w in WORKERS)
        return {
            "benchmark": "chips",
            "quick": quick,
            "scenes": n_scenes,
            "scene_shape": [2, side, side],
            "chip_size": SIZE,
            "batch_size": BATCH,
            "repeats": repeats,
            "n_chips": len(store),
            "build_s": round(build_s, 3),
            "build_chips_per_s": round(len(store) / build_s, 1),
            "store_mb": round(_folder_bytes(store.path) / 2**20, 2),
            "geotiff_mb": round(sum(p.stat().st_size for p in paths.values()) / 2**20, 2),
            "dataloader": loaders,
            "ratio": ratio,
            "target_ratio": TARGET_RATIO,
            "meets_target": ratio >= TARGET_RATIO,
            "direct_random_reads": _direct_reads(store, paths["bench0"]),
            "compression": _compare_codecs(paths["bench0"], work, reader_kwargs),
            # main-process peaks per phase (cumulative since start where /proc is absent);
            # forked workers count the pages they share with this process
            "rss_before_build_mb": rss_before,
            "peak_rss_build_mb": rss_build,
            "peak_rss_loaders_mb": rss_loaders,
            "peak_rss_per_phase": phased,
            "peak_rss_workers_mb": round(
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
            ),
            "torch_threads": torch.get_num_threads(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
