"""HOG in torch against skimage.feature.hog, soft binning by hand, and the HOG-MAE method."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.feature import hog as sk_hog
from ssl_testing import IMG, band_stats, smooth_batch, tiny_encoder, train_losses

from sarlab.models import vit_encoder
from sarlab.ssl import build_method, hog_cells


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:40, 0:48]
    structured = np.where(np.hypot(yy - 20, xx - 22) < 11, 3.0, 0.0) + 0.2 * rng.normal(
        size=yy.shape
    )
    return [rng.normal(size=(32, 32)), rng.gamma(1.0, size=(40, 48)), structured]


@pytest.mark.parametrize("cell", [4, 8])
@pytest.mark.parametrize("orientations", [9, 6])
def test_matches_skimage_cells_per_block_1(cell, orientations):
    for img in _images():
        ref = sk_hog(
            img, orientations=orientations, pixels_per_cell=(cell, cell), cells_per_block=(1, 1),
            block_norm="L2", feature_vector=False,
        )[:, :, 0, 0, :]  # fmt: skip
        ours = hog_cells(
            torch.from_numpy(img)[None, None], cell_size=cell, orientations=orientations,
            soft=False, block=1,
        )[0, 0].permute(1, 2, 0)  # fmt: skip
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_matches_skimage_non_overlapping_blocks():
    for img in _images():
        ref = sk_hog(
            img, orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2),
            block_norm="L2", feature_vector=False,
        )[::2, ::2]  # (bh, bw, 2, 2, 9)  # fmt: skip
        ours = hog_cells(torch.from_numpy(img)[None, None], cell_size=4, soft=False, block=2)[0, 0]
        o, gh, gw = ours.shape
        ours = ours.reshape(o, gh // 2, 2, gw // 2, 2).permute(1, 3, 2, 4, 0)
        np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_each_channel_gets_its_own_histograms():
    imgs = [torch.from_numpy(a[:32, :32]) for a in _images()]
    stacked = hog_cells(torch.stack(imgs)[None], cell_size=8)
    for c, img in enumerate(imgs):
        assert torch.allclose(stacked[0, c], hog_cells(img[None, None], cell_size=8)[0, 0])


def _ramp(angle_deg: float, size: int = 18) -> torch.Tensor:
    """A linear ramp whose gradient (g_row, g_col) points at ``angle_deg``."""
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
        indexing="ij",
    )  # fmt: skip
    t = math.radians(angle_deg)
    return (math.cos(t) * xx + math.sin(t) * yy)[None, None]


@pytest.mark.parametrize(
    ("angle", "expected"),
    [
        (50.0, {2: 1.0}),  # on bin 2's centre (bins 20 degrees wide, centres 10, 30, 50 ...)
        (40.0, {1: 0.5, 2: 0.5}),  # half-way between centres 30 and 50
        (5.0, {8: 0.25, 0: 0.75}),  # wraps around 180 degrees to the last bin (centre 170)
        (176.0, {8: 0.7, 0: 0.3}),
    ],
)
def test_soft_binning_splits_votes_between_the_nearest_centres(angle, expected):
    # The centre 6 px cell of an 18 px image lies away from the border (where one of the
    # two gradients is zero); there every pixel votes |gradient| = 2 at ``angle``.
    cells = hog_cells(_ramp(angle), cell_size=6, soft=True, block=0)[0, 0, :, 1, 1]
    interior = 36 * 2.0
    want = torch.zeros(9, dtype=torch.float64)
    for k, w in expected.items():
        want[k] = w * interior
    assert torch.allclose(cells, want, atol=1e-9)
    hard = hog_cells(_ramp(angle), cell_size=6, soft=False, block=0)[0, 0, :, 1, 1]
    if angle % 20:  # (on a bin edge rounding decides the side)
        assert hard[int(angle // 20)] == pytest.approx(interior)
    assert cells.sum() == pytest.approx(hard.sum())


def test_hog_target_layout_and_patch_normalisation():
    enc = vit_encoder("tiny", in_chans=2, patch_size=16, img_size=IMG, depth=1)
    method = build_method("hog", enc, hog_norm="patch")
    assert method.config_dict()["cell_size"] == 8
    batch = smooth_batch(b=2)
    target = method.target_map(batch["image"])  # (B, C*9, 4, 4) cells; 2x2 cells per patch
    assert target.shape == (2, 18, 4, 4)
    per_patch = target.reshape(2, 2, 9, 2, 2, 2, 2)  # (B, C, O, gh, q, gw, q)
    energy = per_patch.pow(2).sum(dim=(2, 4, 6))
    assert torch.allclose(energy, torch.ones_like(energy), atol=1e-4)
    out = method.visualize(batch)
    assert out["prediction"].shape == out["target"].shape == (2, 18, 4, 4)
    with pytest.raises(ValueError, match="6 px HOG cells"):
        build_method("hog", enc, cell_size=6)


@pytest.mark.parametrize("chans", [1, 2, 3])
def test_hog_method_shapes_and_mask(chans):
    method = build_method("hog", tiny_encoder(chans), orientations=6)
    loss, logs = method(smooth_batch(b=2, chans=chans))
    assert torch.isfinite(loss) and logs["mask_ratio"] == 0.75
    assert method.decoder.pred.out_features == chans * 6  # one 8 px cell per 8 px patch


def test_hog_loss_decreases_and_mae_target_option_is_the_same_method():
    losses = train_losses(build_method("hog", tiny_encoder()), smooth_batch())
    assert losses[-1] < 0.7 * losses[0], losses
    via_mae = build_method("mae", tiny_encoder(), target="hog")
    config = build_method("hog", tiny_encoder()).config_dict()
    assert via_mae.config_dict() == config
    assert build_method("hog", tiny_encoder(), band_stats=band_stats()).band_stats is not None
