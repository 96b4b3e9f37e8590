"""Whole-scene embedding: sliding-window throughput against pure model forward, and peak memory.

A 5000 x 5200 dual-pol scene (UTM GeoTIFF, tiled and compressed as providers ship them) is
embedded by :func:`sarlab.embed.embed_scene` with 64 px windows. The reference is the same
encoder's forward pass on in-memory tensors of the same batch size and count: the ratio
(target >= 0.8) says how much reading, normalising, footprints and bookkeeping cost on top of
the model. Peak resident memory is measured over the embedding alone (target <= 4 GB).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from affine import Affine

from sarlab.benchmarks.chips import _reset_peak_rss, _rss_mb
from sarlab.conventions import sar_attrs
from sarlab.embed import embed_scene
from sarlab.io.geotiff import write_geotiff
from sarlab.models import vit_encoder
from sarlab.preprocess.normalize import BandStats

__all__ = ["run"]

SIZE = 64
BATCH = 64
TARGET_RATIO = 0.8
TARGET_PEAK_MB = 4096.0


def _scene(height: int, width: int, seed: int = 0) -> xr.Dataset:
    """Smooth dB field x gamma speckle, HH/HV, UTM 33N, one band at a time (low peak memory)."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    field = -14.0 + 4.0 * np.sin(6.0 * x + 3.0 * y) * np.cos(4.0 * y)
    image = np.empty((2, height, width), np.float32)
    for band, offset in enumerate((0.0, -8.0)):
        speckle = rng.gamma(4.4, 1 / 4.4, size=(height, width)).astype(np.float32)
        image[band] = field + offset + 10 * np.log10(speckle)
    ds = xr.Dataset(
        {"backscatter": (("band", "y", "x"), image, sar_attrs("sigma0", "dB", ["HH", "HV"]))},
        coords={"band": ["HH", "HV"]},
        attrs={"platform": "Sentinel-1A", "mode": "EW", "product": "GRD"},
    )
    transform = Affine(40.0, 0.0, 500_000.0, 0.0, -40.0, 8_900_000.0)
    return ds.rio.write_crs("EPSG:32633").rio.write_transform(transform)


@torch.inference_mode()
def _forward_rate(encoder, n: int) -> float:
    """Chips per second of the bare forward pass on in-memory tensors (batches of BATCH)."""
    x = torch.randn(BATCH, 2, SIZE, SIZE)
    encoder(x[:2])  # warm-up
    start, done = time.perf_counter(), 0
    while done < n:
        b = min(BATCH, n - done)
        encoder.pool(encoder(x[:b]), "cls")
        done += b
    return n / (time.perf_counter() - start)


def run(out_dir: Path, quick: bool) -> dict[str, Any]:
    """Embed a generated scene and compare with the bare forward pass; returns the numbers."""
    height, width, depth = (640, 704, 2) if quick else (5000, 5200, 12)
    work = Path(tempfile.mkdtemp(prefix="sarlab-bench-embed-"))
    try:
        path = write_geotiff(_scene(height, width), work / "scene.tif")
        torch.manual_seed(0)
        encoder = vit_encoder("tiny", in_chans=2, patch_size=8, img_size=SIZE, depth=depth).eval()
        stats = BandStats(
            bands=["HH", "HV"], units="dB", mean=[-14.0, -22.0], std=[4.0, 4.0],
            median=[-14.0, -22.0], p01=[-30.0, -38.0], p99=[0.0, -8.0], count=[1, 1],
        )  # fmt: skip
        n_windows = (height // SIZE) * (width // SIZE)
        _reset_peak_rss()
        rss_before = _rss_mb("VmRSS")
        start = time.perf_counter()
        gdf = embed_scene(path, encoder, size=SIZE, stats=stats, batch_size=BATCH, progress=False)
        embed_s = time.perf_counter() - start
        peak = _rss_mb()
        forward = _forward_rate(encoder, len(gdf))
        rate = len(gdf) / embed_s
        ratio = rate / forward
        return {
            "benchmark": "embed",
            "quick": quick,
            "scene_shape": [2, height, width],
            "chip_size": SIZE,
            "batch_size": BATCH,
            "encoder": {"preset": "tiny", "depth": depth, "patch_size": 8},
            "n_windows": n_windows,
            "n_embedded": len(gdf),
            "embed_s": round(embed_s, 3),
            "scene_chips_per_s": round(rate, 1),
            "forward_chips_per_s": round(forward, 1),
            "ratio": round(ratio, 3),
            "target_ratio": TARGET_RATIO,
            "meets_target": ratio >= TARGET_RATIO,
            "rss_before_mb": rss_before,
            "peak_rss_mb": peak,
            "target_peak_mb": TARGET_PEAK_MB,
            "meets_memory_target": peak <= TARGET_PEAK_MB,
            "torch_threads": torch.get_num_threads(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
