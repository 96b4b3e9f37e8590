"""Fine-tuning loop: label sampling, learning, determinism, early stopping, multi-task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sarlab.finetune.train import finetune, sample_label_fraction

SMALL = {"encoder_kwargs": {"depth": 2, "embed_dim": 32, "num_heads": 2}}
FAST = dict(patch_size=4, batch_size=8, eval_every=10, progress=False, model_kwargs=SMALL)


def test_label_fraction_sampling_is_seeded_and_nested():
    a = sample_label_fraction(1000, 0.01, seed=3)
    assert len(a) == 10 and np.all(np.diff(a) > 0)
    assert np.array_equal(a, sample_label_fraction(1000, 0.01, seed=3))
    assert not np.array_equal(a, sample_label_fraction(1000, 0.01, seed=4))
    b = sample_label_fraction(1000, 0.05, seed=3)
    assert set(a) <= set(b) <= set(sample_label_fraction(1000, 0.10, seed=3))
    assert len(sample_label_fraction(20, 0.01, seed=0)) == 1
    with pytest.raises(ValueError):
        sample_label_fraction(10, 0.0, 0)


def test_finetune_learns_water_and_is_deterministic(water_store):
    rng_before = torch.get_rng_state()
    r1 = finetune(water_store.path, "random", seed=1, lr=5e-3, max_steps=20, **FAST)
    assert torch.equal(torch.get_rng_state(), rng_before)
    r2 = finetune(water_store.path, "random", seed=1, lr=5e-3, max_steps=20, **FAST)
    assert r1.test == r2.test and r1.history == r2.history
    assert r1.n_train_chips == 32  # all train chips, never val/test ones
    assert r1.test["water_iou"] > 0.6, r1.test  # dark blobs on bright land are learnable
    assert 0 <= r1.test["water_f1"] <= 1 and r1.test["water_iou"] <= r1.test["water_f1"]


def test_label_fraction_early_stopping_and_regimes(water_store):
    r = finetune(
        water_store.path, "random", label_fraction=0.1, seed=0, lr=1e-9, max_steps=200,
        patience=2, regime="frozen", **FAST,
    )  # fmt: skip
    assert r.n_train_chips == 3  # round(32 * 0.1)
    assert r.stop_reason == "early_stopping" and r.steps < 200
    assert r.best_step == r.history[int(np.argmax([h["val_score"] for h in r.history]))]["step"]
    row = r.row()
    assert row["label_fraction"] == 0.1 and "test_water_iou" in row and "model" not in row


def test_multitask_sea_ice_scores_autoice(ice_store):
    r = finetune(ice_store.path, "unet", seed=0, lr=3e-3, max_steps=20, **FAST)
    assert set(r.test) == {"SIC", "SOD", "FLOE", "combined"}
    expected = round((2 * r.test["SIC"] + 2 * r.test["SOD"] + r.test["FLOE"]) / 5, 3)
    assert r.test["combined"] == pytest.approx(expected, abs=1e-3)
    assert r.test["SOD"] > 50, r.test  # three well separated backscatter levels
    r = finetune(ice_store.path, "random", tasks=["SOD"], seed=0, max_steps=10, **FAST)
    assert set(r.test) == {"SOD", "combined"} and set(r.model.tasks) == {"SOD"}
