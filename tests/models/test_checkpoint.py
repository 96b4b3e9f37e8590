"""Checkpoints: safetensors + model card round trips, atomicity, timm weights, refusals."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from sarlab.errors import InputError, UnitsError
from sarlab.models import (
    ViTConfig,
    load_checkpoint,
    load_encoder,
    load_extra_tensors,
    model_card_hash,
    save_checkpoint,
    validate_model_card,
    vit_encoder,
)
from sarlab.models import checkpoint as ckpt
from sarlab.preprocess.normalize import BandStats


def tiny(**kw):
    torch.manual_seed(0)
    return vit_encoder("tiny", depth=2, **kw).eval()


def make_card(**kw) -> dict:
    stats = BandStats(
        bands=["HH", "HV"], units="dB", mean=[-15.0, -24.0], std=[4.0, 3.5],
        median=[-15.5, -24.2], p01=[-28.0, -33.0], p99=[-2.0, -14.0], count=[100, 100],
    )  # fmt: skip
    card = {
        "bands": ["HH", "HV"],
        "units": "dB",
        "quantity": "sigma0",
        "normalization": stats.to_dict(),
        "ssl": {"method": "mae", "config": {"mask_ratio": 0.75}},
        "data": {"manifest": "simulated_ew", "checksum": "ab" * 32},
        "metrics": {"loss": 0.5},
    }
    card.update(kw)
    return card


def timm_vit_tiny_state(depth: int = 12, in_chans: int = 3, grid: int = 14) -> dict:
    """Keys and shapes of timm's vit_tiny_patch16_224, written out from timm's naming."""
    d, hidden = 192, 768
    gen = torch.Generator().manual_seed(0)
    shapes = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, 1 + grid * grid, d),
        "patch_embed.proj.weight": (d, in_chans, 16, 16),
        "patch_embed.proj.bias": (d,),
        "norm.weight": (d,),
        "norm.bias": (d,),
        "head.weight": (1000, d),
        "head.bias": (1000,),
    }
    for i in range(depth):
        for name, shape in {
            "norm1": (d,), "attn.qkv": (3 * d, d), "attn.proj": (d, d), "norm2": (d,),
            "mlp.fc1": (hidden, d), "mlp.fc2": (d, hidden),
        }.items():  # fmt: skip
            shapes[f"blocks.{i}.{name}.weight"] = shape
            shapes[f"blocks.{i}.{name}.bias"] = (shape[0],)
    return {k: torch.randn(s, generator=gen) * 0.02 for k, s in shapes.items()}


def test_save_load_round_trip(tmp_path):
    model = tiny()
    folder = save_checkpoint(tmp_path / "run1", model, make_card())
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "model_card.json"]
    _, card = load_checkpoint(folder)
    assert card["architecture"] == model.config.to_dict()
    assert card["parameter_count"] == sum(p.numel() for p in model.parameters())
    assert card["weights_sha256"] == ckpt._sha256(folder / "model.safetensors")
    assert {"sha", "dirty"} <= set(card["git"]) and card["created"]
    assert card["bands"] == ["HH", "HV"] and card["metrics"] == {"loss": 0.5}
    assert BandStats.from_dict(card["normalization"]).mean == [-15.0, -24.0]
    for source in (folder, folder / "model.safetensors"):
        loaded = load_encoder(source, expect_bands=["HH", "HV"], expect_units="dB").eval()
        x = torch.randn(2, 2, 64, 64)
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))
        assert loaded.model_card == card
    assert model_card_hash(card) == model_card_hash(json.loads(json.dumps(card)))
    assert model_card_hash(card) != model_card_hash({**card, "metrics": {"loss": 0.4}})


def test_extra_tensors_and_incidence_encoder_round_trip(tmp_path):
    model = tiny(incidence_conditioning=True)
    torch.nn.init.normal_(model.incidence_embed.proj.weight, std=0.02)
    decoder = {"decoder.weight": torch.randn(4, 3), "mask_token": torch.randn(1, 1, 8)}
    save_checkpoint(tmp_path / "c", model, make_card(), extra_tensors=decoder)
    extra = load_extra_tensors(tmp_path / "c")
    assert extra.keys() == decoder.keys()
    assert all(torch.equal(extra[k], decoder[k]) for k in decoder)
    loaded = load_encoder(tmp_path / "c").eval()
    x, inc = torch.randn(1, 2, 32, 32), torch.full((1, 32, 32), 33.0)
    with torch.no_grad():
        assert torch.equal(loaded(x, incidence=inc), model(x, incidence=inc))
    save_checkpoint(tmp_path / "plain", tiny(), make_card())
    assert load_extra_tensors(tmp_path / "plain") == {}


def test_overwrite_rules(tmp_path):
    save_checkpoint(tmp_path / "c", tiny(), make_card())
    with pytest.raises(InputError, match="already exists") as err:
        save_checkpoint(tmp_path / "c", tiny(), make_card())
    assert str(tmp_path / "c") in str(err.value)
    save_checkpoint(tmp_path / "c", tiny(), make_card(metrics={"loss": 0.1}), overwrite=True)
    assert load_checkpoint(tmp_path / "c")[1]["metrics"] == {"loss": 0.1}


def test_crash_mid_save_leaves_nothing(tmp_path, monkeypatch):
    def crash(path):
        assert path.name == "model.safetensors" and path.is_file()  # weights are written
        raise RuntimeError("disk full")

    monkeypatch.setattr(ckpt, "_sha256", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(tmp_path / "c", tiny(), make_card())
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    save_checkpoint(tmp_path / "c", tiny(), make_card(metrics={"epoch": 1}))
    monkeypatch.setattr(ckpt, "_sha256", crash)
    with pytest.raises(RuntimeError):
        save_checkpoint(tmp_path / "c", tiny(), make_card(metrics={"epoch": 2}), overwrite=True)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["c"]
    assert load_checkpoint(tmp_path / "c")[1]["metrics"] == {"epoch": 1}


def test_invalid_cards_are_refused_naming_the_file(tmp_path):
    with pytest.raises(InputError, match="3 bands") as err:
        save_checkpoint(tmp_path / "c", tiny(), make_card(bands=["HH", "HV", "VV"]))
    assert "model_card.json" in str(err.value)
    assert not (tmp_path / "c").exists()
    with pytest.raises(InputError, match="units must be one of"):
        save_checkpoint(tmp_path / "c", tiny(), make_card(units="dBZ"))
    with pytest.raises(InputError, match="normalization is in dB"):
        save_checkpoint(tmp_path / "c", tiny(), make_card(units="linear"))
    folder = save_checkpoint(tmp_path / "c", tiny(), make_card())
    card_path = folder / "model_card.json"
    card = json.loads(card_path.read_text())
    del card["ssl"], card["bands"]
    card_path.write_text(json.dumps(card))
    with pytest.raises(InputError, match=r"missing field 'bands'.*missing field 'ssl'") as err:
        load_checkpoint(folder)
    assert str(card_path) in str(err.value)
    with pytest.raises(InputError, match="JSON object"):
        validate_model_card([1, 2], "x.json")


def test_corrupted_or_pickled_weights_are_refused(tmp_path):
    folder = save_checkpoint(tmp_path / "c", tiny(), make_card())
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(InputError, match="sha256 differs") as err:
        load_encoder(folder)
    assert str(weights) in str(err.value)
    pickled = tmp_path / "model.pt"
    pickled.write_bytes(pickle.dumps({"cls_token": [0.0]}))
    with pytest.raises(InputError, match="not a readable safetensors file"):
        load_checkpoint(pickled)
    with pytest.raises(InputError, match=r"no model_card\.json"):
        load_checkpoint(tmp_path)


def test_card_mismatch_refusal(tmp_path):
    folder = save_checkpoint(tmp_path / "ice", tiny(), make_card())
    with pytest.raises(UnitsError) as err:
        load_encoder(folder, expect_bands=["VV", "VH"], expect_units="dB")
    message = str(err.value)
    assert str(folder) in message and "['HH', 'HV']" in message and "['VV', 'VH']" in message
    with pytest.raises(UnitsError, match=r"in dB, but the data .* in linear"):
        load_encoder(folder, expect_bands=["HH", "HV"], expect_units="linear")
    with pytest.raises(UnitsError, match="gamma0"):
        load_encoder(folder, expect_quantity="gamma0")
    with pytest.raises(UnitsError):  # band order matters
        load_encoder(folder, expect_bands=["HV", "HH"])


def test_timm_vit_tiny_state_dict_loads_with_no_missing_keys():
    state = timm_vit_tiny_state()
    expected = {k for k in state if not k.startswith("head.")}
    assert len(expected) == 4 + 2 + 12 * 12
    model = load_encoder(state)
    assert set(model.state_dict()) == expected
    assert model.config.depth == 12 and model.config.num_heads == 3 and model.in_chans == 3
    assert model.load_report["missing"] == [] and model.load_report["unexpected"] == []
    assert any("head.bias" in note for note in model.load_report["notes"])
    own = model.state_dict()
    assert all(torch.equal(own[k], state[k]) for k in expected)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5, 192)


def test_timm_weights_resampled_and_adapted_to_two_channels():
    state = timm_vit_tiny_state(depth=2)
    config = ViTConfig(depth=2, in_chans=2, img_size=128)
    with pytest.raises(InputError, match="adapt_channels=True"):
        load_encoder(state, config=config)
    model = load_encoder({"model": state}, config=config, adapt_channels=True)
    assert model.pos_embed.shape == (1, 1 + 64, 192)
    assert torch.equal(model.pos_embed[:, 0], state["pos_embed"][:, 0])
    # A value repeated over the channels embeds exactly as in the RGB source model.
    source = torch.nn.functional.conv2d(torch.full((1, 3, 16, 16), 0.7), *[
        state[f"patch_embed.proj.{n}"] for n in ("weight", "bias")
    ], stride=16)  # fmt: skip
    ours = model.patch_embed.proj(torch.full((1, 2, 16, 16), 0.7))
    assert torch.allclose(ours, source, atol=1e-5)
    with pytest.raises(InputError, match="patch size"):
        load_encoder(state, config=ViTConfig(depth=2, in_chans=3, patch_size=8))


def test_missing_and_unexpected_keys_are_listed():
    state = timm_vit_tiny_state(depth=2)
    del state["blocks.1.norm1.weight"]
    state["blocks.0.ls1.gamma"] = torch.ones(192)
    with pytest.raises(InputError, match="state dict") as err:
        load_encoder(state)
    assert "blocks.1.norm1.weight" in str(err.value) and "blocks.0.ls1.gamma" in str(err.value)
    with pytest.warns(UserWarning, match="partial load"):
        model = load_encoder(state, strict=False)
    assert model.load_report["missing"] == ["blocks.1.norm1.weight"]
    assert torch.equal(model.blocks[0].norm1.weight, state["blocks.0.norm1.weight"])
    wrapped = {f"module.{k}": v for k, v in timm_vit_tiny_state(depth=2).items()}
    assert load_encoder(wrapped).config.depth == 2
    bad = timm_vit_tiny_state(depth=2)
    bad["norm.weight"] = torch.ones(10)
    with pytest.raises(InputError, match=r"shape mismatch for.*norm\.weight"):
        load_encoder(bad)


def test_sarlab_checkpoint_into_larger_grid_and_incidence_keys(tmp_path):
    model = tiny(img_size=64)
    folder = save_checkpoint(tmp_path / "c", model, make_card())
    big = load_encoder(folder, config={**model.config.to_dict(), "img_size": 128})
    assert big.pos_embed.shape == (1, 1 + 64, 192)
    x = torch.randn(1, 2, 128, 128)
    with torch.no_grad():  # resampling on load equals resampling at run time
        assert torch.allclose(big(x), model(x), atol=1e-5)
    conditioned = {**model.config.to_dict(), "incidence_conditioning": True}
    with pytest.raises(InputError, match=r"incidence_embed\.proj\.weight"):
        load_encoder(folder, config=conditioned)
    with pytest.warns(UserWarning):
        assert load_encoder(folder, config=conditioned, strict=False).incidence_embed is not None


def test_bare_safetensors_file_has_no_card(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file(timm_vit_tiny_state(depth=2), str(path))
    state, card = load_checkpoint(path)
    assert card is None and "head.weight" in state
    model = load_encoder(path, expect_bands=["HH", "HV"])  # nothing to check against
    assert model.model_card is None and model.in_chans == 3
