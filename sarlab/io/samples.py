"""Small real samples for teaching: ../shared/data beside a checkout, when it is there.

The product never needs these files (users get data through data_manifests/);
notebooks use them when present and fall back to the embedded simulated default.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from sarlab.conventions import IMAGE_VAR, sar_attrs
from sarlab.errors import InputError

__all__ = ["SPECKLE_SAMPLE", "find_shared_data", "open_speckle_sample", "speckle_example"]

SPECKLE_SAMPLE = Path("s1_speckle") / "shanghai_sentinel1_c64.npy"


def find_shared_data(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The shared sample folder: ``$SARLAB_SHARED_DATA``, else ``shared/data`` beside a parent.

    Walks up from ``start`` (default: the current folder) and from this package,
    so notebooks find it whether they run from notebooks/, the repo root or a
    report folder.
    """
    env = os.environ.get("SARLAB_SHARED_DATA")
    if env:
        return Path(env) if Path(env).is_dir() else None
    starts = [Path(start or Path.cwd()).resolve(), Path(__file__).resolve()]
    for origin in starts:
        for folder in (origin, *origin.parents):
            candidate = folder / "shared" / "data"
            if candidate.is_dir():
                return candidate
    return None


def open_speckle_sample(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a dual-pol covariance sample ``(y, x, 2, 2)`` complex as linear intensities.

    The diagonal holds each channel's intensity (the off-diagonal cross-product
    carries no extra information per pixel at about one look). The shared sample
    is an IW dual-pol (SDV) acquisition, so the channels are VV then VH (VV is
    the brighter by about 7 dB, as co-pol is); the values are uncalibrated
    intensity, not sigma0.
    """
    path = Path(path)
    try:
        cov = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(path, f"not a readable .npy array ({error})") from error
    if cov.ndim != 4 or cov.shape[2:] != (2, 2) or not np.iscomplexobj(cov):
        raise InputError(
            path, f"expected a complex (y, x, 2, 2) covariance array, got {cov.dtype} {cov.shape}"
        )
    intensity = np.stack([cov[..., 0, 0].real, cov[..., 1, 1].real]).astype(np.float32)
    intensity[~np.isfinite(intensity) | (intensity <= 0)] = np.nan
    ny, nx = intensity.shape[1:]
    return xr.Dataset(
        {
            IMAGE_VAR: (
                ("band", "y", "x"),
                intensity,
                sar_attrs("intensity", "linear", ["VV", "VH"]),
            ),
        },
        coords={"band": ["VV", "VH"], "y": np.arange(ny), "x": np.arange(nx)},
        attrs={
            "platform": "Sentinel-1",
            "mode": "IW",
            "product": "SLC",
            "scene_id": path.stem,
            "source": str(path),
            "note": "real Sentinel-1 speckle, no geolocation (see shared/data/README.md)",
        },
    )


def speckle_example(source: str = "auto", seed: int = 0, size: int = 256) -> xr.Dataset:
    """A dual-pol VV/VH speckle example in linear units for teaching, with a ``looks`` attr.

    ``source``: ``"shared"`` reads the real Sentinel-1 crop of ../shared/data (about
    1.2 looks, uncalibrated intensity); ``"simulated"`` draws an IW flood chip from
    :func:`sarlab.simulate.flood_chip` (sigma0, ENL 4.4 like GRDH); ``"auto"`` takes
    the real sample when it is there, else the simulated one, so a notebook runs anywhere.
    """
    if source not in ("auto", "shared", "simulated"):
        raise ValueError(f"source must be 'auto', 'shared' or 'simulated', not {source!r}")
    shared = find_shared_data() if source != "simulated" else None
    if shared is not None and (shared / SPECKLE_SAMPLE).is_file():
        ds = open_speckle_sample(shared / SPECKLE_SAMPLE)
        ds = ds.isel(y=slice(0, size), x=slice(0, size))
        ds.attrs["looks"] = 1.2  # measured on its homogeneous areas (see shared/data/README.md)
        return ds
    if source == "shared":
        raise InputError(
            SPECKLE_SAMPLE, "the shared sample folder was not found (set SARLAB_SHARED_DATA)"
        )
    from sarlab.preprocess import to_linear
    from sarlab.simulate.flood import flood_chip

    chip = flood_chip(seed, size=size)
    ds = chip[[IMAGE_VAR, "land_cover"]].assign({IMAGE_VAR: to_linear(chip[IMAGE_VAR])})
    ds.attrs.update(chip.attrs, looks=float(chip.attrs.get("enl", 4.4)))
    return ds
