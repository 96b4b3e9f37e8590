"""kNN probe on frozen patch features."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from sarlab.chips_read import ChipDataset
from sarlab.conventions import IGNORE_INDEX
from sarlab.finetune.knn import knn_baseline, knn_probe, patch_labels
from sarlab.finetune.metrics import binary_iou_f1
from sarlab.models import vit_encoder


def test_patch_labels_majority_and_sparse():
    lab = torch.tensor([[[1, 1, 0, 0], [1, 0, 0, 0], [255, 255, 2, 2], [255, 1, 2, 255]]])
    out = patch_labels(lab, 2, num_classes=3)
    assert out.tolist() == [[[1, 0], [IGNORE_INDEX, 2]]]


def test_knn_probe_separates_water_with_random_features(water_store):
    torch.manual_seed(0)
    enc = vit_encoder("tiny", depth=1, embed_dim=32, num_heads=2, patch_size=4, img_size=16)

    def loader(split):
        return DataLoader(ChipDataset(water_store.path, split=split), batch_size=16)

    true, pred = knn_probe(enc, loader("train"), loader("test"), num_classes=2, k=5)
    assert true.shape == pred.shape == (16, 16, 16)
    assert binary_iou_f1(true, pred)["iou"] > 0.6


def test_knn_baseline_scores_frozen_encoders_on_held_out_chips(ice_store, checkpoint_for):
    ckpt = checkpoint_for(ice_store)
    ssl = knn_baseline(ice_store.path, ckpt, "ssl", ["SOD"], label_fraction=0.5, seed=0, k=5)
    assert set(ssl) == {"SOD", "combined"} and ssl["SOD"] > 50  # levels separate the classes
    again = knn_baseline(ice_store.path, ckpt, "ssl", ["SOD"], label_fraction=0.5, seed=0, k=5)
    assert again == ssl
    fewer = knn_baseline(ice_store.path, ckpt, "ssl", ["SOD"], label_fraction=0.05, seed=0, k=5)
    assert fewer != ssl  # 2 labelled chips, not 16
    val = knn_baseline(ice_store.path, ckpt, "ssl", ["SOD"], 0.5, seed=0, k=5, split="val")
    assert val != ssl
    twin = knn_baseline(ice_store.path, ckpt, "random", ["SOD"], 0.5, seed=1, k=5)
    assert twin != knn_baseline(ice_store.path, ckpt, "ssl", ["SOD"], 0.5, seed=1, k=5)
    with pytest.raises(ValueError, match="kind"):
        knn_baseline(ice_store.path, ckpt, "unet", ["SOD"])


def test_held_out_features_are_shared_through_the_cache_without_changing_scores(
    ice_store, checkpoint_for
):
    ckpt = checkpoint_for(ice_store)
    cache: dict = {}
    for kind, fraction, seed in [("ssl", 0.5, 0), ("ssl", 0.05, 1), ("random", 0.5, 0),
                                 ("random", 0.5, 1)]:  # fmt: skip
        cached = knn_baseline(ice_store.path, ckpt, kind, ["SOD"], fraction, seed, k=5,
                              cache=cache)  # fmt: skip
        assert cached == knn_baseline(ice_store.path, ckpt, kind, ["SOD"], fraction, seed, k=5)
    # one entry for the SSL encoder (any seed), one per seed for the random twin
    assert len(cache) == 3
