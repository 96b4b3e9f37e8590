"""Ratio-of-averages gradients against a brute-force loop, and the gradient-MAE method."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ssl_testing import IMG, band_stats, smooth_batch, tiny_encoder, train_losses

from sarlab.ssl import build_method, multiscale_roa, roa_gradient


def _roa_loop(img: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The definition, pixel by pixel, on a reflect-padded copy (numpy's "reflect")."""
    r = size // 2
    p = np.pad(img, r, mode="reflect")
    h, w = img.shape
    gx = np.zeros((h, w))
    gy = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            pi, pj = i + r, j + r
            rows = slice(pi - r, pi + r + 1)
            cols = slice(pj - r, pj + r + 1)
            left = p[rows, pj - r : pj].mean()
            right = p[rows, pj + 1 : pj + r + 1].mean()
            up = p[pi - r : pi, cols].mean()
            down = p[pi + 1 : pi + r + 1, cols].mean()
            gx[i, j] = math.log(right / left)
            gy[i, j] = math.log(down / up)
    return gx, gy


@pytest.mark.parametrize("size", [3, 5, 7])
def test_roa_matches_brute_force_loop(size):
    rng = np.random.default_rng(size)
    img = rng.gamma(1.0, 1.0, size=(2, 3, 9, 11)) + 1e-3
    gx, gy = roa_gradient(torch.from_numpy(img), size)
    for b in range(2):
        for c in range(3):
            ref_x, ref_y = _roa_loop(img[b, c], size)
            np.testing.assert_allclose(gx[b, c].numpy(), ref_x, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(gy[b, c].numpy(), ref_y, rtol=1e-10, atol=1e-12)


def test_multiscale_magnitude_layout_edge_value_and_brightness_invariance():
    img = torch.ones(1, 2, 12, 12, dtype=torch.float64)
    img[..., 6:] = 4.0  # vertical step edge between columns 5 and 6
    img[:, 1] *= 100.0  # band 1 is 20 dB brighter
    mag = multiscale_roa(img, (3, 5, 7))
    assert mag.shape == (1, 6, 12, 12)  # channel c * 3 + s
    # Column 5 at scale 3: right half is column 6 (4), left half column 4 (1): log 4.
    assert mag[0, 0, :, 5].tolist() == pytest.approx([math.log(4.0)] * 12)
    assert torch.allclose(mag[0, :3], mag[0, 3:])  # a ratio detector ignores brightness
    assert (mag[0, :, :, 0] == 0).all()  # the mirror image makes the border flat
    for s, size in enumerate((3, 5, 7)):  # the edge is seen within r columns of it
        r = size // 2
        seen = (mag[0, s, 0] > 0).nonzero().flatten().tolist()
        assert seen == list(range(6 - r, 6 + r))
    with pytest.raises(ValueError, match="odd integer >= 3"):
        roa_gradient(img, 4)


def test_target_is_roa_of_linear_intensity():
    stats = band_stats()
    method = build_method("gradient", tiny_encoder(), band_stats=stats, scales=[3, 5])
    batch = smooth_batch(b=2)
    db = (
        batch["image"] * torch.tensor([5.0, 5.0])[:, None, None]
        + torch.tensor(stats.mean)[:, None, None]
    )
    expected = multiscale_roa(10.0 ** (db / 10.0), (3, 5))
    assert torch.allclose(method.target_map(batch["image"]), expected, rtol=1e-4, atol=1e-5)
    assert method.config_dict()["scales"] == [3, 5]
    assert method.decoder.pred.out_features == 8 * 8 * 2 * 2


def test_gradient_targets_refuse_to_run_without_band_stats():
    with pytest.raises(ValueError, match="needs band_stats"):
        build_method("gradient", tiny_encoder())
    with pytest.raises(ValueError, match="needs band_stats"):
        build_method("mae", tiny_encoder(), target="gradient")


@pytest.mark.parametrize("bands", [("VV",), ("HH", "HV"), ("HH", "HV", "VV")])
def test_any_channel_count_and_incidence_conditioning(bands):
    enc = tiny_encoder(len(bands), incidence=True)
    method = build_method(
        "gradient", enc, band_stats=band_stats(bands), incidence_conditioning=True
    )
    batch = smooth_batch(b=2, chans=len(bands))
    loss, logs = method(batch)
    assert torch.isfinite(loss) and logs["mask_ratio"] == 0.75
    out = method.visualize(batch)
    assert out["target"].shape == (2, 3 * len(bands), IMG, IMG)
    assert out["prediction"].shape == out["target"].shape


def test_gradient_loss_decreases():
    method = build_method("gradient", tiny_encoder(), band_stats=band_stats())
    losses = train_losses(method, smooth_batch())
    assert losses[-1] < 0.7 * losses[0], losses
