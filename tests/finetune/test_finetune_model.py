"""Segmentation models: shapes, regimes, layer-wise LR decay, checkpoint compatibility."""

from __future__ import annotations

import pytest
import torch

from sarlab.errors import UnitsError
from sarlab.finetune.model import (
    SegmentationModel,
    build_model,
    encoder_for_store,
    param_groups,
    set_regime,
    tasks_for_store,
)
from sarlab.models import save_checkpoint, vit_encoder
from sarlab.preprocess.normalize import BandStats

TASKS = {"SIC": 11, "SOD": 6, "FLOE": 7}


def tiny_vit(depth: int = 4):
    torch.manual_seed(0)
    return vit_encoder("tiny", depth=depth, embed_dim=32, num_heads=2, patch_size=4, img_size=16)


@pytest.mark.parametrize("decoder", ["progressive", "linear"])
def test_multitask_logits_at_full_resolution(decoder):
    model = SegmentationModel(tiny_vit(), TASKS, decoder=decoder, channels=32)
    out = model(torch.randn(3, 2, 16, 24))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        t: (3, k, 16, 24) for t, k in TASKS.items()
    }
    assert model.layers == [0, 1, 2, 3]


def test_unet_shapes():
    model = build_model("unet", {"water": 2}, in_chans=2, chip_size=32)
    assert model(torch.randn(2, 2, 32, 32))["water"].shape == (2, 2, 32, 32)


def test_regimes_and_layer_decay():
    model = SegmentationModel(tiny_vit(depth=4), {"water": 2}, channels=16)
    enc = model.encoder
    set_regime(model, "frozen")
    assert not any(p.requires_grad for p in enc.parameters())
    model.train()
    assert not enc.training and model.decoder.training
    set_regime(model, "partial", last_n=1)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("blocks.3.", "norm.")) for n in trainable)
    set_regime(model, "full")
    groups = param_groups(model, lr=1.0, layer_decay=0.5, weight_decay=0.1)
    lr_of = {n: g["lr"] for g in groups for n in g["names"]}
    wd_of = {n: g["weight_decay"] for g in groups for n in g["names"]}
    assert lr_of["encoder.patch_embed.proj.weight"] == 0.5**5
    assert lr_of["encoder.blocks.0.attn.qkv.weight"] == 0.5**4
    assert lr_of["encoder.blocks.3.mlp.fc1.weight"] == 0.5
    assert lr_of["encoder.norm.weight"] == 1.0
    assert lr_of["decoder.heads.heads.water.weight"] == 1.0
    assert wd_of["encoder.pos_embed"] == 0.0 and wd_of["encoder.blocks.0.attn.qkv.bias"] == 0.0
    assert wd_of["encoder.blocks.0.attn.qkv.weight"] == 0.1
    n_params = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for g in groups for p in g["params"]) == n_params
    with pytest.raises(ValueError, match="regime"):
        set_regime(model, "half")


def test_tasks_for_store():
    assert tasks_for_store(["SIC", "SOD", "FLOE"], ["SOD"]) == {"SOD": 6}
    with pytest.raises(ValueError, match="not in the store"):
        tasks_for_store(["water"], ["SOD"])


def _checkpoint(tmp_path):
    enc = tiny_vit(depth=2)
    stats = BandStats(
        bands=["HH", "HV"], units="dB", mean=[-15.0, -24.0], std=[4.0, 3.5],
        median=[-15.5, -24.2], p01=[-28.0, -33.0], p99=[-2.0, -14.0], count=[100, 100],
    )  # fmt: skip
    card = {
        "bands": ["HH", "HV"], "units": "dB", "quantity": "sigma0",
        "normalization": stats.to_dict(), "ssl": {"method": "mae", "config": {}},
        "data": {"manifest": None, "checksum": None},
    }  # fmt: skip
    return save_checkpoint(tmp_path / "ckpt", enc, card), enc


def test_checkpoint_must_match_bands_and_units(tmp_path):
    path, enc = _checkpoint(tmp_path)
    loaded = encoder_for_store(path, ["HH", "HV"], "dB", "sigma0", chip_size=16)
    assert torch.equal(loaded.blocks[1].mlp.fc2.weight, enc.blocks[1].mlp.fc2.weight)
    with pytest.raises(UnitsError, match=r"cannot fine-tune.*bands \['HH', 'HV'\].*\['VV', 'VH'\]"):
        encoder_for_store(path, ["VV", "VH"], "dB")
    with pytest.raises(UnitsError, match=r"in dB.*in linear"):
        encoder_for_store(path, ["HH", "HV"], "linear")
    with pytest.raises(UnitsError, match="bands"):
        build_model("ssl", {"water": 2}, 2, 16, checkpoint=path, bands=["HV", "HH"], units="dB")
    twin = build_model("random", {"SOD": 6}, 2, 16, checkpoint=path, bands=["HH", "HV"], units="dB")
    assert twin.encoder.config == enc.config
    assert not torch.equal(twin.encoder.blocks[0].attn.qkv.weight, enc.blocks[0].attn.qkv.weight)


def test_build_model_reads_the_chosen_layers():
    small = {"depth": 4, "embed_dim": 32, "num_heads": 2}
    last = build_model("random", {"SOD": 6}, 2, 16, patch_size=4, layers=[-1],
                       encoder_kwargs=small)  # fmt: skip
    default = build_model("random", {"SOD": 6}, 2, 16, patch_size=4, encoder_kwargs=small)
    assert last.layers == [-1] and len(default.layers) == 4
    assert last.decoder.fuse[0].in_channels == 32 and default.decoder.fuse[0].in_channels == 128
    assert last(torch.zeros(2, 2, 16, 16))["SOD"].shape == (2, 6, 16, 16)
