"""Whole-scene inference: exact blending, entropy, GeoTIFF with the scene's CRS/transform."""

from __future__ import annotations

import numpy as np
import pytest
import rioxarray
import torch
from torch import nn

from sarlab.errors import InputError, UnitsError
from sarlab.finetune.inference import (
    blend_weights,
    predict_array,
    predict_scene,
    tile_starts,
    write_prediction,
)
from sarlab.io.geotiff import open_geotiff, write_geotiff
from sarlab.preprocess.normalize import compute_band_stats


class PixelModel(nn.Module):
    """A per-pixel classifier: tiling and blending must reproduce whole-image output exactly."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 3, 1)

    def forward(self, x, incidence=None):
        return {"water": self.conv(x)}


def test_tile_starts_and_weights():
    assert tile_starts(100, 32, 16) == [0, 16, 32, 48, 64, 68]
    assert tile_starts(20, 32, 16) == [0]
    w = blend_weights(8)
    assert w.shape == (8, 8) and w.min() > 0 and np.allclose(w, w.T)
    assert w[3, 3] == w.max()


def test_blending_reproduces_a_pixelwise_model():
    model = PixelModel()
    image = np.random.default_rng(0).normal(size=(2, 45, 70)).astype(np.float32)
    probs = predict_array(model, image, tile=16, overlap=0.5, batch_size=5)["water"]
    with torch.no_grad():
        full = model(torch.from_numpy(image)[None])["water"].softmax(1)[0].numpy()
    assert probs.shape == (3, 45, 70)
    np.testing.assert_allclose(probs, full, atol=1e-5)
    small = predict_array(model, image[:, :10, :12], tile=16)["water"]  # padded, cropped
    np.testing.assert_allclose(small, full[:, :10, :12], atol=1e-5)


def test_scene_geotiff_keeps_crs_and_transform(tmp_path, make_water_scene):
    scene = make_water_scene("geo", seed=7, size=48)
    path = write_geotiff(scene, tmp_path / "scene.tif")
    read = open_geotiff(path)
    stats = compute_band_stats(read["backscatter"].values, ["VV", "VH"], units="dB", progress=False)
    ds = predict_scene(PixelModel(), read, stats, tile=16, labels=None)
    ds["water_label"] = (("y", "x"), scene["water"].values)
    assert ds["water"].dtype == np.uint8 and set(np.unique(ds["water"])) <= {0, 1, 2}
    ent = ds["water_entropy"].values
    assert np.all(ent >= 0) and np.all(ent <= np.log(3) + 1e-6)
    out = write_prediction(ds, tmp_path / "pred.tif")
    back = rioxarray.open_rasterio(out)
    assert back.rio.crs == read.rio.crs
    assert back.rio.transform() == read.rio.transform()
    assert list(back.attrs["long_name"]) == ["water", "water_entropy", "water_label"]
    np.testing.assert_array_equal(back.values[0], ds["water"].values)
    np.testing.assert_allclose(back.values[1], ent, rtol=1e-6)
    with pytest.raises(UnitsError, match="linear"):
        predict_scene(
            PixelModel(),
            read.assign(backscatter=read.backscatter.assign_attrs(units="linear")),
            stats,
            16,
        )


def test_scene_without_crs_goes_to_netcdf(tmp_path, make_water_scene):
    ds = predict_scene(
        PixelModel(),
        make_water_scene("radar", 3, 32).drop_vars("spatial_ref"),
        _stats(make_water_scene),
        16,
    )
    ds = ds.assign_coords(latitude=(("y", "x"), np.full((32, 32), 75.0)))
    with pytest.raises(InputError, match="no CRS"):
        write_prediction(ds, tmp_path / "pred.tif")
    out = write_prediction(ds, tmp_path / "pred.nc")
    import xarray as xr

    with xr.open_dataset(out, engine="h5netcdf") as back:
        assert "latitude" in back.coords and back["water"].shape == (32, 32)


def _stats(make):
    s = make("s", 0, 32)["backscatter"].values
    return compute_band_stats(s, ["VV", "VH"], units="dB", progress=False)
