"""Task metrics scored the way the benchmarks score them.

AutoICE (AI4Arctic Sea Ice Challenge) scoring, after the challenge starter kit
(``functions.py`` of github.com/astokholm/AI4ArcticSeaIceChallenge, A. R. Stokholm,
DTU/ESA, 2022; Stokholm et al., The Cryosphere 18, 3471, 2024):

* per chart, the true and predicted *class indices* of all valid pixels are
  flattened (pixels whose reference is the mask value, 255 in sarlab, are left out);
* SIC: ``sklearn.metrics.r2_score`` on the SIC class indices 0..10 (10 % steps;
  R2 is scale-free so indices and percentages give the same value; not clipped);
* SOD and FLOE: ``sklearn.metrics.f1_score(average="weighted")``;
* each chart score is ``round(score * 100, 3)`` (the challenge reports percent) and the
  combined score is ``round((2 SIC + 2 SOD + 1 FLOE) / 5, 3)``.

:func:`autoice_scores` returns exactly those percentages. Water (Sen1Floods11):
IoU and F1 of the water class over pixels whose label is not :data:`IGNORE_INDEX`
(Sen1Floods11's -1 is mapped to 255 on read). Multi-label (BigEarthNet): macro mAP
= mean over classes of sklearn's ``average_precision_score``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, r2_score

from sarlab.conventions import IGNORE_INDEX

__all__ = [
    "AUTOICE_WEIGHTS",
    "autoice_scores",
    "binary_iou_f1",
    "mean_average_precision",
    "r2_metric",
    "valid_pairs",
    "weighted_f1",
]

AUTOICE_WEIGHTS: dict[str, int] = {"SIC": 2, "SOD": 2, "FLOE": 1}
_ROUND = 3


def valid_pairs(
    true: np.ndarray, pred: np.ndarray, ignore_index: int = IGNORE_INDEX
) -> tuple[np.ndarray, np.ndarray]:
    """Flattened ``(true, pred)`` where ``true`` is not ``ignore_index`` (and pred is finite)."""
    true, pred = np.asarray(true), np.asarray(pred)
    if true.shape != pred.shape:
        raise ValueError(f"true {true.shape} and pred {pred.shape} differ in shape")
    keep = true != ignore_index
    if np.issubdtype(pred.dtype, np.floating):
        keep &= np.isfinite(pred)
    return true[keep].ravel(), pred[keep].ravel()


def r2_metric(true: np.ndarray, pred: np.ndarray, ignore_index: int = IGNORE_INDEX) -> float:
    """R2 over valid pixels (fraction, not percent); NaN when fewer than two valid pixels."""
    t, p = valid_pairs(true, pred, ignore_index)
    if t.size < 2:
        return float("nan")
    return float(r2_score(t.astype(np.float64), p.astype(np.float64)))


def weighted_f1(true: np.ndarray, pred: np.ndarray, ignore_index: int = IGNORE_INDEX) -> float:
    """Support-weighted F1 over valid pixels (fraction); NaN when no valid pixel."""
    t, p = valid_pairs(true, pred, ignore_index)
    if t.size == 0:
        return float("nan")
    return float(f1_score(t, p, average="weighted", zero_division=0))


def autoice_scores(
    true: Mapping[str, np.ndarray],
    pred: Mapping[str, np.ndarray],
    ignore_index: int = IGNORE_INDEX,
) -> dict[str, float]:
    """AutoICE chart scores and ``combined``, in percent rounded to 3 decimals like the challenge.

    ``true``/``pred`` map chart names (SIC, SOD, FLOE; any subset) to class-index
    arrays of one shape; SIC predictions may be continuous (a regression head).
    The combined score weights the charts present by :data:`AUTOICE_WEIGHTS`.
    """
    funcs = {"SIC": r2_metric, "SOD": weighted_f1, "FLOE": weighted_f1}
    charts = [c for c in ("SIC", "SOD", "FLOE") if c in true]
    if not charts:
        raise ValueError(f"no AutoICE chart among {sorted(true)}; expected SIC, SOD or FLOE")
    missing = [c for c in charts if c not in pred]
    if missing:
        raise ValueError(f"predictions lack charts {missing}")
    scores = {c: round(funcs[c](true[c], pred[c], ignore_index) * 100, _ROUND) for c in charts}
    total = sum(scores[c] * AUTOICE_WEIGHTS[c] for c in charts)
    scores["combined"] = round(total / sum(AUTOICE_WEIGHTS[c] for c in charts), _ROUND)
    return scores


def binary_iou_f1(
    true: np.ndarray,
    pred: np.ndarray,
    positive: int = 1,
    ignore_index: int = IGNORE_INDEX,
) -> dict[str, float]:
    """IoU and F1 of class ``positive`` (water) over valid pixels, as fractions.

    NaN where the class is absent from both true and pred (0/0).
    """
    t, p = valid_pairs(true, pred, ignore_index)
    t, p = t == positive, p == positive
    tp = float(np.sum(t & p))
    fp = float(np.sum(~t & p))
    fn = float(np.sum(t & ~p))
    union = tp + fp + fn
    iou = tp / union if union else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if union else float("nan")
    return {"iou": iou, "f1": f1, "n_pixels": int(t.size)}


def mean_average_precision(true: np.ndarray, scores: np.ndarray) -> float:
    """Macro mAP of a multi-label problem: ``true`` (N, K) in {0, 1}, ``scores`` (N, K).

    Classes with no positive sample are left out (their AP is undefined), as
    torchmetrics and BigEarthNet papers do.
    """
    true, scores = np.asarray(true), np.asarray(scores, dtype=np.float64)
    if true.ndim != 2 or true.shape != scores.shape:
        raise ValueError(f"expected (N, K) true and scores, got {true.shape} and {scores.shape}")
    aps = [
        average_precision_score(true[:, k], scores[:, k])
        for k in range(true.shape[1])
        if true[:, k].any()
    ]
    return float(np.mean(aps)) if aps else float("nan")
