"""Figures of SSL pretraining: loss curves, what each method sees and predicts, chips.

Methods work on normalised dB; these figures turn images back into dB with the
method's band statistics (titles say the units) and draw every panel of a row
with the same colour limits, so a reconstruction is compared with its target
on one scale. Panels share their axes: zooming into one zooms into all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
from torch import Tensor

from sarlab.conventions import IGNORE_INDEX

__all__ = ["chip_gallery", "loss_curves", "method_panels", "speckle_view_pairs"]

PANEL = 170  # px per panel side
_MAE_FAMILY = ("mae", "hog", "gradient")


def _history(source: Any) -> list[dict[str, Any]]:
    if hasattr(source, "history"):  # a TrainResult
        source = source.history
    if isinstance(source, str | os.PathLike):
        lines = Path(source).read_text(encoding="utf-8").splitlines()
        source = [json.loads(line) for line in lines if line.strip()]
    history = list(source)
    if not history:
        raise ValueError("no metrics to plot: the run logged no step yet")
    return history


def loss_curves(source: Any, *, title: str = "pretraining") -> hv.Overlay:
    """Loss (left axis) and learning rate (right axis) against the step.

    ``source``: a ``metrics.jsonl`` path, its list of records or a TrainResult.
    Each point is the mean loss since the previous log line.
    """
    df = pd.DataFrame(_history(source))
    loss = hv.Curve(df, "step", "loss", label="loss (mean since last point)")
    lr = hv.Curve(df, "step", "lr", label="learning rate").opts(color="gray", line_dash="dashed")
    return (loss * lr).opts(
        multi_y=True, width=640, height=300, title=title, legend_position="top_right"
    )


def _np(x: Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


def _to_units(x: Tensor, method: Any, bands: Sequence[str]) -> tuple[np.ndarray, str]:
    """Normalised ``(B, C, H, W)`` of ``bands`` -> data units (dB), and the units' name."""
    stats = getattr(method, "band_stats", None)
    if stats is None:
        return _np(x), "normalised"
    return _np(stats.subset(list(bands)).denormalize(x.float(), band_axis=1)), stats.units


def _clim(*arrays: np.ndarray) -> tuple[float, float]:
    values = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays])
    if values.size == 0:
        return (0.0, 1.0)
    lo, hi = np.quantile(values, [0.02, 0.98])
    return (float(lo), float(hi) if hi > lo else float(lo) + 1e-6)


def _panel(array: np.ndarray, title: str, clim, cmap: str = "gray") -> hv.Image:
    """One chip-sized raster, row 0 on top; titles end in "(units)", which label the colours."""
    units = title[title.rfind("(") + 1 : -1] if title.endswith(")") else "value"
    ny, nx = array.shape
    value = hv.Dimension("value", label=units)
    data = np.asarray(array, np.float32)
    return hv.Image(data, bounds=(0, 0, nx, ny), vdims=[value], label=title).opts(
        cmap=cmap, clim=clim, colorbar=True, width=PANEL + 40, height=PANEL, title=title,
        xaxis=None, yaxis=None, tools=["hover"],
    )  # fmt: skip


def _upsample(cells: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A per-cell map repeated to pixel resolution, so it lines up with the image panels."""
    ry, rx = size[0] // cells.shape[-2], size[1] // cells.shape[-1]
    return np.repeat(np.repeat(cells, ry, axis=-2), rx, axis=-1)


def _target_maps(method: Any, maps: Tensor, size: tuple[int, int]) -> tuple[np.ndarray, str, Any]:
    """Per band, what an MAE-family target map shows ``(B, C, H, W)``, its name and style.

    pixels: dB; gradient: the ROA edge strength averaged over the scales (|ln ratio|);
    HOG: each cell's strongest orientation bin (degrees, cyclic colours).
    """
    kind = method.target.name
    bands = list(method.bands)
    if kind == "pixels":
        values, units = _to_units(maps, method, bands)
        return values, f"({units})", None
    b, k = maps.shape[:2]
    groups = k // len(bands)
    grouped = _np(maps).reshape(b, len(bands), groups, *maps.shape[-2:])
    if kind == "gradient":
        return grouped.mean(axis=2), "ROA (|ln ratio|)", None
    angle = (grouped.argmax(axis=2) + 0.5) * (180.0 / groups)
    return _upsample(angle, size), "HOG (deg)", ("colorwheel", (0.0, 180.0))


def _mae_rows(visuals: Mapping[str, Tensor], method: Any, n: int) -> list[hv.Image]:
    bands = list(method.bands)
    size = tuple(visuals["image"].shape[-2:])
    shown, units = _to_units(visuals["image"], method, bands)
    hidden = _np(visuals["mask"]).astype(bool)  # (B, 1, H, W), 1 = hidden
    shown = np.where(hidden, np.nan, shown)
    target, what, style = _target_maps(method, visuals["target"], size)
    recon, _, _ = _target_maps(method, visuals["reconstruction"], size)
    panels = []
    for i in range(n):
        for c, band in enumerate(bands):
            cmap, clim = style or ("gray", _clim(target[i, c]))
            panels += [
                _panel(shown[i, c], f"{band} input, masked ({units})", _clim(shown[i, c])),
                _panel(target[i, c], f"{band} target {what}", clim, cmap),
                _panel(recon[i, c], f"{band} reconstr. {what}", clim, cmap),
            ]
    return panels


def _crosspol_rows(visuals: Mapping[str, Tensor], method: Any, n: int) -> list[hv.Image]:
    co, cross = method.bands[method.co_index], method.bands[method.cross_index]
    shown, units = _to_units(visuals["co_pol"], method, [co])
    shown = np.where(_np(visuals["mask"]).astype(bool), np.nan, shown)
    target, _ = _to_units(visuals["target"], method, [cross])
    pred, _ = _to_units(visuals["prediction"], method, [cross])
    panels = []
    for i in range(n):
        clim = _clim(target[i, 0])
        panels += [
            _panel(shown[i, 0], f"{co} input, masked ({units})", _clim(shown[i, 0])),
            _panel(target[i, 0], f"{cross} target ({units})", clim),
            _panel(pred[i, 0], f"{cross} prediction ({units})", clim),
        ]
    return panels


def method_panels(visuals: Mapping[str, Tensor], method: Any, max_items: int = 4) -> hv.Layout:
    """``method.visualize(batch)`` as one row per chip: input, target, reconstruction.

    MAE-family methods (mae, hog, gradient) get three panels per band: the input
    with the hidden patches blank, the target and the reconstruction (target where
    visible, prediction where hidden); crosspol gets the masked co-pol input, the
    cross-pol target and the prediction; speckle_views its two views
    (:func:`speckle_view_pairs`). ``method`` gives the bands and statistics.
    """
    name = getattr(method, "name", "")
    n = min(int(max_items), next(iter(visuals.values())).shape[0])
    if name == "speckle_views":
        return speckle_view_pairs(visuals, method, max_items)
    if name == "crosspol":
        panels, cols = _crosspol_rows(visuals, method, n), 3
    elif name in _MAE_FAMILY or hasattr(method, "target"):
        panels, cols = _mae_rows(visuals, method, n), 3 * len(method.bands)
    else:
        raise ValueError(f"no panels for SSL method {name!r}")
    return hv.Layout(panels).cols(cols)


def speckle_view_pairs(
    visuals: Mapping[str, Tensor],
    method: Any,
    max_items: int = 4,
    bands: Sequence[str] | None = None,
) -> hv.Layout:
    """Per chip and band: the chip, its despeckled version and the two re-speckled views (dB).

    The views share their geometry (unless the method draws it independently) and
    differ in the speckle drawn: what the encoder learns to see through.
    """
    all_bands = list(method.bands)
    bands = list(bands) if bands is not None else all_bands[:1]
    unknown = [b for b in bands if b not in all_bands]
    if unknown:
        raise ValueError(f"bands {unknown} not in the method's bands {all_bands}")
    names = {"image": "chip", "despeckled": "despeckled", "view1": "view 1", "view2": "view 2"}
    arrays = {k: _to_units(visuals[k], method, all_bands) for k in names}
    n = min(int(max_items), visuals["image"].shape[0])
    panels = []
    for i in range(n):
        for band in bands:
            c = all_bands.index(band)
            clim = _clim(arrays["image"][0][i, c])
            for key, label in names.items():
                values, units = arrays[key]
                panels.append(_panel(values[i, c], f"{band} {label} ({units})", clim))
    return hv.Layout(panels).cols(len(names) * len(bands))


def chip_gallery(
    store: Any, n: int = 4, split: str | None = "train", seed: int = 0, label: str | None = None
) -> hv.Layout:
    """``n`` chips of a :class:`~sarlab.chips.ChipStore`: each band in its units and one label.

    ``label`` names a label variable (default the store's first, if it has any).
    """
    table = store.table
    rows = table.index[table["split"] == split] if split is not None else table.index
    if len(rows) == 0:
        raise ValueError(f"{store.path} has no chips in split {split!r}")
    labels = store.attrs["label_vars"]
    label = label if label is not None else (labels[0] if labels else None)
    if label is not None and label not in labels:
        raise ValueError(f"{store.path} has labels {labels}, not {label!r}")
    # one colour scale for every chip: the label's classes where the store lists them
    flags = store.attrs["labels"].get(label, {}).get("flag_values") if label else None
    clim = (float(min(flags)), float(max(flags))) if flags else None
    # chips with some labelled pixels first (a chip outside the ice chart shows nothing)
    order = np.random.default_rng(seed).permutation(np.asarray(rows))[: 10 * n]
    chips = {int(i): store.chip(int(i)) for i in order}
    shown = [i for i, c in chips.items() if label is None or (c[label] != IGNORE_INDEX).any()]
    picks = sorted((shown + [i for i in chips if i not in shown])[:n])
    panels = []
    for index in picks:
        chip = chips[index]
        image_var = chip["backscatter"]
        units = image_var.attrs["units"]
        for band in image_var["band"].values:
            values = image_var.sel(band=band).values
            panels.append(_panel(values, f"{band} #{index} ({units})", _clim(values)))
        if label is not None:
            classes = chip[label].values.astype(float)
            classes[classes == IGNORE_INDEX] = np.nan
            panels.append(_panel(classes, f"{label} (class)", clim or _clim(classes), "viridis"))
    cols = len(store.bands) + (label is not None)
    return hv.Layout(panels).cols(cols)
