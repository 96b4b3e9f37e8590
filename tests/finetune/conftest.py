"""Tiny labelled chip stores for the fine-tuning tests (seeded, built in seconds).

Water scenes: VV/VH dB with dark (VH ~ -24 dB) water blobs on brighter land
(~ -14 dB), ``water`` label 1/0 and a band of nodata (255). Ice scenes: HH/HV dB
whose level follows the SOD class, with SIC/SOD/FLOE charts. Four scenes each:
two train, one val, one test, so splits are by scene.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import torch
import xarray as xr
from affine import Affine
from scipy import ndimage

from sarlab.chips import ChipDataset, ChipStore, build_chip_store
from sarlab.conventions import IGNORE_INDEX, sar_attrs
from sarlab.models import save_checkpoint, vit_encoder

SIZE = 64
CHIP = 16
SPLITS = {"s0": "train", "s1": "train", "s2": "val", "s3": "test"}


def _blobs(rng: np.random.Generator, size: int, sigma: float = 4.0) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma)
    return field > np.quantile(field, 0.6)


def water_scene(scene_id: str, seed: int, size: int = SIZE) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    water = _blobs(rng, size)
    vh = np.where(water, -24.0, -14.0) + rng.normal(0, 1.5, (size, size))
    vv = np.where(water, -18.0, -8.0) + rng.normal(0, 1.5, (size, size))
    image = np.stack([vv, vh]).astype(np.float32)
    label = water.astype(np.uint8)
    label[:, :2] = IGNORE_INDEX
    ds = xr.Dataset(
        {
            "backscatter": (("band", "y", "x"), image, sar_attrs("sigma0", "dB", ["VV", "VH"])),
            "incidence_angle": (("y", "x"), np.full((size, size), 35.0, np.float32)),
            "water": (("y", "x"), label),
        },
        coords={"band": ["VV", "VH"]},
        attrs={"scene_id": scene_id, "platform": "S1A", "mode": "IW", "product": "GRD"},
    )
    transform = Affine(10.0, 0.0, 500000.0 + 1000.0 * seed, 0.0, -10.0, 6000000.0)
    return ds.rio.write_crs("EPSG:32633").rio.write_transform(transform)


def ice_scene(scene_id: str, seed: int, size: int = SIZE) -> xr.Dataset:
    rng = np.random.default_rng(seed + 100)
    sod = np.zeros((size, size), np.uint8)
    sod[_blobs(rng, size, 3.0)] = 3
    sod[_blobs(rng, size, 5.0) & (sod == 0)] = 5
    hh = np.select([sod == 0, sod == 3], [-22.0, -15.0], -9.0) + rng.normal(0, 1.0, sod.shape)
    hv = hh - 8.0 + rng.normal(0, 1.0, sod.shape)
    sic = np.where(sod == 0, 0, 10).astype(np.uint8)
    floe = np.where(sod == 0, 0, 4).astype(np.uint8)
    for chart in (sic, sod, floe):
        chart[-3:, :] = IGNORE_INDEX
    ds = xr.Dataset(
        {
            "backscatter": (
                ("band", "y", "x"),
                np.stack([hh, hv]).astype(np.float32),
                sar_attrs("sigma0", "dB", ["HH", "HV"]),
            ),
            "SIC": (("y", "x"), sic),
            "SOD": (("y", "x"), sod),
            "FLOE": (("y", "x"), floe),
        },
        coords={"band": ["HH", "HV"]},
        attrs={"scene_id": scene_id, "platform": "S1A", "mode": "EW", "product": "GRD"},
    )
    transform = Affine(40.0, 0.0, 400000.0 + 5000.0 * seed, 0.0, -40.0, 8000000.0)
    return ds.rio.write_crs("EPSG:3413").rio.write_transform(transform)


def _build(path: Path, make, labels: list[str]) -> ChipStore:
    scenes = [make(name, i) for i, name in enumerate(SPLITS)]
    return build_chip_store(
        scenes, path, size=CHIP, scheduler="sync", progress=False, min_valid=0.0,
        label_vars=labels, include_incidence=False, splits=SPLITS,
    )  # fmt: skip


@pytest.fixture(scope="session")
def water_store(tmp_path_factory) -> ChipStore:
    return _build(tmp_path_factory.mktemp("ft") / "water.zarr", water_scene, ["water"])


@pytest.fixture(scope="session")
def ice_store(tmp_path_factory) -> ChipStore:
    return _build(tmp_path_factory.mktemp("ft") / "ice.zarr", ice_scene, ["SIC", "SOD", "FLOE"])


@pytest.fixture(scope="session")
def make_water_scene():
    """The water scene generator: ``make_water_scene(scene_id, seed, size)``."""
    return water_scene


@pytest.fixture(scope="session")
def checkpoint_for(tmp_path_factory):
    """``checkpoint_for(store)``: a tiny untrained encoder saved with a card fitting the store."""

    def make(store: ChipStore) -> Path:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            enc = vit_encoder("tiny", depth=1, embed_dim=32, num_heads=2, patch_size=4,
                              img_size=CHIP)  # fmt: skip
        card = {
            "bands": store.bands, "units": store.attrs["units"],
            "quantity": store.attrs["quantity"],
            "normalization": ChipDataset(store.path, split="train").stats.to_dict(),
            "ssl": {"method": "mae", "config": {}}, "data": {"manifest": None, "checksum": None},
        }  # fmt: skip
        return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint", enc, card)

    return make


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared machine they oversubscribe
    the cores (a 4 s test took 45 s beside other jobs); restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
