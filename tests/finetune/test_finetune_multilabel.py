"""BigEarthNet-S1 multi-label classification: simulated patches, splits, training, baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixture_paths import SHARED_DATA

from sarlab.errors import InputError, UnitsError
from sarlab.finetune.metrics import mean_average_precision
from sarlab.finetune.multilabel import (
    BigEarthNetS1Dataset,
    compare_multilabel,
    find_bigearthnet_patches,
    finetune_multilabel,
    patch_features,
    random_forest_multilabel,
    split_by_scene,
)
from sarlab.io import open_bigearthnet_s1
from sarlab.io.bigearthnet import BIGEARTHNET_19
from sarlab.models import save_checkpoint, vit_encoder
from sarlab.simulate.bigearthnet import write_bigearthnet_patches

TINY = {"embed_dim": 32, "depth": 1, "num_heads": 2, "patch_size": 8}


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    return write_bigearthnet_patches(tmp_path_factory.mktemp("ben"), 64, seed=3, progress=False)


def test_simulated_patches_read_as_real_ones_with_labels_from_their_land_cover(patches):
    ds = open_bigearthnet_s1(patches[0])
    assert ds["backscatter"].attrs["units"] == "dB" and list(ds.band.values) == ["VV", "VH"]
    assert ds.rio.crs.to_epsg() == 32633 and ds.sizes == {"band": 2, "y": 120, "x": 120}
    # patches labelled water hold far more dark (specular) VH pixels than the others
    data = BigEarthNetS1Dataset(patches)
    water = np.array(BIGEARTHNET_19) == "Inland waters"
    has_water = data.targets[:, water][:, 0] == 1
    dark = [np.mean(data.image(i)[1] < -24.0) for i in range(len(data))]
    assert 0 < has_water.sum() < len(data)  # labels vary between patches
    dark = np.array(dark)
    assert dark[has_water].mean() > 3 * dark[~has_water].mean()
    assert write_bigearthnet_patches(patches[0].parent.parent / "again", 64, seed=3,
                                     progress=False)[0].name == patches[0].name  # fmt: skip


def test_split_by_scene_keeps_each_product_in_one_split_and_fills_all_three():
    scenes = [f"p{i // 5}" for i in range(40)]  # 8 products of 5 patches
    splits = split_by_scene(scenes, seed=1)
    for scene in set(scenes):
        assert len(set(splits[np.array(scenes) == scene])) == 1
    counts = {s: int((splits == s).sum()) for s in ("train", "val", "test")}
    assert counts["train"] >= 20 and counts["val"] > 0 and counts["test"] > 0
    assert (split_by_scene(scenes, seed=1) == splits).all()
    # one huge product first still leaves products for val and test
    lopsided = ["big"] * 50 + ["a", "b", "c"]
    for seed in range(10):
        assert set(split_by_scene(lopsided, seed=seed)) == {"train", "val", "test"}
    with pytest.raises(ValueError, match="summing to 1"):
        split_by_scene(scenes, (0.5, 0.2, 0.2))


def test_dataset_crops_normalises_and_returns_multi_hot_targets(patches):
    from sarlab.preprocess.normalize import compute_band_stats

    data = BigEarthNetS1Dataset(patches[:4], crop=112)
    raw = data.image(0)
    assert raw.shape == (2, 112, 112)
    full = BigEarthNetS1Dataset(patches[:1]).image(0)
    np.testing.assert_array_equal(raw, full[:, 4:116, 4:116])
    data.stats = compute_band_stats(raw, ["VV", "VH"], "dB", progress=False)
    item = data[0]
    assert item["image"].dtype == torch.float32
    assert abs(float(item["image"].mean())) < 0.1  # normalised by its own statistics
    labels = json.loads(next(patches[0].glob("*.json")).read_text())["labels"]
    assert item["target"].sum() == len({lab for lab in labels})


def test_patch_features_are_band_and_ratio_statistics():
    rng = np.random.default_rng(0)
    images = rng.normal(-12, 3, (3, 2, 10, 10)).astype(np.float32)
    feats = patch_features(images)
    assert feats.shape == (3, 15)
    ratio = images[1, 1] - images[1, 0]
    np.testing.assert_allclose(feats[1, 2], ratio.mean(), rtol=1e-5)  # means: VV, VH, ratio
    np.testing.assert_allclose(feats[1, 4], images[1, 1].std(), rtol=1e-5)  # stds
    np.testing.assert_allclose(feats[1, 6], np.percentile(images[1, 0], 10), rtol=1e-5)


def test_finetuning_learns_the_labels_and_repeats_by_seed(patches):
    args = dict(max_steps=30, eval_every=10, batch_size=16, encoder_kwargs=TINY, progress=False)
    run = finetune_multilabel(patches, "random", seed=0, lr=3e-3, **args)
    assert run.n_train_patches == int((split_by_scene(BigEarthNetS1Dataset(patches).scenes)
                                       == "train").sum())  # fmt: skip
    assert 0 <= run.test_map <= 1 and run.best_step > 0
    losses = [h["loss"] for h in run.history]
    assert losses[-1] < losses[0]
    again = finetune_multilabel(patches, "random", seed=0, lr=3e-3, **args)
    assert again.test_map == run.test_map and again.history == run.history
    few = finetune_multilabel(patches, "random", seed=0, label_fraction=0.1, lr=3e-3, **args)
    assert few.n_train_patches == max(1, round(0.1 * run.n_train_patches))
    uncached = finetune_multilabel(patches, "random", seed=0, lr=3e-3, cache=False, **args)
    assert uncached.test_map == run.test_map  # reading from disk each time changes nothing


def test_forest_beats_chance_on_the_test_patches(patches):
    result = random_forest_multilabel(patches, n_estimators=50)
    data = BigEarthNetS1Dataset(patches)
    test = split_by_scene(data.scenes) == "test"
    chance = mean_average_precision(data.targets[test], np.random.default_rng(0).random(
        data.targets[test].shape))  # fmt: skip
    assert result["test_map"] > chance + 0.05


def _checkpoint(path, bands: list[str]):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        enc = vit_encoder("tiny", depth=1, embed_dim=32, num_heads=2, patch_size=8, img_size=64)
    card = {
        "bands": bands,
        "units": "dB",
        "quantity": "sigma0",
        "normalization": None,
        "ssl": {"method": "mae", "config": {}},
        "data": {"manifest": None, "checksum": None},
    }
    return enc, save_checkpoint(path / "ckpt", enc, card)


def test_checkpoint_for_other_bands_is_refused(patches, tmp_path):
    _, ckpt = _checkpoint(tmp_path, ["HH", "HV"])
    with pytest.raises(UnitsError, match=r"bands \['HH', 'HV'\].*\['VV', 'VH'\]"):
        finetune_multilabel(patches, "ssl", ckpt, max_steps=1, progress=False)


def test_ssl_checkpoint_for_vv_vh_is_fine_tuned_and_compared(patches, tmp_path):
    enc, ckpt = _checkpoint(tmp_path, ["VV", "VH"])
    run = finetune_multilabel(patches, "ssl", ckpt, regime="frozen", max_steps=4, eval_every=2,
                              progress=False)  # fmt: skip
    assert run.model.encoder.patch_embed.proj.weight.equal(enc.patch_embed.proj.weight)
    assert not any(p.requires_grad for p in run.model.encoder.parameters())
    table = compare_multilabel(patches, ckpt, max_steps=2, eval_every=1, n_estimators=10,
                               progress=False)  # fmt: skip
    assert list(table.index) == ["ssl", "random", "forest"]
    assert table["test_mAP"].between(0, 1).all()


def test_compare_without_a_fitting_checkpoint_runs_random_and_forest(patches, tmp_path, capsys):
    _, ckpt = _checkpoint(tmp_path, ["HH", "HV"])
    table = compare_multilabel(patches[:48], ckpt, max_steps=1, eval_every=1, n_estimators=10,
                               encoder_kwargs=TINY, progress=False)  # fmt: skip
    assert list(table.index) == ["random", "forest"]
    assert "no SSL encoder for BigEarthNet-S1" in capsys.readouterr().out


def test_a_folder_without_patches_is_named(tmp_path):
    with pytest.raises(InputError, match=str(tmp_path)):
        find_bigearthnet_patches(tmp_path)


@pytest.mark.skipif(not (SHARED_DATA / "bigearthnet_s1").is_dir(), reason="no ../shared/data")
def test_real_bigearthnet_patches_split_by_product_and_train():
    patches = find_bigearthnet_patches(SHARED_DATA / "bigearthnet_s1")
    data = BigEarthNetS1Dataset(patches)
    splits = split_by_scene(data.scenes)
    assert set(splits) == {"train", "val", "test"}
    assert data.targets.sum() > len(patches)  # multi-label: several classes per patch
    run = finetune_multilabel(patches, "random", splits=splits, max_steps=2, eval_every=1,
                              encoder_kwargs=TINY, progress=False)  # fmt: skip
    assert np.isfinite(run.test_map)
