"""The notebooks' glue: run folders, chip stores built once and reused, checkpoints round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixture_paths import load_maker

from sarlab import experiment
from sarlab.chips import ChipStore
from sarlab.errors import InputError, ManifestError
from sarlab.experiment import (
    fixed_batch,
    load_method,
    method_for_store,
    prepare_chip_store,
    publish_checkpoint,
    run_dir,
    runs_table,
    store_summary,
)
from sarlab.models import load_encoder, load_extra_tensors
from sarlab.train import pretrain

N_SCENES = 4
SMALL = {"embed_dim": 32, "depth": 1, "num_heads": 2}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A data dir holding four AI4Arctic ready-to-train scenes with charts; SARLAB_DATA_DIR."""
    maker = load_maker("ai4arctic")
    root = tmp_path_factory.mktemp("sarlab_data")
    for i in range(N_SCENES):
        scene_id = f"2019031{i}T101538_dmi_prep"
        attrs = {"scene_id": f"{scene_id}.nc", "ice_service": "dmi", "pixel_spacing": 80}
        path = root / "ai4arctic-rtt" / "train" / f"{scene_id}.nc"
        maker.write_prep(path, maker.scene(i), attrs, charts=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SARLAB_DATA_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def store(data_dir) -> ChipStore:
    return prepare_chip_store("ai4arctic-rtt", size=64, progress=False)


def test_store_is_cached_under_the_data_dir_and_reused(data_dir, store):
    assert store.path.parent == data_dir / "chips"
    assert store.path.name.startswith("ai4arctic-rtt-64px-")  # single-part: no part in the name
    stamp = (store.path / "zarr.json").stat().st_mtime_ns
    again = prepare_chip_store("ai4arctic-rtt", part="ignored", size=64, progress=False)
    assert again.path == store.path and (store.path / "zarr.json").stat().st_mtime_ns == stamp
    other = prepare_chip_store("ai4arctic-rtt", size=64, min_valid=0.5, progress=False)
    assert other.path != store.path and other.attrs["min_valid"] == 0.5
    assert len(other) >= len(store)  # a lower validity threshold keeps more chips


def test_splits_are_by_scene_with_labels_and_incidence(store):
    a = store.attrs
    assert (a["size"], a["stride"], a["min_valid"], a["n_scenes"]) == (64, 64, 0.9, N_SCENES)
    assert a["label_vars"] == ["SIC", "SOD", "FLOE"] and a["incidence"] is True
    table = store.table
    assert (table.groupby("scene_id")["split"].nunique() == 1).all()  # no scene in two splits
    scenes = table.groupby("split")["scene_id"].nunique().to_dict()
    assert scenes == {"train": 3, "val": 1}  # 0.8/0.1/0.1 of 4 scenes, largest remainders
    summary = store_summary(store)
    assert list(summary.index) == ["train", "val"]
    assert summary.loc["val", "scenes"] == 1 and summary["chips"].sum() == len(store)
    chip = store.chip(int(table.index[0]))
    sic = chip["SIC"].values
    assert set(sic[sic != 255].ravel()) <= {0, 9, 10} and (sic != 255).any()


def test_out_path_and_max_scenes(data_dir, store, tmp_path):
    out = tmp_path / "mine.zarr"
    small = prepare_chip_store("ai4arctic-rtt", size=32, stride=48, out=out, max_scenes=1)
    assert small.path == out and small.attrs["n_scenes"] == 1 and small.attrs["stride"] == 48
    rebuilt = prepare_chip_store("ai4arctic-rtt", size=64, out=out, max_scenes=1, progress=False)
    assert rebuilt.attrs["size"] == 64 and rebuilt.path == out  # other settings: rebuilt there
    (tmp_path / "not_a_store").mkdir()
    with pytest.raises(FileExistsError):  # never overwrites what is not a chip store
        prepare_chip_store("ai4arctic-rtt", out=tmp_path / "not_a_store", progress=False)


def test_bad_names_and_missing_data_are_explained(data_dir, tmp_path):
    with pytest.raises(ManifestError, match="no manifest named 'no-such-data'"):
        prepare_chip_store("no-such-data")
    with pytest.raises(InputError, match="has parts"):
        prepare_chip_store("demo-arctic-sim", part="glacier")
    with pytest.raises(InputError, match="sarlab data fetch sen1floods11"):
        prepare_chip_store("sen1floods11")  # not in this data dir
    with pytest.raises(InputError, match="no ai4arctic scene files"):
        prepare_chip_store("ai4arctic-rtt", data_path=str(tmp_path))
    with pytest.raises(ValueError, match="max_scenes"):
        prepare_chip_store("ai4arctic-rtt", max_scenes=0)


def test_fixed_batch_is_reproducible(store):
    a, b = fixed_batch(store, n=3, split="val", seed=1), fixed_batch(store.path, 3, "val", 1)
    assert a["chip_id"] == b["chip_id"] and torch.equal(a["sample_seed"], b["sample_seed"])
    assert a["image"].shape == (3, 2, 64, 64) and a["incidence"].shape == (3, 64, 64)
    assert set(store.table.loc[a["index"].tolist(), "split"]) == {"val"}
    assert fixed_batch(store, n=3, split="val", seed=2)["chip_id"] != a["chip_id"]
    with pytest.raises(InputError, match="no chips in split 'test'"):
        fixed_batch(store, split="test")


def test_checkpoint_round_trip(store, tmp_path):
    result = pretrain(
        store.path, "mae", "tiny", out_dir=tmp_path / "run", patch_size=16, encoder_kwargs=SMALL,
        steps=2, batch_size=4, warmup_steps=1, progress=False, max_seconds=600,
    )  # fmt: skip
    published = publish_checkpoint(result.checkpoint, tmp_path / "checkpoint")
    assert sorted(p.name for p in published.iterdir()) == sorted(
        p.name for p in result.checkpoint.iterdir()
    )
    method = load_method(published)
    extra = load_extra_tensors(result.checkpoint)
    assert torch.equal(method.decoder.state_dict()["pred.weight"], extra["decoder.pred.weight"])
    encoder = load_encoder(result.checkpoint)
    assert all(
        torch.equal(v, method.encoder.state_dict()[k]) for k, v in encoder.state_dict().items()
    )
    visuals = method.visualize(fixed_batch(store, n=2, split="val"))
    assert visuals["reconstruction"].shape == (2, 2, 64, 64)

    # an untrained method built like pretrain builds it starts from the same weights
    fresh = method_for_store(store, "mae", "tiny", 16, encoder_kwargs=SMALL)
    again = pretrain(
        store.path, "mae", "tiny", out_dir=tmp_path / "zero", patch_size=16, encoder_kwargs=SMALL,
        steps=1, batch_size=4, lr=1e-12, min_lr=0.0, warmup_steps=0, weight_decay=0.0,
        progress=False,
    )  # fmt: skip
    trained = load_method(again.checkpoint)
    for k, v in fresh.state_dict().items():
        assert torch.allclose(v, trained.state_dict()[k], atol=1e-6), k

    table = runs_table({"mae": result})
    row = table.loc["mae"]
    assert (row["steps"], row["planned steps"], row["stopped by"]) == (2, 2, "completed")
    assert row["final loss"] == result.final_loss
    with pytest.raises(InputError, match="not a checkpoint"):
        publish_checkpoint(tmp_path, tmp_path / "elsewhere")


def test_run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SARLAB_RUN_DIR", str(tmp_path / "run42"))
    assert run_dir() == tmp_path / "run42" and (tmp_path / "run42").is_dir()
    monkeypatch.delenv("SARLAB_RUN_DIR")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(experiment, "_RUN_DIR", None)
    first = run_dir()
    assert first.parent == tmp_path / "runs" and first.is_dir()
    assert run_dir() == first  # one folder per kernel


@pytest.mark.slow
def test_demo_store_keeps_the_demo_splits(demo_data):
    from sarlab.simulate.demo import demo_splits

    store = prepare_chip_store("demo-arctic-sim", "sea_ice", size=64, max_scenes=3, progress=False)
    assert store.path.name.startswith("demo-arctic-sim-sea_ice-64px-")
    split_of = demo_splits(demo_data, "sea_ice")
    table = store.table
    assert set(table["split"]) == {"train", "val", "test"}
    assert all(split_of[s] == sp for s, sp in zip(table["scene_id"], table["split"], strict=True))
    assert store.attrs["label_vars"] == ["SIC", "SOD", "FLOE"] and store.attrs["incidence"]
    flood = prepare_chip_store("demo-arctic-sim", "flood", size=64, max_scenes=3, progress=False)
    assert flood.attrs["label_vars"] == ["water"] and flood.bands == ["VV", "VH"]
    json.dumps(store.attrs)  # plain JSON: what the model card copies
