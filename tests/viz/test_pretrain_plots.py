"""Pretraining figures: panel counts, values in dB where the titles say dB, units in every title."""

from __future__ import annotations

import json

import holoviews as hv
import numpy as np
import pytest
import torch
import xarray as xr
from train_helpers import build_tiny_store, tiny_scene

from sarlab.chips import ChipStore, build_chip_store
from sarlab.models import vit_encoder
from sarlab.preprocess.normalize import BandStats
from sarlab.ssl import build_method
from sarlab.viz.pretrain import chip_gallery, loss_curves, method_panels, speckle_view_pairs

STATS = BandStats(
    bands=["HH", "HV"], units="dB", mean=[-15.0, -24.0], std=[4.0, 3.0], median=[-15.0, -24.0],
    p01=[-30.0, -35.0], p99=[0.0, -10.0], count=[1, 1],
)  # fmt: skip
SIZE, PATCH = 32, 8


def method(name: str, **kw):
    torch.manual_seed(0)
    encoder = vit_encoder(
        "tiny", in_chans=2, patch_size=PATCH, img_size=SIZE, embed_dim=32, depth=1, num_heads=2
    )
    return build_method(name, encoder, bands=["HH", "HV"], band_stats=STATS, **kw)


@pytest.fixture(scope="module")
def batch() -> dict:
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(3, 2, SIZE, SIZE, generator=gen)
    return {"image": image, "sample_seed": torch.arange(3, dtype=torch.int64)}


def titles(layout: hv.Layout) -> list[str]:
    return [panel.label for panel in layout]


def values(panel: hv.Image) -> np.ndarray:
    return panel.dimension_values(2, flat=False)[::-1]  # image() stores rows bottom-up


def test_loss_curves_from_records_file_or_result(tmp_path):
    history = [{"step": s, "loss": 1.0 / s, "lr": 1e-3 * s / 30} for s in (10, 20, 30)]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in history))

    class Result:  # what a TrainResult offers
        pass

    result = Result()
    result.history = history
    for source in (history, path, str(path), result):
        overlay = loss_curves(source)
        assert isinstance(overlay, hv.Overlay)
        curves = list(overlay)
        assert [c.vdims[0].name for c in curves] == ["loss", "lr"]
        assert list(curves[0].dimension_values("step")) == [10, 20, 30]
        assert np.allclose(curves[0].dimension_values("loss"), [0.1, 0.05, 1 / 30])
    hv.render(loss_curves(history), backend="bokeh")  # two y axes render
    with pytest.raises(ValueError, match="no metrics"):
        loss_curves([])


@pytest.mark.parametrize(
    ("name", "what"), [("mae", "(dB)"), ("gradient", "ROA (|ln ratio|)"), ("hog", "HOG (deg)")]
)
def test_masked_autoencoder_panels(batch, name, what):
    m = method(name)
    visuals = m.visualize(batch)
    layout = method_panels(visuals, m, max_items=2)
    assert isinstance(layout, hv.Layout) and len(layout) == 2 * 2 * 3  # items x bands x panels
    names = titles(layout)
    assert names[:3] == ["HH input, masked (dB)", f"HH target {what}", f"HH reconstr. {what}"]
    assert names[3:6] == ["HV input, masked (dB)", f"HV target {what}", f"HV reconstr. {what}"]
    # the input panel is the chip in dB with the hidden patches blank
    shown = values(next(iter(layout)))
    hidden = visuals["mask"][0, 0].numpy().astype(bool)
    assert np.isnan(shown[hidden]).all() and np.isfinite(shown[~hidden]).all()
    assert hidden.mean() == pytest.approx(round(16 * 0.75) / 16)
    expected = batch["image"][0, 0].numpy() * 4.0 - 15.0
    assert np.allclose(shown[~hidden], expected[~hidden], atol=1e-4)
    hv.render(layout, backend="bokeh")


def test_target_panels_show_the_target_in_its_units(batch):
    m = method("mae")
    layout = method_panels(m.visualize(batch), m, max_items=1)
    target = values(list(layout)[1])
    assert np.allclose(target, batch["image"][0, 0].numpy() * 4.0 - 15.0, atol=1e-4)
    h = method("hog")
    angles = np.unique(values(list(method_panels(h.visualize(batch), h, max_items=1))[1]))
    assert set(angles) <= {(k + 0.5) * 20.0 for k in range(9)}  # 9 bins of 20 degrees


def test_crosspol_panels(batch):
    m = method("crosspol")
    visuals = m.visualize(batch)
    layout = method_panels(visuals, m, max_items=3)
    assert len(layout) == 3 * 3
    assert titles(layout)[:3] == ["HH input, masked (dB)", "HV target (dB)", "HV prediction (dB)"]
    target = values(list(layout)[1])
    assert np.allclose(target, batch["image"][0, 1].numpy() * 3.0 - 24.0, atol=1e-4)


def test_speckle_view_pairs(batch):
    m = method("speckle_views")
    visuals = m.visualize(batch)
    both = speckle_view_pairs(visuals, m, max_items=2, bands=["HH", "HV"])
    assert len(both) == 2 * 2 * 4
    assert titles(both)[:4] == [
        "HH chip (dB)",
        "HH despeckled (dB)",
        "HH view 1 (dB)",
        "HH view 2 (dB)",
    ]
    assert len(method_panels(visuals, m, max_items=3)) == 3 * 4  # first band by default
    view1, view2 = values(list(both)[2]), values(list(both)[3])
    assert not np.allclose(view1, view2)  # the same chip, different speckle
    with pytest.raises(ValueError, match="VV"):
        speckle_view_pairs(visuals, m, bands=["VV"])


def test_chip_gallery(tmp_path):
    store = build_tiny_store(tmp_path / "plain.zarr")
    layout = chip_gallery(store, n=3)
    assert len(layout) == 3 * 2 and all(t.endswith("(dB)") for t in titles(layout))

    scene = tiny_scene("labelled", seed=3)
    classes = (np.arange(64)[None, :] // 16 * np.ones((64, 1))).astype(np.uint8)
    classes[:16] = 255  # the top row of chips lies outside the "chart"
    scene["ice"] = xr.DataArray(classes, dims=("y", "x"), attrs={"flag_values": [0, 1, 2, 3]})
    labelled = ChipStore(
        build_chip_store(
            [scene], tmp_path / "labelled.zarr", size=16, scheduler="sync", progress=False,
            min_valid=0.0,
        ).path
    )  # fmt: skip
    layout = chip_gallery(labelled, n=6)
    assert titles(layout)[2] == "ice (class)" and len(layout) == 6 * 3
    for panel in list(layout)[2::3]:  # labelled chips are shown first: 12 of 16 have labels
        assert np.isfinite(values(panel)).all()
    assert list(layout)[2].opts.get().kwargs["clim"] == (0.0, 3.0)
    with pytest.raises(ValueError, match="no chips"):
        chip_gallery(store, split="test")
