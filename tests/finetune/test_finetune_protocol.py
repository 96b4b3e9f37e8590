"""The label-efficiency grid: every model x fraction x seed, results saved atomically."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sarlab.finetune.protocol import label_efficiency, summarize

SMALL = {"encoder_kwargs": {"depth": 1, "embed_dim": 16, "num_heads": 2}}


def test_grid_writes_runs_and_summary(water_store, tmp_path):
    runs = label_efficiency(
        water_store.path, None, tmp_path, fractions=(0.1, 1.0), seeds=(0, 1),
        kinds=("random",), progress=False, patch_size=4, max_steps=2, eval_every=2,
        batch_size=8, model_kwargs=SMALL,
    )  # fmt: skip
    assert len(runs) == 2 * 2 * 2  # random + otsu per fraction x seed
    assert sorted(runs["kind"].unique()) == ["otsu", "random"]
    on_disk = pd.read_parquet(tmp_path / "runs.parquet")
    pd.testing.assert_frame_equal(on_disk, runs)
    saved = json.loads((tmp_path / "runs.json").read_text())
    assert saved["settings"]["fractions"] == [0.1, 1.0] and len(saved["runs"]) == 8
    n_train = runs[runs.kind == "random"].groupby("label_fraction")["n_train_chips"].first()
    assert n_train.to_dict() == {0.1: 3, 1.0: 32}
    summary = summarize(runs)
    row = summary[(summary.kind == "random") & (summary.label_fraction == 1.0)].iloc[0]
    vals = runs[(runs.kind == "random") & (runs.label_fraction == 1.0)]["test_water_iou"]
    assert row["test_water_iou_mean"] == pytest.approx(vals.mean())
    assert row["test_water_iou_std"] == pytest.approx(vals.std())
    assert row["test_water_iou_count"] == 2
    assert json.loads((tmp_path / "summary.json").read_text())[0]["kind"] in ("otsu", "random")
    with pytest.raises(ValueError, match="checkpoint"):
        label_efficiency(water_store.path, None, tmp_path, kinds=("ssl",), progress=False)


def test_grid_adds_knn_probes_and_keeps_validation_scores(water_store, checkpoint_for, tmp_path):
    ckpt = checkpoint_for(water_store)
    runs = label_efficiency(
        water_store.path, ckpt, tmp_path, fractions=(0.1,), seeds=(0, 1), kinds=("ssl",),
        baseline=False, knn=True, progress=False, max_steps=2, eval_every=2, batch_size=8,
    )  # fmt: skip
    assert runs.groupby("kind").size().to_dict() == {"random_knn": 2, "ssl": 2, "ssl_knn": 2}
    ssl = runs[runs.kind == "ssl"]
    assert (ssl["val_water_iou"] == ssl["val_score"]).all()  # water runs are chosen on val IoU
    assert runs[runs.kind == "ssl_knn"]["test_water_iou"].between(0, 1).all()
    val = summarize(runs, prefix="val_")
    assert "val_water_iou_mean" in val and "test_water_iou_mean" not in val
