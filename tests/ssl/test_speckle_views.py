"""Speckle views: VICReg against a reference, SAR-physical views (ENL, geometry), BYOL's EMA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ssl_testing import IMG, band_stats, smooth_batch, tiny_encoder, train_losses

from sarlab.preprocess import lee
from sarlab.ssl import build_method, vicreg_loss
from sarlab.ssl.joint import ema_momentum
from sarlab.ssl.sar_augment import lee_filter

SMALL_HEAD = {"projector_hidden": 64, "projector_dim": 32, "projector_layers": 2}


def vicreg_reference(a: np.ndarray, b: np.ndarray) -> float:
    """VICReg written out term by term (Bardes et al. 2022, coefficients 25/25/1)."""
    n, d = a.shape
    invariance = sum((a[i, k] - b[i, k]) ** 2 for i in range(n) for k in range(d)) / (n * d)

    def variance(z):
        total = 0.0
        for k in range(d):
            m = sum(z[i, k] for i in range(n)) / n
            var = sum((z[i, k] - m) ** 2 for i in range(n)) / (n - 1)
            total += max(0.0, 1.0 - (var + 1e-4) ** 0.5)
        return total / d

    def covariance(z):
        m = [sum(z[i, k] for i in range(n)) / n for k in range(d)]
        total = 0.0
        for k in range(d):
            for j in range(d):
                if k != j:
                    c = sum((z[i, k] - m[k]) * (z[i, j] - m[j]) for i in range(n)) / (n - 1)
                    total += c * c
        return total / d

    var_term = (variance(a) + variance(b)) / 2
    return 25.0 * invariance + 25.0 * var_term + covariance(a) + covariance(b)


def test_vicreg_matches_reference():
    rng = np.random.default_rng(0)
    for scale in (0.3, 1.0, 3.0):  # hinge active, partly active, inactive
        a = rng.normal(size=(7, 5)) * scale * np.array([1.0, 0.2, 1.5, 4.0, 0.7])
        b = a + rng.normal(size=(7, 5)) * 0.5
        ours, parts = vicreg_loss(torch.tensor(a), torch.tensor(b))
        assert float(ours) == pytest.approx(vicreg_reference(a, b), rel=1e-5)
        assert set(parts) == {"invariance", "variance", "covariance"}


def _method(**kw):
    settings = {"band_stats": band_stats(), "pol_dropout": 0.0, **SMALL_HEAD, **kw}
    return build_method("speckle_views", tiny_encoder(), **settings)


def _from_linear(linear: torch.Tensor) -> torch.Tensor:
    return band_stats().normalize(10.0 * torch.log10(linear), band_axis=1)


def test_views_differ_but_share_geometry():
    batch = smooth_batch(b=6)
    views = _method().make_views(batch)
    assert torch.equal(views["reflectivity1"], views["reflectivity2"])
    assert torch.equal(views["incidence1"], views["incidence2"])
    assert (views["view1"] - views["view2"]).abs().mean() > 0.2  # independent speckle
    indep = _method(independent_geometry=True).make_views(batch)
    assert not torch.equal(indep["reflectivity1"], indep["reflectivity2"])
    assert not torch.equal(indep["incidence1"], indep["incidence2"])


def test_geometry_moves_every_band_and_the_incidence_angle_together():
    gen = torch.Generator().manual_seed(4)
    b = 8
    incidence = 30.0 + 15.0 * torch.rand(b, IMG, IMG, generator=gen)  # no symmetry to hide
    a_c, b_c = torch.tensor([0.01, 0.002]), torch.tensor([0.001, 0.0003])
    linear = a_c[None, :, None, None] + b_c[None, :, None, None] * incidence[:, None]
    batch = {"image": _from_linear(linear), "incidence": incidence, "sample_seed": torch.arange(b)}
    for kw in ({}, {"independent_geometry": True}):
        views = _method(despeckle="none", **kw).make_views(batch)
        for v in ("1", "2"):
            inc = views["incidence" + v]
            expected = a_c[None, :, None, None] + b_c[None, :, None, None] * inc[:, None]
            assert torch.allclose(views["reflectivity" + v], expected, rtol=1e-4)
            assert not torch.allclose(inc, incidence)  # something did move


def test_uncropped_geometry_is_an_exact_flip_or_rotation():
    gen = torch.Generator().manual_seed(5)
    linear = torch.rand(8, 2, IMG, IMG, generator=gen) + 0.01
    batch = {"image": _from_linear(linear), "sample_seed": torch.arange(8)}
    views = _method(despeckle="none", crop_scale=(1.0, 1.0)).make_views(batch)
    used = set()
    for i in range(8):
        out = views["reflectivity1"][i]
        matches = [
            (k, f)
            for k in range(4)
            for f in (False, True)
            if torch.allclose(
                out, torch.rot90(linear[i].flip(-1) if f else linear[i], k, (-2, -1)), rtol=1e-4
            )
        ]
        assert len(matches) == 1
        used.add(matches[0])
    assert len(used) > 2


@pytest.mark.parametrize("enl", [2.0, 10.0])
@pytest.mark.parametrize("seeded", [True, False])
def test_respeckled_intensity_has_the_configured_enl(enl, seeded):
    level_db = torch.tensor([-12.0, -19.0])
    image = band_stats().normalize(level_db[:, None, None].expand(2, 256, 256)[None], band_axis=1)
    batch = {"image": image}
    if seeded:
        batch["sample_seed"] = torch.tensor([42])
    torch.manual_seed(0)
    views = _method(enl=enl).make_views(batch)
    for v in ("1", "2"):
        intensity = views["intensity" + v][0].double()
        for c in range(2):
            mean, var = intensity[c].mean(), intensity[c].var()
            assert float(mean**2 / var) == pytest.approx(enl, rel=0.05)
            assert float(mean) == pytest.approx(10 ** (float(level_db[c]) / 10), rel=0.02)
    # the encoder sees exactly that intensity, in normalised dB
    back = band_stats().denormalize(views["view1"], band_axis=1)
    assert torch.allclose(10 ** (back / 10), views["intensity1"], rtol=1e-4)


def test_views_depend_on_sample_seeds_only():
    method = _method(pol_dropout=0.5)
    batch = smooth_batch(b=4)
    a, b = method.make_views(batch), method.make_views(batch)
    alone = method.make_views({k: v[1:2] for k, v in batch.items()})
    for key in ("view1", "view2", "incidence1"):
        assert torch.equal(a[key], b[key])
        assert torch.equal(a[key][1:2], alone[key])
    other = method.make_views({**batch, "sample_seed": batch["sample_seed"] + 1})
    assert not torch.equal(a["view1"], other["view1"])


def test_polarisation_dropout_zeroes_exactly_one_band():
    batch = smooth_batch(b=8)
    views = _method(pol_dropout=1.0).make_views(batch)
    for v in ("view1", "view2"):
        zero_bands = (views[v] == 0).flatten(2).all(-1)  # (B, C)
        assert (zero_bands.sum(1) == 1).all()
    assert zero_bands[:, 0].any() and zero_bands[:, 1].any()
    none = _method(pol_dropout=0.0).make_views(batch)
    assert not (none["view1"] == 0).flatten(2).all(-1).any()
    single = build_method(
        "speckle_views", tiny_encoder(1), band_stats=band_stats(("HH",)), pol_dropout=1.0
    )
    one = single.make_views(smooth_batch(b=4, chans=1))
    assert not (one["view1"] == 0).flatten(2).all(-1).any()  # the only band is never dropped


def test_lee_option_matches_sarlab_preprocess_away_from_the_border():
    rng = np.random.default_rng(3)
    img = rng.gamma(4.0, 0.25, size=(1, 1, 24, 24)) * np.where(np.arange(24) < 12, 1.0, 5.0)
    ours = lee_filter(torch.from_numpy(img), 5, 4.0)[0, 0].numpy()
    ref = lee(img[0, 0], looks=4.0, size=5)
    np.testing.assert_allclose(ours[2:-2, 2:-2], ref[2:-2, 2:-2], rtol=1e-8)
    views = _method(despeckle="lee", input_enl=4.0).make_views(smooth_batch(b=2))
    assert torch.isfinite(views["view1"]).all()


def test_refuses_without_band_stats_and_bad_settings():
    with pytest.raises(ValueError, match="needs band_stats"):
        build_method("speckle_views", tiny_encoder())
    with pytest.raises(ValueError, match="objective"):
        _method(objective="simclr")
    with pytest.raises(ValueError, match="crop_scale"):
        _method(crop_scale=(0.0, 1.0))


@pytest.mark.parametrize("chans", [1, 2, 3])
def test_forward_for_any_channel_count_with_incidence(chans):
    bands = ("HH", "HV", "VV")[:chans]
    enc = tiny_encoder(chans, incidence=True)
    method = build_method("speckle_views", enc, band_stats=band_stats(bands), **SMALL_HEAD)
    loss, logs = method(smooth_batch(b=4, chans=chans))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert {"invariance", "variance", "covariance", "rep_std"} <= set(logs)
    out = method.visualize(smooth_batch(b=4, chans=chans))
    assert out["view1"].shape == out["despeckled"].shape == (4, chans, IMG, IMG)
    assert out["incidence1"].shape == (4, IMG, IMG)


def test_vicreg_loss_decreases():
    losses = train_losses(_method(), smooth_batch(b=16))
    assert losses[-1] < 0.7 * losses[0], losses


def test_byol_loss_decreases_and_target_follows_the_ema():
    method = _method(objective="byol", byol_momentum=0.9)
    online = method.encoder.blocks[0].attn.qkv.weight
    target = method.target_encoder.blocks[0].attn.qkv.weight
    assert torch.equal(online, target) and not target.requires_grad
    with torch.no_grad():
        online.add_(1.0)
    before = target.detach().clone()
    method.on_step_end(2, 10)
    m = ema_momentum(2, 10, 0.9)
    assert 0.9 < m < 1.0 and method.momentum == m
    assert torch.allclose(target, m * before + (1 - m) * online)
    frozen = target.detach().clone()
    method.on_step_end(10, 10)  # momentum 1 at the end: the target stops moving
    assert torch.equal(target, frozen)
    losses = train_losses(_method(objective="byol"), smooth_batch(b=16))
    assert losses[-1] < 0.7 * losses[0], losses
