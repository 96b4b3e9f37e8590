"""The ViT encoder: shapes, masking, patch layout, incidence conditioning, attention."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sarlab.models import PRESETS, ViTConfig, ViTEncoder, random_masking, vit_encoder
from sarlab.models.vit import Attention, resample_pos_embed


def tiny(**kw) -> ViTEncoder:
    torch.manual_seed(0)
    return vit_encoder("tiny", depth=2, **kw).eval()


@pytest.mark.parametrize("chans", [1, 2, 3])
@pytest.mark.parametrize("patch", [8, 16])
@pytest.mark.parametrize("size", [64, 96, 128])
def test_shapes_any_channels_patch_and_size(chans, patch, size):
    model = tiny(in_chans=chans, patch_size=patch, img_size=224)
    x = torch.randn(2, chans, size, size)
    grid = size // patch
    with torch.no_grad():
        tokens = model(x)
        dense = model.dense_features(x)
    assert tokens.shape == (2, 1 + grid * grid, 192)
    assert dense.shape == (2, 192, grid, grid)
    assert torch.allclose(dense.flatten(2).transpose(1, 2), tokens[:, 1:])
    assert model.pool(tokens, "cls").shape == (2, 192)
    assert torch.allclose(model.pool(tokens, "mean"), tokens[:, 1:].mean(1))
    assert model.num_patches == (224 // patch) ** 2
    assert torch.isfinite(tokens).all()


def test_non_square_input_and_bad_sizes():
    model = tiny()
    assert model.grid_size((64, 96)) == (4, 6)
    assert model(torch.randn(1, 2, 64, 96)).shape == (1, 25, 192)
    with pytest.raises(ValueError, match="multiple of patch 16"):
        model(torch.randn(1, 2, 60, 64))
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        model(torch.randn(1, 3, 64, 64))


def test_pos_embed_resampling_keeps_cls_and_structure():
    model = tiny()
    assert model.pos_embed_for((14, 14)) is model.pos_embed
    side = 14
    cols = torch.linspace(-1, 1, side)
    field = cols.repeat(side, 1).reshape(1, side * side, 1).expand(1, -1, 4).clone()
    pos = torch.cat([torch.full((1, 1, 4), 7.0), field], dim=1)
    out = resample_pos_embed(pos, (4, 6))
    assert out.shape == (1, 25, 4)
    assert torch.equal(out[:, 0], pos[:, 0])
    grid = out[0, 1:, 0].reshape(4, 6)
    assert torch.allclose(grid, grid[:1].expand(4, -1), atol=1e-6)  # rows identical
    assert (grid[0, 1:] > grid[0, :-1]).all()  # the ramp stays increasing
    const = resample_pos_embed(torch.full((1, 1 + 196, 3), 2.5), (8, 8))
    assert torch.allclose(const, torch.full_like(const, 2.5), atol=1e-5)
    with pytest.raises(ValueError, match="square grid"):
        resample_pos_embed(torch.zeros(1, 1 + 15, 3), (4, 4))


def test_keep_indices_gather_first_layer_inputs():
    model = tiny()
    x = torch.randn(3, 2, 64, 64)
    keep = torch.tensor([[0, 5, 15], [3, 2, 1], [15, 14, 0]])
    full = model.embed_tokens(x)
    masked = model.embed_tokens(x, keep=keep)
    assert masked.shape == (3, 4, 192)
    assert torch.equal(masked[:, 0], full[:, 0])
    for b in range(3):
        for k in range(3):
            assert torch.equal(masked[b, 1 + k], full[b, 1 + keep[b, k]])
    assert model.forward_features(x, keep=keep).shape == (3, 4, 192)
    with pytest.raises(ValueError, match="keep must be"):
        model.embed_tokens(x, keep=keep[0])


def test_keep_all_patches_permuted_permutes_the_output():
    model = tiny()
    x = torch.randn(2, 2, 64, 64)
    perm = torch.stack(
        [torch.randperm(16, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    )
    with torch.no_grad():
        full = model(x)
        out = model.forward_features(x, keep=perm)
    assert torch.allclose(out[:, 0], full[:, 0], atol=1e-5)
    expected = torch.stack([full[b, 1:][perm[b]] for b in range(2)])
    assert torch.allclose(out[:, 1:], expected, atol=1e-5)


def test_random_masking_partitions_patches():
    keep, masked = random_masking(4, 16, 0.75, generator=torch.Generator().manual_seed(0))
    assert keep.shape == (4, 4) and masked.shape == (4, 12)
    for b in range(4):
        assert sorted(keep[b].tolist() + masked[b].tolist()) == list(range(16))
        assert keep[b].tolist() == sorted(keep[b].tolist())
    again, _ = random_masking(4, 16, 0.75, generator=torch.Generator().manual_seed(0))
    assert torch.equal(keep, again)
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masking(1, 16, 1.0)


@pytest.mark.parametrize("chans", [1, 2, 3])
def test_patchify_round_trip_and_layout(chans):
    model = tiny(in_chans=chans, patch_size=8)
    x = torch.arange(2 * chans * 16 * 24, dtype=torch.float32).reshape(2, chans, 16, 24)
    patches = model.patchify(x)
    assert patches.shape == (2, 6, 64 * chans)
    p, gw = 8, 3
    for b in range(2):
        for i in range(2):
            for j in range(3):
                for r in range(p):
                    for c in range(p):
                        for ch in range(chans):
                            got = patches[b, i * gw + j, (r * p + c) * chans + ch]
                            assert got == x[b, ch, i * p + r, j * p + c]
    assert torch.equal(model.unpatchify(patches, (16, 24)), x)
    square = torch.randn(1, chans, 32, 32)
    assert torch.equal(model.unpatchify(model.patchify(square)), square)
    with pytest.raises(ValueError, match="do not form a square"):
        model.unpatchify(patches)


def test_patch_incidence_means_ignore_nan():
    model = tiny(incidence_conditioning=True)
    inc = torch.full((1, 32, 32), 30.0)
    inc[0, :16, 16:] = 40.0
    inc[0, :8, 16:] = float("nan")  # half the patch unknown: the mean of the rest
    inc[0, 16:, 16:] = float("nan")  # whole patch unknown
    inc[0, 16:, :16] = torch.linspace(20, 50, 16).repeat(16, 1)
    angle = model.patch_incidence(inc, (2, 2))
    assert angle[0, 0] == 30.0 and angle[0, 1] == 40.0
    assert math.isclose(angle[0, 2].item(), 35.0, rel_tol=1e-6)
    assert torch.isnan(angle[0, 3])
    offset = model.incidence_embed(angle)
    assert torch.equal(offset[0, 3], torch.zeros(192))


def test_incidence_conditioning_changes_tokens_and_gets_gradients():
    model = tiny(incidence_conditioning=True)
    x = torch.randn(2, 2, 64, 64)
    near, far = torch.full((2, 64, 64), 20.0), torch.full((2, 64, 64), 45.0)
    with pytest.raises(ValueError, match="incidence-conditioned"):
        model(x)
    with torch.no_grad():  # zero-initialised output layer: starts as the unconditioned model
        assert torch.equal(model(x, incidence=near), model(x, incidence=far))
    out = model(x, incidence=near)
    out.pow(2).mean().backward()
    grad = model.incidence_embed.proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    torch.nn.init.normal_(model.incidence_embed.proj.weight, std=0.02)
    with torch.no_grad():
        a, b = model(x, incidence=near), model(x, incidence=far)
    assert (a - b).abs().max() > 1e-3
    assert torch.equal(model(x, incidence=near.unsqueeze(1)), a)
    plain = tiny()
    assert not any(k.startswith("incidence_embed") for k in plain.state_dict())


def test_sdpa_attention_matches_reference():
    torch.manual_seed(1)
    attn = Attention(dim=24, num_heads=3, qkv_bias=True)
    x = torch.randn(2, 5, 24)
    w, bias = attn.qkv.weight, attn.qkv.bias
    heads, hd = 3, 8
    outs = []
    for h in range(heads):
        sl = [slice(part * 24 + h * hd, part * 24 + (h + 1) * hd) for part in range(3)]
        q, k, v = (x @ w[s].T + bias[s] for s in sl)
        scores = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd), dim=-1)
        outs.append(scores @ v)
    expected = attn.proj(torch.cat(outs, dim=-1))
    assert torch.allclose(attn(x), expected, atol=1e-5)


def test_dense_features_intermediate_layers():
    model = tiny()
    x = torch.randn(1, 2, 32, 48)
    with torch.no_grad():
        maps = model.dense_features(x, layers=[0, -1])
        last = model.dense_features(x)
    assert [m.shape for m in maps] == [(1, 192, 2, 3)] * 2
    assert torch.allclose(maps[1], last)
    assert not torch.allclose(maps[0], last)
    with pytest.raises(ValueError, match="out of range"):
        model.dense_features(x, layers=[2])


def test_config_json_round_trip_and_presets():
    config = ViTConfig(in_chans=3, patch_size=8, img_size=96, incidence_conditioning=True)
    again = ViTConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    with pytest.raises(ValueError, match="unknown ViTConfig keys"):
        ViTConfig.from_dict({"embed": 3})
    with pytest.raises(ValueError, match="not a multiple"):
        ViTConfig(img_size=100)
    # timm's published parameter counts (3 channels, 1000-class head) for ViT-Ti/S/B-16.
    published = {"tiny": 5_717_416, "small": 22_050_664, "base": 86_567_656}
    for name, count in published.items():
        with torch.device("meta"):
            model = vit_encoder(name, in_chans=3)
        head = PRESETS[name]["embed_dim"] * 1000 + 1000
        assert sum(p.numel() for p in model.parameters()) + head == count


def test_drop_path_only_in_training():
    model = tiny(drop_path_rate=0.5)
    x = torch.randn(4, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        torch.manual_seed(0)
        a = model(x)
        torch.manual_seed(1)
        assert not torch.allclose(a, model(x))
