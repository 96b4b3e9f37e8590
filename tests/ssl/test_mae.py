"""MAE on normalised dB: shapes, exact mask ratio, masked-only loss, seeding, conditioning."""

from __future__ import annotations

import json

import pytest
import torch
from ssl_testing import IMG, PATCH, band_stats, smooth_batch, tiny_encoder, train_losses

from sarlab.ssl import MAE, METHODS, build_method
from sarlab.ssl.base import patchify_map, unpatchify_map

N = (IMG // PATCH) ** 2


@pytest.mark.parametrize("chans", [1, 2, 3])
def test_shapes_and_exact_mask_ratio(chans):
    method = build_method("mae", tiny_encoder(chans))
    batch = smooth_batch(b=3, chans=chans)
    loss, logs = method(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert logs["mask_ratio"] == 12 / 16  # 16 patches, round(16 * 0.25) = 4 kept
    out = method.visualize(batch)
    for key in ("image", "masked_input", "target", "prediction", "reconstruction"):
        assert out[key].shape == (3, chans, IMG, IMG), key
    mask = out["mask"]
    assert mask.shape == (3, 1, IMG, IMG)
    per_patch = patchify_map(mask, (4, 4))  # (B, 16, 64): constant inside a patch
    assert torch.equal(per_patch.amin(-1), per_patch.amax(-1))
    assert (per_patch[..., 0].sum(1) == 12).all()
    visible = mask == 0
    assert torch.equal(
        out["masked_input"][visible.expand_as(out["image"])],
        batch["image"][visible.expand_as(out["image"])],
    )
    assert (out["masked_input"][(~visible).expand_as(out["image"])] == 0).all()
    recon, pred, target = out["reconstruction"], out["prediction"], out["target"]
    assert torch.equal(torch.where(visible, target, pred), recon)
    assert torch.equal(target, batch["image"])


@pytest.mark.parametrize(("ratio", "masked"), [(0.75, 12), (0.6, 10), (0.5, 8), (0.9, 14)])
def test_mask_ratio_counts(ratio, masked):
    method = MAE(tiny_encoder(), mask_ratio=ratio)
    _, logs = method(smooth_batch(b=2))
    assert logs["mask_ratio"] == masked / N


def test_loss_is_mse_over_masked_patches_only():
    method = build_method("mae", tiny_encoder()).eval()
    batch = smooth_batch(b=4)
    loss, _ = method(batch)
    out = method.visualize(batch)  # same sample_seed -> same masks and prediction
    hidden = out["mask"].expand_as(out["image"]).bool()
    expected = (out["prediction"] - out["target"])[hidden].pow(2).mean()
    assert torch.allclose(loss, expected, rtol=1e-5)
    visible_err = (out["prediction"] - out["target"])[~hidden].pow(2).mean()
    assert not torch.isclose(loss, visible_err, rtol=1e-3)


def test_masks_come_from_sample_seeds_and_not_the_batch():
    method = build_method("mae", tiny_encoder()).eval()
    batch = smooth_batch(b=4)
    full = method.visualize(batch)["mask"]
    alone = method.visualize({k: v[2:3] for k, v in batch.items()})["mask"]
    assert torch.equal(full[2:3], alone)
    assert not torch.equal(full[0], full[1])
    unseeded = {k: v for k, v in batch.items() if k != "sample_seed"}
    torch.manual_seed(3)
    a = method.visualize(unseeded)["mask"]
    torch.manual_seed(3)
    assert torch.equal(a, method.visualize(unseeded)["mask"])


def test_norm_pix_loss_standardises_each_target_patch():
    method = build_method("mae", tiny_encoder(), norm_pix_loss=True)
    batch = smooth_batch(b=2)
    r = method._run(batch)
    target = (r["target"] - r["mean"]) / r["scale"]
    assert torch.allclose(target.mean(-1), torch.zeros(2, N), atol=1e-5)
    assert torch.allclose(target.var(-1), torch.ones(2, N), atol=1e-3)
    out = method.visualize(batch)  # prediction mapped back to target units
    hidden = out["mask"].expand_as(out["image"]).bool()
    assert torch.equal(out["reconstruction"][~hidden], batch["image"][~hidden])


def test_patchify_map_matches_the_encoder_layout_and_inverts():
    enc = tiny_encoder(3)
    x = torch.randn(2, 3, IMG, IMG)
    assert torch.equal(patchify_map(x, (4, 4)), enc.patchify(x))
    cells = torch.randn(2, 5, 8, 8)  # q = 2 map pixels per patch side
    assert torch.equal(unpatchify_map(patchify_map(cells, (4, 4)), (4, 4), 5), cells)
    with pytest.raises(ValueError, match="does not tile"):
        patchify_map(torch.randn(1, 1, 8, 12), (4, 4))


def test_loss_decreases_on_a_fixed_batch():
    losses = train_losses(build_method("mae", tiny_encoder()), smooth_batch())
    assert losses[-1] < 0.7 * losses[0], losses


def test_incidence_conditioning_reaches_the_encoder():
    enc = tiny_encoder(incidence=True)
    torch.nn.init.normal_(enc.incidence_embed.proj.weight, std=0.5)  # zero at init
    method = build_method("mae", enc, incidence_conditioning=True).eval()
    batch = smooth_batch(b=2)
    loss_a, _ = method(batch)
    loss_b, _ = method({**batch, "incidence": batch["incidence"] + 10.0})
    assert not torch.isclose(loss_a, loss_b)
    with pytest.raises(KeyError, match="incidence"):
        method({k: v for k, v in batch.items() if k != "incidence"})
    with pytest.raises(ValueError, match="built with incidence_conditioning=False"):
        build_method("mae", tiny_encoder(), incidence_conditioning=True)
    assert build_method("mae", enc).incidence_conditioning  # follows the encoder


def test_bf16_autocast_keeps_targets_in_float32():
    method = build_method("hog", tiny_encoder())
    batch = smooth_batch(b=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = method(batch)
        target = method.target_map(batch["image"])
    assert target.dtype == torch.float32 and torch.isfinite(loss)


def _build_all(enc_chans: int = 2):
    stats = band_stats()
    extra = {"gradient": {"band_stats": stats}, "speckle_views": {"band_stats": stats}}
    extra["crosspol"] = {"bands": ["VV", "VH"]}
    return {
        name: build_method(name, tiny_encoder(enc_chans), **extra.get(name, {})) for name in METHODS
    }


def test_config_dict_is_json_and_rebuilds_every_method():
    for name, method in _build_all().items():
        config = method.config_dict()
        assert json.loads(json.dumps(config, allow_nan=False)) == config
        again = build_method(name, tiny_encoder(), **config)
        assert again.config_dict() == config, name
        assert type(again) is type(method) and again.name == name


def test_registry_rejects_unknown_methods_settings_and_mismatched_bands():
    with pytest.raises(ValueError, match="unknown SSL method 'simclr'"):
        build_method("simclr", tiny_encoder())
    with pytest.raises(TypeError, match="unknown settings \\['mask_ration'\\]"):
        build_method("speckle_views", tiny_encoder(), band_stats=band_stats(), mask_ration=0.5)
    with pytest.raises(TypeError, match="target 'pixels'"):
        build_method("mae", tiny_encoder(), orientations=9)
    with pytest.raises(ValueError, match="predicts 'hog', not 'pixels'"):
        build_method("hog", tiny_encoder(), target="pixels")
    with pytest.raises(ValueError, match="3 bands"):
        build_method("mae", tiny_encoder(2), bands=["HH", "HV", "VV"])
    with pytest.raises(ValueError, match="no statistics for bands"):
        build_method("mae", tiny_encoder(2), bands=["HH", "HV"], band_stats=band_stats())
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        build_method("mae", tiny_encoder(2))(smooth_batch(chans=3))
    with pytest.raises(ValueError, match="mask_ratio"):
        build_method("mae", tiny_encoder(), mask_ratio=0.0)


def test_band_stats_follow_the_band_order():
    stats = band_stats(("VV", "VH"))
    method = build_method(
        "gradient", tiny_encoder(), bands=["VH", "VV"], band_stats=stats.to_dict()
    )
    assert method.band_stats.bands == ["VH", "VV"]
    assert method.band_stats.mean == [stats.mean[1], stats.mean[0]]
