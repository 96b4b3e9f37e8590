"""Classical baselines: Otsu water threshold and a texture random forest for ice."""

from __future__ import annotations

import numpy as np
import pytest

from sarlab.conventions import IGNORE_INDEX
from sarlab.finetune.baselines import (
    otsu_water,
    otsu_water_baseline,
    random_forest_baseline,
    texture_features,
)


def test_otsu_splits_a_bimodal_image():
    rng = np.random.default_rng(0)
    truth = rng.random((40, 40)) < 0.3
    vh = np.where(truth, -25.0, -12.0) + rng.normal(0, 1.0, truth.shape)
    vh[0, 0] = np.nan
    mask, thr = otsu_water(vh)
    assert -24 < thr < -13
    assert mask[0, 0] == IGNORE_INDEX
    assert np.mean(mask[1:] == truth[1:]) > 0.99
    assert otsu_water(vh, threshold=-30.0)[0][5, 5] == 0


def test_texture_features_values():
    img = np.stack([np.full((12, 12), -10.0), np.arange(144.0).reshape(12, 12)])
    f = texture_features(img, sizes=(3,))
    assert f.shape == (6, 12, 12)
    assert np.allclose(f[2], -10.0) and np.allclose(f[4], 0.0)  # band 0: mean, std
    assert f[3, 5, 5] == pytest.approx(img[1, 4:7, 4:7].mean())
    assert f[5, 5, 5] == pytest.approx(img[1, 4:7, 4:7].std(), rel=1e-5)


def test_otsu_baseline_on_store(water_store):
    s = otsu_water_baseline(water_store.path)
    assert s["water_iou"] > 0.9 and -22 < s["threshold_db"] < -16


def test_random_forest_baseline_on_store(ice_store):
    s = random_forest_baseline(ice_store.path, ["SOD", "FLOE"], label_fraction=0.5, seed=0)
    assert s["SOD"] > 80 and s["FLOE"] > 80
    assert s["combined"] == pytest.approx((2 * s["SOD"] + s["FLOE"]) / 3, abs=1e-3)
