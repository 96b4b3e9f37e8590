"""Cross-pol prediction: band handling, what the encoder sees, the loss by hand, learning."""

from __future__ import annotations

import pytest
import torch
from ssl_testing import IMG, band_stats, smooth_batch, tiny_encoder, train_losses

from sarlab.ssl import build_method


def _pair_batch(b: int = 8) -> dict:
    """VV and a VH that follows it (as vegetation or ice types make them co-vary)."""
    batch = smooth_batch(b=b)
    batch["image"][:, 1] = 0.8 * batch["image"][:, 0] + 0.1
    return batch


def test_refuses_single_band_missing_order_and_unpaired_bands():
    with pytest.raises(ValueError, match="co-pol and a cross-pol band"):
        build_method("crosspol", tiny_encoder(1), bands=["VV"])
    with pytest.raises(ValueError, match="needs the band order"):
        build_method("crosspol", tiny_encoder(2))
    with pytest.raises(ValueError, match="no co-/cross-pol pair"):
        build_method("crosspol", tiny_encoder(2), bands=["VV", "HH"])
    with pytest.raises(ValueError, match="partner of VV is VH"):
        build_method("crosspol", tiny_encoder(2), bands=["VV", "VH"], cross_pol="HV")
    with pytest.raises(ValueError, match="takes 3 channels"):
        build_method("crosspol", tiny_encoder(3), bands=["VV", "VH"])
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        build_method("crosspol", tiny_encoder(1), bands=["VV", "VH"])(smooth_batch(chans=1))


def test_band_order_picks_the_pair():
    method = build_method("crosspol", tiny_encoder(2), band_stats=band_stats(("VH", "VV")))
    assert (method.co_index, method.cross_index) == (1, 0)
    assert method.config_dict()["co_pol"] == "VV" and method.config_dict()["cross_pol"] == "VH"
    quad = build_method("crosspol", tiny_encoder(1), bands=["VV", "VH", "HH", "HV"], co_pol="HH")
    assert (quad.co_index, quad.cross_index) == (2, 3)


def test_encoder_sees_only_the_co_pol_band():
    batch = smooth_batch(b=2)
    x = batch["image"]
    full = build_method("crosspol", tiny_encoder(2), bands=["VV", "VH"])
    inp = full.encoder_input(x)
    assert torch.equal(inp[:, 0], x[:, 0]) and (inp[:, 1] == 0).all()
    single = build_method("crosspol", tiny_encoder(1), bands=["VV", "VH"])
    assert torch.equal(single.encoder_input(x), x[:, :1])
    # the cross-pol band cannot leak: changing it leaves the prediction unchanged
    for method in (full.eval(), single.eval()):
        a = method.visualize(batch)["prediction"]
        b = method.visualize({**batch, "image": torch.stack([x[:, 0], -x[:, 1]], 1)})
        assert torch.equal(a, b["prediction"])


@pytest.mark.parametrize("loss_on", ["all", "masked"])
def test_loss_by_hand_and_exact_mask_ratio(loss_on):
    method = build_method("crosspol", tiny_encoder(2), bands=["HH", "HV"], loss_on=loss_on)
    method.eval()
    batch = smooth_batch(b=3)
    loss, logs = method(batch)
    assert logs["mask_ratio"] == 0.5
    out = method.visualize(batch)
    assert torch.equal(out["target"], batch["image"][:, 1:2])
    assert out["prediction"].shape == out["mask"].shape == (3, 1, IMG, IMG)
    assert int(out["mask"].sum()) == 3 * 8 * 64  # 8 of 16 patches hidden per sample
    err = (out["prediction"] - out["target"]).pow(2)
    expected = err.mean() if loss_on == "all" else err[out["mask"].bool()].mean()
    assert torch.allclose(loss, expected, rtol=1e-5)
    assert (out["co_pol"][out["mask"].bool()] == 0).all()


def test_loss_decreases_with_incidence_conditioning():
    enc = tiny_encoder(2, incidence=True)
    method = build_method("crosspol", enc, bands=["VV", "VH"], incidence_conditioning=True)
    losses = train_losses(method, _pair_batch())
    assert losses[-1] < 0.7 * losses[0], losses
