"""Classical baselines run on the same chips and splits as the deep models.

* Water: Otsu's threshold on VH backscatter in dB (open water is dark in cross-pol);
  the threshold is found on the pooled train chips without their labels, then applied
  to the test chips.
* Sea ice: a random forest on per-pixel dB values plus local texture (window mean and
  standard deviation of dB at a few sizes, :func:`sarlab.preprocess.local_stats`),
  trained on pixels of the sampled labelled train chips.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from skimage.filters import threshold_otsu
from sklearn.ensemble import RandomForestClassifier

from sarlab.chips_read import ChipDataset, ChipStore
from sarlab.conventions import IGNORE_INDEX
from sarlab.errors import InputError, UnitsError
from sarlab.finetune.metrics import binary_iou_f1
from sarlab.finetune.train import sample_label_fraction, score_predictions
from sarlab.preprocess import linear_to_db
from sarlab.preprocess.speckle import local_stats

__all__ = [
    "otsu_water",
    "otsu_water_baseline",
    "random_forest_baseline",
    "texture_features",
]


def otsu_water(vh_db: np.ndarray, threshold: float | None = None) -> tuple[np.ndarray, float]:
    """Water mask (1 water, 0 not, 255 nodata) of VH dB and the Otsu threshold used."""
    vh_db = np.asarray(vh_db, dtype=np.float64)
    finite = np.isfinite(vh_db)
    if threshold is None:
        if finite.sum() < 2:
            raise ValueError("Otsu needs at least two finite pixels")
        threshold = float(threshold_otsu(vh_db[finite]))
    mask = np.where(vh_db < threshold, 1, 0).astype(np.uint8)
    mask[~finite] = IGNORE_INDEX
    return mask, float(threshold)


def texture_features(image_db: np.ndarray, sizes: Sequence[int] = (5, 11)) -> np.ndarray:
    """``(C, H, W)`` dB -> ``(C * (1 + 2 * len(sizes)), H, W)``: value, window mean and std."""
    image_db = np.asarray(image_db, dtype=np.float64)
    if image_db.ndim != 3:
        raise ValueError(f"expected (C, H, W), got shape {image_db.shape}")
    feats = [image_db]
    for size in sizes:
        _, mean, var = local_stats(image_db, size)
        feats += [mean, np.sqrt(var)]
    return np.concatenate(feats, axis=0).astype(np.float32)


def _raw_db(store: ChipStore, split: str) -> tuple[ChipDataset, bool]:
    ds = ChipDataset(store.path, split=split, normalize=False, with_incidence=False)
    if len(ds) == 0:
        raise InputError(store.path, f"has no chips in split {split!r}")
    units = store.attrs["units"]
    if units not in ("dB", "linear"):
        raise UnitsError(f"{store.path}: backscatter in {units!r}, expected dB or linear")
    return ds, units == "linear"


def _db(x: np.ndarray, linear: bool) -> np.ndarray:
    if not linear:
        return x
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(linear_to_db(np.where(x > 0, x, np.nan)))


def otsu_water_baseline(
    store_path: str | os.PathLike[str], band: str = "VH", task: str = "water"
) -> dict[str, float]:
    """Otsu threshold from train-chip VH dB (no labels), scored on test chips (IoU, F1)."""
    store = ChipStore(store_path)
    if band not in store.bands:
        raise InputError(store.path, f"has bands {store.bands}, no {band} for the Otsu baseline")
    if task not in store.attrs["label_vars"]:
        raise InputError(store.path, f"has no {task!r} labels")
    b, k = store.bands.index(band), store.attrs["label_vars"].index(task)
    train, linear = _raw_db(store, "train")
    pooled = np.concatenate(
        [_db(train[i]["image"][b].numpy(), linear).ravel() for i in range(len(train))]
    )
    _, threshold = otsu_water(pooled)
    test, _ = _raw_db(store, "test")
    true, pred = [], []
    for i in range(len(test)):
        s = test[i]
        mask, _ = otsu_water(_db(s["image"][b].numpy(), linear), threshold)
        true.append(s["labels"][k].numpy().ravel())
        pred.append(mask.ravel())
    scores = binary_iou_f1(np.concatenate(true), np.concatenate(pred))
    return {"water_iou": scores["iou"], "water_f1": scores["f1"], "threshold_db": threshold}


def _pixels(
    ds: ChipDataset, positions, k: int, linear: bool, sizes
) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for i in positions:
        s = ds[int(i)]
        f = texture_features(_db(s["image"].numpy(), linear), sizes)
        xs.append(f.reshape(f.shape[0], -1).T)
        ys.append(s["labels"][k].numpy().ravel())
    return np.concatenate(xs), np.concatenate(ys)


def random_forest_baseline(
    store_path: str | os.PathLike[str],
    tasks: Sequence[str] = ("SOD",),
    label_fraction: float = 1.0,
    seed: int = 0,
    max_pixels: int = 50_000,
    sizes: Sequence[int] = (5, 11),
    n_estimators: int = 50,
) -> dict[str, float]:
    """Random forest per task on dB + texture of the sampled train chips, scored on test.

    Pixels with nodata labels or features are dropped; at most ``max_pixels``
    training pixels (picked by ``seed``) keep the fit fast. Test pixels with NaN
    features are predicted as the majority train class.
    """
    store = ChipStore(store_path)
    train, linear = _raw_db(store, "train")
    test, _ = _raw_db(store, "test")
    picks = sample_label_fraction(len(train), label_fraction, seed)
    rng = np.random.default_rng([int(seed), 0xF0])
    true, pred = {}, {}
    for task in tasks:
        if task not in store.attrs["label_vars"]:
            raise InputError(store.path, f"has no {task!r} labels")
        k = store.attrs["label_vars"].index(task)
        x, y = _pixels(train, picks, k, linear, sizes)
        ok = (y != IGNORE_INDEX) & np.isfinite(x).all(axis=1)
        x, y = x[ok], y[ok]
        if y.size == 0:
            raise InputError(store.path, f"the sampled train chips have no valid {task} pixel")
        if y.size > max_pixels:
            keep = rng.choice(y.size, max_pixels, replace=False)
            x, y = x[keep], y[keep]
        forest = RandomForestClassifier(
            n_estimators=n_estimators, min_samples_leaf=5, n_jobs=-1, random_state=seed
        ).fit(x, y)
        xt, yt = _pixels(test, range(len(test)), k, linear, sizes)
        finite = np.isfinite(xt).all(axis=1)
        p = np.full(yt.shape, np.bincount(y).argmax(), dtype=np.int64)
        if finite.any():
            p[finite] = forest.predict(xt[finite])
        true[task], pred[task] = yt, p
    return score_predictions(true, pred)
