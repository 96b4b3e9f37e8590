"""Metrics equal hand-computed values and scikit-learn, with nodata ignored."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, jaccard_score, r2_score

from sarlab.finetune.metrics import (
    autoice_scores,
    binary_iou_f1,
    mean_average_precision,
    r2_metric,
    weighted_f1,
)

N = 255


def test_autoice_combined_score_by_hand():
    true = {
        "SIC": np.array([0, 5, 10, N]),  # mean 5, SS_tot 50, SS_res 25 -> R2 0.5
        "SOD": np.array([[0, 0], [1, 1], [N, N]]),
        "FLOE": np.array([2, 2, 2, 3]),
    }
    pred = {
        "SIC": np.array([0, 5, 5, 3]),
        "SOD": np.array([[0, 1], [1, 1], [0, 4]]),  # F1 class0 2/3, class1 0.8 -> 0.7333
        "FLOE": np.array([2, 2, 2, 3]),
    }
    s = autoice_scores(true, pred)
    assert s["SIC"] == 50.0
    assert s["SOD"] == 73.333
    assert s["FLOE"] == 100.0
    assert s["combined"] == round((2 * 50.0 + 2 * 73.333 + 100.0) / 5, 3) == 69.333


def test_autoice_subset_of_charts_weights_renormalised():
    t = {"SOD": np.array([0, 1]), "FLOE": np.array([0, 1])}
    p = {"SOD": np.array([0, 1]), "FLOE": np.array([1, 0])}
    assert autoice_scores(t, p) == {"SOD": 100.0, "FLOE": 0.0, "combined": 66.667}
    with pytest.raises(ValueError, match="lack"):
        autoice_scores(t, {"SOD": p["SOD"]})


def test_metrics_match_sklearn_on_valid_pixels():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 6, 500)
    true[rng.random(500) < 0.2] = N
    pred = np.where(rng.random(500) < 0.6, true % 6, rng.integers(0, 6, 500))
    ok = true != N
    assert weighted_f1(true, pred) == pytest.approx(
        f1_score(true[ok], pred[ok], average="weighted")
    )
    sic_pred = true[ok] + rng.normal(0, 1, ok.sum())
    full = np.full(500, np.nan)
    full[ok] = sic_pred
    assert r2_metric(true, full) == pytest.approx(r2_score(true[ok], sic_pred))


def test_water_iou_f1_by_hand_and_sklearn():
    true = np.array([[1, 1, 0], [0, N, 1]])
    pred = np.array([[1, 0, 0], [1, 1, 1]])
    s = binary_iou_f1(true, pred)  # tp 2, fp 1, fn 1
    assert s["iou"] == pytest.approx(0.5)
    assert s["f1"] == pytest.approx(2 / 3)
    assert s["n_pixels"] == 5
    rng = np.random.default_rng(1)
    t, p = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    s = binary_iou_f1(t, p)
    assert s["iou"] == pytest.approx(jaccard_score(t, p))
    assert s["f1"] == pytest.approx(f1_score(t, p))


def test_mean_average_precision_by_hand_and_sklearn():
    true = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    scores = np.array([[0.9, 0.5], [0.2, 0.8], [0.3, 0.4], [0.1, 0.1]])
    # class 0: positives ranked 1, 2 -> AP 1; class 1: P at ranks 1 and 3 -> 0.5 + 0.5*2/3
    assert mean_average_precision(true, scores) == pytest.approx((1 + (0.5 + 1 / 3)) / 2)
    rng = np.random.default_rng(2)
    t, s = rng.integers(0, 2, (50, 4)), rng.random((50, 4))
    t[:, 3] = 0  # a class without positives is left out
    expected = np.mean([average_precision_score(t[:, k], s[:, k]) for k in range(3)])
    assert mean_average_precision(t, s) == pytest.approx(expected)
