"""Reading a chip store: :class:`ChipStore` for inspection, :class:`ChipDataset` for training.

Training reads chips in random order from several DataLoader worker processes.
Two things matter there. Handles must never be shared across ``fork`` (each
worker opens its own, lazily, on first use; pickling drops them). And the cost
per chip must be small: zarr-python 3 spends about half a millisecond per
``array[i]`` in its asyncio machinery, several times the cost of reading and
decoding a 256x256x2 chip (~0.08 ms; ``sarlab bench chips`` measures both), so
the dataset reads each chip's chunk file directly (:class:`ChunkArray`) whenever
the array has the layout the builder writes, and falls back to zarr otherwise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pandas as pd
import torch
import xarray as xr
import zarr
from affine import Affine
from rasterio.windows import Window

from sarlab.chips_format import FORMAT_VERSION, TABLE, chunk_file
from sarlab.conventions import IGNORE_INDEX, IMAGE_VAR, INCIDENCE_VAR
from sarlab.errors import InputError
from sarlab.preprocess.normalize import BandStats

__all__ = ["ChipDataset", "ChipStore", "ChunkArray"]

PathLike = str | os.PathLike[str]
_DECODERS = {"blosc": numcodecs.Blosc, "zstd": numcodecs.Zstd}


def _fill(value: Any, dtype: np.dtype) -> Any:
    if isinstance(value, str):
        return float(value)  # "NaN", "Infinity", "-Infinity" in Zarr v3 JSON
    return np.asarray(value, dtype=dtype).item()


class ChunkArray:
    """Random access to an array stored one chip per chunk, straight from its chunk files."""

    def __init__(self, array_dir: PathLike) -> None:
        self.path = Path(array_dir)
        meta = json.loads((self.path / "zarr.json").read_text())
        self.shape = tuple(meta["shape"])
        self.ndim = len(self.shape)
        self.dtype = np.dtype(meta["data_type"])
        self.fill_value = _fill(meta["fill_value"], self.dtype)
        self._decoder, self._zarr = self._plan(meta), None

    def _plan(self, meta: dict[str, Any]) -> Any | None:
        """The decoder for the builder's layout ("" for raw bytes), None to read through zarr."""
        chunks = meta["chunk_grid"].get("configuration", {}).get("chunk_shape")
        encoding = meta.get("chunk_key_encoding", {})
        codecs = meta.get("codecs", [])
        ok = (
            meta.get("zarr_format") == 3
            and meta["chunk_grid"].get("name") == "regular"
            and chunks == [1, *self.shape[1:]]
            and encoding.get("name") == "default"
            and encoding.get("configuration", {}).get("separator", "/") == "/"
            and not meta.get("storage_transformers")
            and codecs
            and codecs[0]["name"] == "bytes"
            and codecs[0].get("configuration", {}).get("endian", "little") == "little"
            and len(codecs) <= 2
            and (len(codecs) == 1 or codecs[1]["name"] in _DECODERS)
        )
        if not ok:
            return None
        return "" if len(codecs) == 1 else _DECODERS[codecs[1]["name"]]()

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        index = int(index)
        if not 0 <= index < self.shape[0]:
            raise IndexError(f"chip {index} out of range for {self.shape[0]} chips in {self.path}")
        if self._decoder is None:
            if self._zarr is None:
                self._zarr = zarr.open_array(self.path, mode="r")
            return np.asarray(self._zarr[index])
        out = np.empty(self.shape[1:], dtype=self.dtype.newbyteorder("<"))
        path = chunk_file(self.path, index, self.ndim)
        try:
            with open(path, "rb") as handle:
                if self._decoder == "":
                    if handle.readinto(memoryview(out).cast("B")) != out.nbytes:
                        raise InputError(path, "chunk file is truncated")
                else:
                    self._decoder.decode(handle.read(), out=out)
        except FileNotFoundError:
            out.fill(self.fill_value)  # Zarr leaves chunks equal to the fill value unwritten
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_zarr": None}


def _store_meta(path: Path) -> dict[str, Any]:
    meta_file = path / "zarr.json"
    if not meta_file.is_file():
        raise InputError(path, "is not a chip store (no zarr.json; was the build finished?)")
    attrs = json.loads(meta_file.read_text()).get("attributes", {})
    version = attrs.get("sarlab_chip_store")
    if version is None:
        raise InputError(path, "is a Zarr store but not a sarlab chip store")
    if version > FORMAT_VERSION:
        raise InputError(path, f"chip store format {version} is newer than this sarlab reads")
    return attrs


class ChipStore:
    """A finished chip store: its chip table, attrs, statistics and single chips with geometry."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self._attrs = _store_meta(self.path)
        self._arrays: dict[str, zarr.Array] = {}

    def __repr__(self) -> str:
        a = self._attrs
        return (
            f"ChipStore({str(self.path)!r}: {a['n_chips']} chips of {a['size']}x{a['size']}, "
            f"bands {a['bands']}, {a['quantity']} {a['units']}, splits {a['splits']})"
        )

    def __len__(self) -> int:
        return int(self._attrs["n_chips"])

    @property
    def attrs(self) -> dict[str, Any]:
        """The store's attributes (a copy): bands, quantity, units, size, stats, splits ..."""
        return json.loads(json.dumps(self._attrs))

    @property
    def bands(self) -> list[str]:
        return list(self._attrs["bands"])

    @cached_property
    def table(self) -> pd.DataFrame:
        """One row per chip, row ``i`` describing chip ``i`` (a GeoDataFrame, EPSG:4326)."""
        import geopandas as gpd

        return gpd.read_parquet(self.path / TABLE)

    @property
    def stats(self) -> BandStats | None:
        """Normalisation statistics of the bands, computed on the train split."""
        stats = self._attrs.get("stats")
        return None if stats is None else BandStats.from_dict(stats)

    def array(self, name: str) -> zarr.Array:
        """The zarr array ``image``, ``incidence`` or ``labels`` (opened on first use)."""
        if name not in self._arrays:
            if not (self.path / name / "zarr.json").is_file():
                raise KeyError(f"{self.path} has no {name!r} array")
            self._arrays[name] = zarr.open_array(self.path / name, mode="r")
        return self._arrays[name]

    def window_of(self, index: int) -> Window:
        """The chip's pixel window in its source scene (``table.scene_id[index]``)."""
        row = self.table.iloc[int(index)]
        return Window(int(row["col"]), int(row["row"]), int(row["width"]), int(row["height"]))

    def chip(self, index: int) -> xr.Dataset:
        """Chip ``index`` as a sarlab Dataset, geo-referenced like its scene was."""
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"chip {index} out of range for {len(self)} chips in {self.path}")
        row = self.table.iloc[index]
        a = self._attrs
        data = {
            IMAGE_VAR: xr.DataArray(
                self.array("image")[index],
                dims=("band", "y", "x"),
                coords={"band": a["bands"]},
                attrs={
                    "quantity": a["quantity"],
                    "units": a["units"],
                    "polarization": ",".join(a["bands"]),
                },
            )
        }
        if a["incidence"]:
            data[INCIDENCE_VAR] = xr.DataArray(
                self.array("incidence")[index], dims=("y", "x"), attrs={"units": "degrees"}
            )
        if a["label_vars"]:
            labels = self.array("labels")[index]
            for k, name in enumerate(a["label_vars"]):
                attrs = {**a["labels"].get(name, {}), "ignore_index": IGNORE_INDEX}
                data[name] = xr.DataArray(labels[k], dims=("y", "x"), attrs=attrs)
        keys = ("chip_id", "scene_id", "split", "source", "platform", "mode", "product")
        attrs = {k: str(row[k]) for k in keys if k in row and row[k] is not None}
        attrs.update(
            index=index, footprint=row.geometry.wkt, valid_fraction=float(row["valid_fraction"])
        )
        ds = xr.Dataset(data, attrs=attrs)
        if row["source_crs"] is not None:
            transform = Affine(*row["affine"])
            if transform.b == 0 and transform.d == 0:
                h, w = int(row["height"]), int(row["width"])
                ds = ds.assign_coords(
                    x=transform.c + transform.a * (np.arange(w) + 0.5),
                    y=transform.f + transform.e * (np.arange(h) + 0.5),
                )
            ds = ds.rio.write_crs(row["source_crs"]).rio.write_transform(transform)
        return ds

    def dataset(self, **kwargs: Any) -> ChipDataset:
        """A torch :class:`ChipDataset` over this store."""
        return ChipDataset(self.path, **kwargs)


class ChipDataset(torch.utils.data.Dataset):
    """Chips of a store as normalised tensors, safe for DataLoader workers.

    Each sample is ``dict(image=(C, H, W) float32, index=store index, chip_id=str)``
    plus ``incidence`` ((H, W) float32 degrees, NaN where unknown) and ``labels``
    ((K, H, W) int64 with IGNORE_INDEX, ready for ``cross_entropy(ignore_index=255)``)
    where the store has them. With ``normalize`` the image is
    ``(clip(x, p01, p99) - mean) / std`` per band, and NaN (nodata) becomes
    ``nan_fill`` (0 = the band mean) unless ``nan_fill`` is None.
    """

    def __init__(
        self,
        store_path: PathLike,
        split: str | Sequence[str] | None = None,
        bands: Sequence[str] | None = None,
        normalize: bool = True,
        with_labels: bool | None = None,
        with_incidence: bool | None = None,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        stats: BandStats | dict[str, Any] | None = None,
        nan_fill: float | None = 0.0,
    ) -> None:
        self.path = Path(store_path)
        attrs = _store_meta(self.path)
        store_bands = list(attrs["bands"])
        self.bands = list(bands) if bands is not None else store_bands
        missing = [b for b in self.bands if b not in store_bands]
        if missing:
            raise ValueError(f"{self.path} has bands {store_bands}, not {missing}")
        self._band_index = [store_bands.index(b) for b in self.bands]
        self.with_labels = bool(attrs["label_vars"]) if with_labels is None else with_labels
        self.with_incidence = attrs["incidence"] if with_incidence is None else with_incidence
        if self.with_labels and not attrs["label_vars"]:
            raise ValueError(f"{self.path} stores no labels")
        if self.with_incidence and not attrs["incidence"]:
            raise ValueError(f"{self.path} stores no incidence angle")
        self.label_vars = list(attrs["label_vars"]) if self.with_labels else []
        self.stats = None
        if normalize:
            given = stats if stats is not None else attrs.get("stats")
            if given is None:
                raise ValueError(f"{self.path} has no normalisation statistics; pass stats=")
            given = BandStats.from_dict(given) if isinstance(given, dict) else given
            if given.units != attrs["units"]:
                raise ValueError(
                    f"statistics are in {given.units} but the store in {attrs['units']}"
                )
            self.stats = given.subset(self.bands)
        table = pd.read_parquet(self.path / TABLE, columns=["index", "chip_id", "split"])
        if split is not None:
            wanted = [split] if isinstance(split, str) else list(split)
            table = table[table["split"].isin(wanted)]
        self.indices = table["index"].to_numpy(dtype=np.int64)
        self.chip_ids = table["chip_id"].tolist()
        self.transform = transform
        self.nan_fill = nan_fill
        self._arrays: dict[str, ChunkArray] | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None, "_pid": None}

    def _open(self) -> dict[str, ChunkArray]:
        if self._arrays is None or self._pid != os.getpid():
            names = ["image"] + ["incidence"] * self.with_incidence + ["labels"] * self.with_labels
            self._arrays = {name: ChunkArray(self.path / name) for name in names}
            self._pid = os.getpid()
        return self._arrays

    def __getitem__(self, i: int) -> dict[str, Any]:
        arrays = self._open()
        index = int(self.indices[i])
        image = arrays["image"][index]
        if self._band_index != list(range(image.shape[0])):
            image = image[self._band_index]
        x = torch.from_numpy(image)
        if self.stats is not None:
            x = self.stats.normalize(x)
        if self.nan_fill is not None:
            x = torch.nan_to_num_(x, nan=self.nan_fill)
        sample: dict[str, Any] = {"image": x, "index": index, "chip_id": self.chip_ids[i]}
        if self.with_incidence:
            sample["incidence"] = torch.from_numpy(arrays["incidence"][index])
        if self.with_labels:
            sample["labels"] = torch.from_numpy(arrays["labels"][index].astype(np.int64))
        return self.transform(sample) if self.transform is not None else sample
