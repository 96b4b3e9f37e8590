"""Build a chip store from scenes: parallel over scenes, resumable, atomic.

Every scene becomes one finished part in ``<store>.partial/`` (a Dask task each,
on threads, processes or a distributed cluster). A crashed or interrupted build
keeps its finished parts and a rerun with the same settings skips them. Only when
all parts exist is the store assembled, in a temporary sibling folder renamed into
place at the very end: a reader never sees a half-built store. Assembly moves
chunks by hard link (no re-encoding), so it costs seconds even for large stores.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from dask.callbacks import Callback
from tqdm.auto import tqdm

from sarlab.atomic import atomic_directory
from sarlab.chips_format import COMPRESSIONS, FORMAT_VERSION, TABLE, chunk_file, create_arrays
from sarlab.chips_part import PART_ARRAYS, ChipConfig, read_part_meta, write_part
from sarlab.chips_read import ChipStore, ChunkArray
from sarlab.chips_scene import Reader, SceneInfo, check_same_kind, inspect_scene
from sarlab.conventions import IGNORE_INDEX
from sarlab.errors import InputError
from sarlab.preprocess.normalize import compute_band_stats

__all__ = ["assign_splits", "build_chip_store", "partial_path"]

Splits = Mapping[str, str] | Mapping[str, float] | Callable[[str], str] | None
_SCHEDULERS = {
    "threads": "threads",
    "processes": "processes",
    "sync": "synchronous",
    "synchronous": "synchronous",
}


def partial_path(store_path: str | os.PathLike[str]) -> Path:
    """Where finished scene parts wait until the store is assembled."""
    store_path = Path(store_path)
    return store_path.with_name(store_path.name + ".partial")


def assign_splits(scene_ids: Iterable[str], splits: Splits = None, seed: int = 0) -> dict[str, str]:
    """scene id -> split, so that no scene's chips land in two splits.

    ``splits`` is None (all "train"), a mapping scene id -> split name, a callable
    scene id -> split name, or a mapping split name -> fraction of scenes (e.g.
    ``{"train": 0.8, "val": 0.2}``), assigned by a seeded shuffle of the sorted ids.
    """
    ids = list(scene_ids)
    if splits is None:
        return dict.fromkeys(ids, "train")
    if callable(splits):
        return {sid: str(splits(sid)) for sid in ids}
    values = list(splits.values())
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return _fraction_splits(ids, {str(k): float(v) for k, v in splits.items()}, seed)
    missing = [sid for sid in ids if sid not in splits]
    if missing:
        raise ValueError(f"splits names no split for scene(s) {missing}")
    return {sid: str(splits[sid]) for sid in ids}


def _fraction_splits(ids: list[str], fractions: dict[str, float], seed: int) -> dict[str, str]:
    if any(f < 0 for f in fractions.values()) or not math.isclose(sum(fractions.values()), 1.0):
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    order = sorted(ids)
    np.random.default_rng(seed).shuffle(order)
    raw = np.array(list(fractions.values())) * len(order)
    counts = np.floor(raw).astype(int)
    # Largest remainders get the scenes left over (ties go to the split named first).
    for k in np.argsort(-(raw - counts), kind="stable")[: len(order) - counts.sum()]:
        counts[k] += 1
    names = np.repeat(list(fractions), counts)
    return {sid: str(names[i]) for i, sid in enumerate(order)}


class _Job:
    """One scene to chip; a plain class so Dask passes it through untouched."""

    def __init__(self, info: SceneInfo, config: ChipConfig, part_dir: Path) -> None:
        self.info, self.config, self.part_dir = info, config, part_dir


def _run_job(job: _Job) -> int:
    return write_part(job.info, job.config, job.part_dir)


class _Progress(Callback):
    def __init__(self, bar: tqdm, keys: set) -> None:
        super().__init__()
        self.bar, self.keys = bar, keys

    def _posttask(self, key, result, dsk, state, worker_id) -> None:
        if key in self.keys:
            self.bar.update(1)


def _is_client(scheduler: Any) -> bool:
    return hasattr(scheduler, "submit") and hasattr(scheduler, "gather")


def _run(jobs: list[_Job], scheduler: Any, num_workers: int | None, bar: tqdm) -> None:
    """Run the jobs with Dask; the first failure is raised (finished parts stay)."""
    if not jobs:
        return
    if _is_client(scheduler):
        from distributed import as_completed

        futures = [scheduler.submit(_run_job, job, pure=False) for job in jobs]
        for future in as_completed(futures):
            future.result()
            bar.update(1)
        return
    tasks = [dask.delayed(_run_job, pure=False)(job) for job in jobs]
    with _Progress(bar, {t.key for t in tasks}):
        dask.compute(*tasks, scheduler=_SCHEDULERS[scheduler], num_workers=num_workers)


def _link_chunks(src: Path, dst: Path, n: int, offset: int, ndim: int) -> None:
    """Hard-link a part's chunk files into the store, renumbered (copy where links fail)."""
    for i in range(n):
        source = chunk_file(src, i, ndim)
        if not source.exists():
            continue  # a chunk equal to the fill value is not written
        target = chunk_file(dst, offset + i, ndim)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)


def _table(scenes: list[SceneInfo], counts: list[int], partial: Path, split_of: dict[str, str]):
    import geopandas as gpd

    frames = [
        pd.read_parquet(partial / s.key / TABLE) for s, n in zip(scenes, counts, strict=True) if n
    ]
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, "index", np.arange(len(table), dtype=np.int64))
    table.insert(3, "split", table["scene_id"].map(split_of))
    geometry = gpd.GeoSeries.from_wkb(table.pop("footprint"), crs="EPSG:4326")
    return gpd.GeoDataFrame(table, geometry=geometry)


def _stats(store: Path, table: pd.DataFrame, config: ChipConfig, max_chips: int, progress: bool):
    """Band statistics of (a seeded sample of) the train chips; of all chips if none is train."""
    chosen = np.flatnonzero(table["split"].to_numpy() == "train")
    used = "train"
    if chosen.size == 0:
        chosen, used = np.arange(len(table)), "all"
    if max_chips and chosen.size > max_chips:
        chosen = np.sort(np.random.default_rng(0).choice(chosen, max_chips, replace=False))
    image = ChunkArray(store / "image")
    samples = (image[i] for i in chosen)
    stats = compute_band_stats(samples, list(config.bands), config.units, progress=progress)
    return stats, used, int(chosen.size)


def _assemble(
    out: Path,
    scenes: list[SceneInfo],
    counts: list[int],
    partial: Path,
    config: ChipConfig,
    split_of: dict[str, str],
    stats_max_chips: int,
    progress: bool,
) -> None:
    """Write the store into ``out`` from the finished parts: arrays, table, statistics, attrs."""
    total = sum(counts)
    arrays = create_arrays(
        out,
        total,
        bands=len(config.bands),
        size=config.size,
        n_labels=len(config.label_vars),
        incidence=config.incidence,
        compression=config.compression,
    )
    offset = 0
    for scene, n in zip(tqdm(scenes, desc="assembling", disable=not progress), counts, strict=True):
        for name, arr in arrays.items():
            _link_chunks(partial / scene.key / PART_ARRAYS / name, out / name, n, offset, arr.ndim)
        offset += n
    table = _table(scenes, counts, partial, split_of)
    stats, stats_split, stats_chips = _stats(out, table, config, stats_max_chips, progress)
    attrs = {
        "sarlab_chip_store": FORMAT_VERSION,
        "bands": list(config.bands),
        "polarization": ",".join(config.bands),
        "quantity": config.quantity,
        "units": config.units,
        "size": config.size,
        "stride": config.stride,
        "min_valid": config.min_valid,
        "n_chips": total,
        "n_scenes": len(scenes),
        "incidence": config.incidence,
        "label_vars": list(config.label_vars),
        "labels": {
            name: next((s.label_attrs[name] for s in scenes if s.label_attrs.get(name)), {})
            for name in config.label_vars
        },
        "ignore_index": IGNORE_INDEX,
        "splits": {k: int(v) for k, v in table["split"].value_counts().sort_index().items()},
        "stats": stats.to_dict(),
        "stats_split": stats_split,
        "stats_chips": stats_chips,
        "compression": config.compression,
    }
    zarr.open_group(out, mode="r+").attrs.update(attrs)
    table.to_parquet(out / TABLE, index=False)


def _resolve_labels(scenes: list[SceneInfo], label_vars: Iterable[str] | None) -> list[str]:
    found: list[str] = []
    for scene in scenes:
        found += [v for v in scene.label_vars if v not in found]
    if label_vars is None:
        return found
    wanted = [str(v) for v in label_vars]
    absent = [v for v in wanted if v not in found]
    if absent:
        raise InputError(None, f"label variable(s) {absent} are in none of the scenes")
    return wanted


def _resolve_incidence(scenes: list[SceneInfo], include: bool) -> bool:
    if not include or not any(s.has_incidence for s in scenes):
        return False
    lacking = [s for s in scenes if not s.has_incidence]
    if lacking:
        raise InputError(
            lacking[0].source,
            f"{lacking[0].name} has no incidence angle but other scenes do; "
            "pass include_incidence=False or add it",
        )
    return True


def build_chip_store(
    scenes: Iterable[Any] | Any,
    store_path: str | os.PathLike[str],
    *,
    size: int = 256,
    stride: int | None = None,
    min_valid: float = 0.5,
    label_vars: Iterable[str] | None = None,
    include_incidence: bool = True,
    splits: Splits = None,
    split_seed: int = 0,
    reader: str | Reader | None = None,
    reader_kwargs: Mapping[str, Any] | None = None,
    scheduler: Any = "threads",
    num_workers: int | None = None,
    compression: str = "lz4",
    stats_max_chips: int = 2048,
    overwrite: bool = False,
    progress: bool = True,
) -> ChipStore:
    """Cut scenes (paths or sarlab Datasets) into ``size`` x ``size`` chips in one Zarr store.

    A chip is kept where at least ``min_valid`` of its pixels are finite in every
    band. ``label_vars`` None takes every integer (y, x) variable found; a scene
    lacking one gets IGNORE_INDEX for it. Normalisation statistics come from (at
    most ``stats_max_chips``) chips of the train split. Rerunning after a crash
    resumes: scenes finished before are not chipped again.
    """
    store_path = Path(store_path)
    stride = size if stride is None else stride
    if size < 2 or stride < 1:
        raise ValueError(f"need size >= 2 and stride >= 1, got size={size}, stride={stride}")
    if not 0.0 <= min_valid <= 1.0:
        raise ValueError(f"min_valid is a fraction in [0, 1], got {min_valid}")
    if not _is_client(scheduler) and scheduler not in _SCHEDULERS:
        raise ValueError(
            f"unknown scheduler {scheduler!r}; use {sorted(_SCHEDULERS)} or a dask Client"
        )
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}; expected one of {COMPRESSIONS}")
    if store_path.exists() and not overwrite:
        raise FileExistsError(f"{store_path} already exists; pass overwrite=True to replace it")
    if isinstance(scenes, (str, os.PathLike, xr.Dataset)):
        scenes = [scenes]
    items = list(scenes)
    if not items:
        raise InputError(None, "no scenes given")
    infos = [
        inspect_scene(item, i, reader, reader_kwargs)
        for i, item in enumerate(tqdm(items, desc="checking scenes", disable=not progress))
    ]
    seen: dict[str, SceneInfo] = {}
    for info in infos:
        if info.scene_id in seen:
            raise InputError(
                info.source, f"scene id {info.scene_id!r} repeats {seen[info.scene_id].source}"
            )
        seen[info.scene_id] = info
    check_same_kind(infos)
    labels = _resolve_labels(infos, label_vars)
    config = ChipConfig(
        size=size,
        stride=stride,
        min_valid=float(min_valid),
        bands=tuple(infos[0].bands),
        quantity=infos[0].quantity,
        units=infos[0].units,
        label_vars=tuple(labels),
        incidence=_resolve_incidence(infos, include_incidence),
        compression=compression,
    )
    split_of = assign_splits([s.scene_id for s in infos], splits, split_seed)

    partial = partial_path(store_path)
    partial.mkdir(parents=True, exist_ok=True)
    # Temporary folders left by a killed build (never finished parts); one build per store.
    stale = [*partial.glob(".*.tmp"), *store_path.parent.glob(f".{store_path.name}.*.tmp")]
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)

    def finished(info: SceneInfo) -> bool:
        meta = read_part_meta(partial / info.key) or {}
        return (meta.get("scene_id"), meta.get("source"), meta.get("config")) == (
            info.scene_id,
            info.source,
            config.fingerprint(),
        )

    jobs = [_Job(s, config, partial / s.key) for s in infos if not finished(s)]
    with tqdm(
        total=len(infos),
        initial=len(infos) - len(jobs),
        desc="chipping scenes",
        unit="scene",
        disable=not progress,
    ) as bar:
        _run(jobs, scheduler, num_workers, bar)

    counts = [int(read_part_meta(partial / s.key)["n_chips"]) for s in infos]
    total = sum(counts)
    if total == 0:
        shutil.rmtree(partial, ignore_errors=True)  # nothing to resume: the settings must change
        raise InputError(
            None,
            f"no {size}x{size} chip with >= {min_valid:.0%} valid pixels in {len(infos)} scene(s)",
        )
    with atomic_directory(store_path, overwrite=overwrite) as tmp:
        _assemble(tmp, infos, counts, partial, config, split_of, stats_max_chips, progress)
    shutil.rmtree(partial, ignore_errors=True)
    return ChipStore(store_path)
