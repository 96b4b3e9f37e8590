"""The trainer: schedule, weight-decay groups, data order, logs, checkpoints and exact resume."""

from __future__ import annotations

import itertools
import json
import math
import signal
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from train_helpers import CHIP, TinyMasked, build_tiny_store, tiny_encoder

from sarlab import train_state
from sarlab.chips import ChipDataset, ChipStore
from sarlab.errors import InputError
from sarlab.models import load_encoder, load_extra_tensors
from sarlab.train import (
    ShardedBatchSampler,
    TrainConfig,
    fit,
    lr_at,
    param_groups,
    pretrain,
    sample_masking,
)
from sarlab.train_schedule import build_optimizer
from sarlab.train_state import load_train_state

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """32 chips of 2 x 16 x 16: with batch 8, one epoch is 4 steps."""
    path = tmp_path_factory.mktemp("train_store") / "chips.zarr"
    build_tiny_store(path)
    return path


def config(out: Path, **kw) -> TrainConfig:
    base = dict(
        steps=10, batch_size=8, lr=2e-3, warmup_steps=2, min_lr=1e-4, log_every=1,
        checkpoint_every=3, out_dir=str(out),
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def weights(method: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in method.state_dict().items()}


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"tensors differ: {differ}"


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "images_per_s"} for r in history]


class Stop(Exception):
    pass


def stop_at(step_to_stop: int):
    def callback(step: int, info: dict) -> None:
        if step == step_to_stop:
            raise Stop(step)

    return callback


# --- schedule and optimizer -----------------------------------------------------------------


def test_lr_schedule_hand_computed():
    kw = dict(lr=1.0, min_lr=0.1, warmup_steps=4, total_steps=12)
    assert [lr_at(s, **kw) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, **kw) == 1.0  # cosine starts at the peak
    assert lr_at(8, **kw) == pytest.approx(0.55)  # t = 4/8: 0.1 + 0.9 * (1 + cos(pi/2)) / 2
    # t = 7/8: 0.1 + 0.45 * (1 + cos(7 pi / 8)) = 0.1 + 0.45 * (1 - 0.9238795)
    assert lr_at(11, **kw) == pytest.approx(0.1342542, abs=1e-7)
    assert lr_at(50, **kw) == pytest.approx(0.1)  # past the end: min_lr
    values = [lr_at(s, **kw) for s in range(4, 12)]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert lr_at(0, lr=3e-4, min_lr=0.0, warmup_steps=0, total_steps=10) == 3e-4
    with pytest.raises(ValueError, match="step"):
        lr_at(-1, **kw)


def test_weight_decay_groups_leave_out_norms_biases_embeddings_and_tokens():
    method = TinyMasked(tiny_encoder())
    method.encoder.blocks[1].mlp.fc2.weight.requires_grad_(False)  # frozen: in no group
    groups = {g["name"]: g for g in param_groups(method, 0.05)}
    assert groups["decay"]["weight_decay"] == 0.05 and groups["no_decay"]["weight_decay"] == 0.0
    decay = ["patch_embed.proj.weight", "blocks.0.mlp.fc2.weight"]  # blocks.1's fc2 is frozen
    for i in range(2):
        decay += [f"blocks.{i}.attn.qkv.weight", f"blocks.{i}.attn.proj.weight"]
        decay += [f"blocks.{i}.mlp.fc1.weight"]
    decay = sorted(["encoder." + n for n in decay] + ["decoder.weight"])
    assert sorted(groups["decay"]["names"]) == decay
    no_decay = set(groups["no_decay"]["names"])
    assert {"encoder.cls_token", "encoder.pos_embed", "mask_token", "decoder_pos_embed"} <= no_decay
    assert {"encoder.norm.weight", "encoder.blocks.0.norm1.bias", "decoder.bias"} <= no_decay
    assert no_decay | set(decay) == {n for n, p in method.named_parameters() if p.requires_grad}
    # a method's no_weight_decay() hook (timm's convention) adds names
    method.no_weight_decay = lambda: {"decoder.weight"}
    hooked = {g["name"]: g["names"] for g in param_groups(method, 0.05)}
    assert "decoder.weight" in hooked["no_decay"] and "decoder.weight" not in hooked["decay"]


def test_adamw_decays_only_the_decay_group():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    before = weights(model)
    opt = build_optimizer(model, lr=0.1, weight_decay=0.5, betas=(0.9, 0.95))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = weights(model)
    torch.testing.assert_close(after["0.weight"], before["0.weight"] * (1 - 0.1 * 0.5))
    for name in ("0.bias", "1.weight", "1.bias"):
        assert torch.equal(after[name], before[name]), name


# --- data order -----------------------------------------------------------------------------


def test_sampler_order_depends_on_seed_and_epoch_and_shards_concatenate():
    def batches(**kw):
        return list(ShardedBatchSampler(37, 8, **{"seed": 3, "epoch": 1, **kw}))

    single = batches()
    assert len(single) == 4 and all(len(b) == 8 for b in single)  # 37 // 8, tail dropped
    positions = [p for b in single for p, _ in b]
    assert len(set(positions)) == 32 and set(positions) <= set(range(37))
    assert batches() == single
    assert batches(epoch=2) != single and batches(seed=4) != single
    for world in (2, 4):
        shards = [batches(rank=r, world_size=world) for r in range(world)]
        joined = [[pair for s in shards for pair in s[b]] for b in range(4)]
        assert joined == single  # (position, sample_seed) pairs: same samples, same seeds
    assert batches(start_batch=3) == single[3:]
    assert len(ShardedBatchSampler(37, 8, seed=3, epoch=1, start_batch=1)) == 3
    with pytest.raises(ValueError, match="divisible"):
        ShardedBatchSampler(37, 8, seed=0, epoch=0, world_size=3)


def test_sample_masking_depends_on_each_sample_seed_only():
    seeds = torch.tensor([5, 11, 12, 5])
    keep, masked = sample_masking(seeds, 16, 0.75)
    assert keep.shape == (4, 4) and masked.shape == (4, 12)
    assert torch.equal(keep[0], keep[3]) and not torch.equal(keep[1], keep[2])
    for k, m in zip(keep, masked, strict=True):
        assert sorted(k.tolist() + m.tolist()) == list(range(16))
    keep2, _ = sample_masking(seeds.flip(0), 16, 0.75)  # another batch layout, same rows
    assert torch.equal(keep2, keep.flip(0))


# --- a short run ---------------------------------------------------------------------------


def test_loss_decreases_and_metrics_and_card_are_written(store, tmp_path):
    method = TinyMasked(tiny_encoder())
    step_losses = {}
    cfg = config(tmp_path / "run", steps=40, log_every=5, checkpoint_every=20, warmup_steps=5)
    result = fit(
        method, ChipDataset(store), cfg, progress=False,
        card_extra={"data": {"manifest": "tiny_demo", "checksum": "ab" * 32}},
        callbacks=[lambda step, info: step_losses.__setitem__(step, info["loss"])],
    )  # fmt: skip
    history = result.history
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert lines == history
    assert [r["step"] for r in history] == list(range(5, 41, 5))
    assert [r["epoch"] for r in history] == [(s - 1) // 4 for s in range(5, 41, 5)]
    for r in history:
        assert {"step", "epoch", "loss", "lr", "grad_norm", "images_per_s", "masked"} <= set(r)
        assert r["lr"] == lr_at(r["step"] - 1, lr=2e-3, min_lr=1e-4, warmup_steps=5, total_steps=40)
        window = [step_losses[s] for s in range(r["step"] - 4, r["step"] + 1)]
        assert r["loss"] == pytest.approx(np.mean(window), rel=1e-6)  # mean since the last line
        assert r["images_per_s"] > 0 and r["grad_norm"] > 0 and r["masked"] == 8.0
    assert history[0]["loss"] > 2.5 * history[-1]["loss"], [r["loss"] for r in history]
    assert result.final_loss == history[-1]["loss"] and result.step == 40
    assert method.step_calls == [(s, 40) for s in range(1, 41)]

    encoder = load_encoder(result.checkpoint, expect_bands=["VV", "VH"], expect_units="dB")
    assert_bit_identical(weights(encoder), weights(method.encoder))
    extra = load_extra_tensors(result.checkpoint)
    assert torch.equal(extra["decoder.weight"], method.decoder.weight) and extra["last_step"] == 40
    card = encoder.model_card
    stats = ChipStore(store).stats
    assert (card["bands"], card["units"], card["quantity"]) == (["VV", "VH"], "dB", "sigma0")
    assert card["normalization"] == stats.to_dict()
    assert card["ssl"] == {"method": "tiny_masked", "config": {"mask_ratio": 0.5, "seeded": False}}
    assert card["data"]["manifest"] == "tiny_demo" and card["data"]["checksum"] == "ab" * 32
    assert card["data"]["n_chips"] == 32
    assert card["metrics"]["loss"] == history[-1]["loss"] and card["metrics"]["step"] == 40
    assert card["architecture"]["img_size"] == CHIP and "sha" in card["git"]
    assert card["training"]["config"] == cfg.to_dict()


# --- exact resume ---------------------------------------------------------------------------


def test_resume_after_a_crash_is_bit_identical(store, tmp_path):
    """10 steps (2.5 epochs) straight vs. stopped at 7 (state saved at 6) and resumed."""
    full = TinyMasked(tiny_encoder())
    straight = fit(full, ChipDataset(store), config(tmp_path / "a"), progress=False)

    first, stop = TinyMasked(tiny_encoder()), [stop_at(7)]
    with pytest.raises(Stop):
        fit(first, ChipDataset(store), config(tmp_path / "b"), progress=False, callbacks=stop)
    assert load_train_state(tmp_path / "b" / "train_state")["state"]["step"] == 6
    logged = [r["step"] for r in map(json.loads, (tmp_path / "b" / "metrics.jsonl").open())]
    assert logged == list(range(1, 8))  # step 7 was logged after the last state: cut on resume

    torch.manual_seed(1234)  # a different RNG state and initialisation: resume must restore both
    second = TinyMasked(tiny_encoder(seed=99))
    resumed = fit(second, ChipDataset(store), config(tmp_path / "b"), progress=False)
    assert resumed.resumed_from == 6 and resumed.step == 10
    assert_bit_identical(weights(second), weights(full))
    assert without_timing(resumed.history) == without_timing(straight.history)
    assert [r["step"] for r in resumed.history] == list(range(1, 11))
    optim_a = load_train_state(tmp_path / "a" / "train_state")["optimizer"]["state"]
    optim_b = load_train_state(tmp_path / "b" / "train_state")["optimizer"]["state"]
    for i in optim_a:
        for k in optim_a[i]:
            assert torch.equal(optim_a[i][k], optim_b[i][k])

    # a finished run resumes to nothing: no step, no change
    again = fit(second, ChipDataset(store), config(tmp_path / "b"), progress=False)
    assert again.resumed_from == 10 and again.step == 10
    assert_bit_identical(weights(second), weights(full))


def test_resume_after_sigkill_of_a_separate_process(store, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, str(TESTS / "train_worker.py"), str(store), str(out), "--steps", "10"]
    done = subprocess.run([*cmd, "--kill-at", "5"], capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert load_train_state(out / "train_state")["state"]["step"] == 3

    straight = TinyMasked(tiny_encoder())
    fit(straight, ChipDataset(store), config(tmp_path / "straight"), progress=False)
    resumed = TinyMasked(tiny_encoder(seed=5))
    result = fit(resumed, ChipDataset(store), config(out), progress=False)
    assert result.resumed_from == 3
    assert_bit_identical(weights(resumed), weights(straight))


def test_dataloader_workers_do_not_change_the_result(store, tmp_path):
    runs = {}
    for workers in (0, 2):
        method = TinyMasked(tiny_encoder())
        cfg = config(tmp_path / str(workers), steps=5, num_workers=workers)
        fit(method, ChipDataset(store), cfg, progress=False)
        runs[workers] = weights(method)
    assert_bit_identical(runs[0], runs[2])


def test_checkpoints_are_atomic(store, tmp_path, monkeypatch):
    """A crash while writing the second train state leaves the first one whole."""
    real_save, calls = train_state.torch.save, []

    def failing_save(obj, path, *args, **kw):
        calls.append(path)
        if len(calls) == 2:
            real_save(obj, path, *args, **kw)
            raise OSError("disk full")
        return real_save(obj, path, *args, **kw)

    monkeypatch.setattr(train_state.torch, "save", failing_save)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="disk full"):
        fit(TinyMasked(tiny_encoder()), ChipDataset(store), config(out), progress=False)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "metrics.jsonl", "train_state"]
    saved = load_train_state(out / "train_state")
    assert saved["state"]["step"] == 3
    assert saved["model"]["last_step"] == 3  # the weights are step 3's, not step 6's
    assert sorted(p.name for p in (out / "train_state").iterdir()) == [
        "model.safetensors", "optimizer.pt", "rng.safetensors", "state.json"
    ]  # fmt: skip
    load_encoder(out / "checkpoint")  # the encoder checkpoint is whole too (step 6's)
    # and the run resumes from that state to the same end as a clean run
    clean = TinyMasked(tiny_encoder())
    fit(clean, ChipDataset(store), config(tmp_path / "clean"), progress=False)
    resumed = TinyMasked(tiny_encoder())
    fit(resumed, ChipDataset(store), config(out), progress=False)
    assert_bit_identical(weights(resumed), weights(clean))


def test_resume_refuses_a_changed_run_and_resume_false_starts_over(store, tmp_path):
    out = tmp_path / "run"
    fit(TinyMasked(tiny_encoder()), ChipDataset(store), config(out, steps=3), progress=False)
    with pytest.raises(InputError, match=r"state\.json.*lr: 0\.002 -> 0\.001"):
        fit(TinyMasked(tiny_encoder()), ChipDataset(store), config(out, lr=1e-3), progress=False)
    with pytest.raises(InputError, match="mask_ratio"):
        method = TinyMasked(tiny_encoder(), mask_ratio=0.25)
        fit(method, ChipDataset(store), config(out, steps=3), progress=False)
    fresh = fit(
        TinyMasked(tiny_encoder()), ChipDataset(store), config(out, steps=2, lr=1e-3),
        resume=False, progress=False,
    )  # fmt: skip
    assert fresh.resumed_from is None and [r["step"] for r in fresh.history] == [1, 2]
    assert load_train_state(out / "train_state")["state"]["config"]["lr"] == 1e-3


# --- refusals -------------------------------------------------------------------------------


class DictData(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.images = torch.randn(n, 2, CHIP, CHIP, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i]}


def test_other_datasets_need_the_card_fields_before_training(tmp_path):
    method = TinyMasked(tiny_encoder())
    with pytest.raises(InputError, match=r"model_card\.json.*bands.*card_extra"):
        fit(method, DictData(16), config(tmp_path / "a", steps=1), progress=False)
    assert not (tmp_path / "a" / "metrics.jsonl").exists()  # refused before any step
    card = {"bands": ["HH", "HV"], "units": "dB", "quantity": "sigma0", "normalization": None}
    result = fit(
        method, DictData(16), config(tmp_path / "b", steps=2), progress=False, card_extra=card
    )
    assert load_encoder(result.checkpoint).model_card["bands"] == ["HH", "HV"]
    with pytest.raises(ValueError, match="fewer than one batch"):
        fit(method, DictData(4), config(tmp_path / "c"), progress=False, card_extra=card)


def test_non_finite_loss_stops_the_run(tmp_path):
    class Exploding(TinyMasked):
        def forward(self, batch):
            loss, logs = super().forward(batch)
            return loss * float("nan"), logs

    card = {"bands": ["HH", "HV"], "units": "dB", "quantity": "sigma0", "normalization": None}
    method = Exploding(tiny_encoder())
    with pytest.raises(FloatingPointError, match="loss is nan at step 1"):
        fit(method, DictData(8), config(tmp_path), progress=False, card_extra=card)


def test_train_config_is_json_and_validated():
    cfg = TrainConfig(steps=5, betas=[0.8, 0.9], out_dir=Path("x"))
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.betas == (0.8, 0.9) and cfg.total_steps(100) == 5
    assert TrainConfig(epochs=3).total_steps(7) == 21
    with pytest.raises(ValueError, match="lr must be a positive number"):
        TrainConfig(lr=-1.0)
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({"learning_rate": 1.0})


# --- pretrain() and the real SSL methods -------------------------------------------------------


def test_pretrain_builds_the_encoder_from_the_store(store, tmp_path, monkeypatch):
    """pretrain's wiring (channels, chip size, card) with the tiny method standing in."""
    built = {}

    def build_method(name, encoder, bands=None, band_stats=None, **config):
        built.update(name=name, encoder=encoder.config, config=config)
        built.update(bands=bands, band_stats=band_stats)
        return TinyMasked(encoder, **config)

    try:
        import sarlab.ssl as ssl
    except ImportError:
        ssl = types.ModuleType("sarlab.ssl")
        monkeypatch.setitem(sys.modules, "sarlab.ssl", ssl)
    monkeypatch.setattr(ssl, "build_method", build_method, raising=False)
    result = pretrain(
        store, method="tiny_masked", patch_size=4, out_dir=tmp_path / "run",
        encoder_kwargs={"embed_dim": 32, "depth": 1, "num_heads": 2},
        method_kwargs={"mask_ratio": 0.25}, manifest="tiny_demo", steps=3, batch_size=8,
        progress=False,
    )  # fmt: skip
    assert built["name"] == "tiny_masked" and built["config"] == {"mask_ratio": 0.25}
    # the method is told the store's channel order and normalisation statistics
    assert built["bands"] == ["VV", "VH"]
    assert built["band_stats"].to_dict() == ChipStore(store).stats.to_dict()
    assert (built["encoder"].in_chans, built["encoder"].img_size) == (2, CHIP)
    card = load_encoder(result.checkpoint).model_card
    assert card["ssl"]["method"] == "tiny_masked" and card["ssl"]["config"]["mask_ratio"] == 0.25
    assert card["data"]["manifest"] == "tiny_demo" and card["data"]["split"] == "train"
    assert result.step == 3 and len(result.history) == 1  # log_every 10: only the last step
    with pytest.raises(InputError, match="do not split into 5 px patches"):
        pretrain(store, method="tiny_masked", patch_size=5, out_dir=tmp_path / "x")


def test_pretrain_with_mae(store, tmp_path):
    pytest.importorskip("sarlab.ssl", reason="sarlab.ssl (the SSL methods) is not there yet")
    result = pretrain(
        store, method="mae", patch_size=4, out_dir=tmp_path / "mae",
        encoder_kwargs={"embed_dim": 32, "depth": 2, "num_heads": 2},
        steps=30, batch_size=8, lr=2e-3, warmup_steps=3, log_every=5, progress=False,
    )  # fmt: skip
    losses = [r["loss"] for r in result.history]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    card = load_encoder(result.checkpoint).model_card
    assert card["ssl"]["method"] == "mae" and card["bands"] == ["VV", "VH"]
    weights_file = result.train_state / "model.safetensors"
    assert any(k.startswith("encoder.") for k in load_file(weights_file))


def test_pretrain_gradient_gets_the_store_statistics(store, tmp_path):
    """Methods that work on linear intensity need the store's band statistics, unasked."""
    pytest.importorskip("sarlab.ssl", reason="sarlab.ssl (the SSL methods) is not there yet")
    result = pretrain(
        store, method="gradient", patch_size=4, out_dir=tmp_path / "grad",
        encoder_kwargs={"embed_dim": 32, "depth": 1, "num_heads": 2},
        steps=2, batch_size=8, progress=False,
    )  # fmt: skip
    assert result.step == 2 and all(math.isfinite(r["loss"]) for r in result.history)
    assert load_encoder(result.checkpoint).model_card["ssl"]["config"]["bands"] == ["VV", "VH"]
