"""``sarlab embed``: chip stores and scene files to GeoParquet and dense grids; bad files named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from test_embed import SMALL, _utm_scene

from sarlab.chips import build_chip_store
from sarlab.cli import main
from sarlab.embed import (
    embed_chips,
    embed_scene,
    embedding_matrix,
    model_hash,
    random_like,
    read_embeddings,
)
from sarlab.models import load_encoder, save_checkpoint, vit_encoder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A two-scene UTM chip store and a checkpoint (with a model card) for its bands."""
    root = tmp_path_factory.mktemp("embed_cli")
    files = [_utm_scene(root, 48, 48, seed=s, name=f"scene{s}") for s in range(2)]
    store = build_chip_store(files, root / "chips.zarr", size=16, progress=False,
                             splits={"train": 0.5, "val": 0.5})  # fmt: skip
    torch.manual_seed(3)
    encoder = vit_encoder("tiny", in_chans=2, patch_size=8, img_size=16, **SMALL)
    card = {
        "bands": ["HH", "HV"], "units": "dB", "quantity": "sigma0",
        "normalization": store.stats.to_dict(), "ssl": {"method": "mae", "config": {}},
        "data": {"manifest": "test", "checksum": "ab" * 32},
    }  # fmt: skip
    checkpoint = save_checkpoint(root / "checkpoint", encoder, card)
    return root, store, checkpoint, files


def _run(*argv) -> int:
    return main(["embed", *map(str, argv), "--no-progress"])


def test_chip_store_to_geoparquet_and_dense_grid(setup, tmp_path, capsys):
    _, store, checkpoint, _ = setup
    out, dense = tmp_path / "chips.parquet", tmp_path / "chips_dense.zarr"
    assert _run(checkpoint, store.path, "-o", out, "--dense", dense, "--manifest", "demo") == 0
    assert f"{len(store)} embeddings" in capsys.readouterr().out
    gdf = read_embeddings(out)
    encoder = load_encoder(checkpoint)
    direct = embed_chips(store, encoder, progress=False)
    np.testing.assert_array_equal(embedding_matrix(gdf), embedding_matrix(direct))
    assert (gdf["model_card_hash"] == model_hash(encoder)).all()
    assert (gdf["data_manifest"] == "demo").all() and gdf.crs.to_epsg() == 4326
    grid = xr.open_zarr(dense, consolidated=False)
    assert grid["patch_embedding"].shape == (len(store), encoder.embed_dim, 2, 2)
    assert list(grid["chip_id"].values) == list(gdf["chip_id"])
    # one split only, cls pooling
    assert _run(checkpoint, store.path, "-o", out, "--split", "val", "--pool", "cls") == 0
    val = read_embeddings(out)
    assert set(val["split"]) == {"val"} and len(val) < len(gdf)
    assert val.attrs["sarlab_embeddings"]["pool"] == "cls"


def test_scene_file_by_sliding_window(setup, tmp_path):
    _, store, checkpoint, files = setup
    out = tmp_path / "scene.parquet"
    assert _run(checkpoint, files[0], "-o", out, "--stride", 8, "--min-valid", 0.9) == 0
    gdf = read_embeddings(out)
    direct = embed_scene(files[0], load_encoder(checkpoint), stride=8, min_valid=0.9,
                         progress=False)  # fmt: skip
    assert list(gdf["chip_id"]) == list(direct["chip_id"]) and len(gdf) > 10
    np.testing.assert_array_equal(embedding_matrix(gdf), embedding_matrix(direct))
    # the random-init baseline: the seeded twin of the checkpoint's encoder
    assert _run(checkpoint, files[0], "-o", out, "--random-init", "--seed", 4) == 0
    twin = random_like(load_encoder(checkpoint), seed=4)
    expected = embed_scene(files[0], twin, stats=store.stats, progress=False)
    np.testing.assert_allclose(embedding_matrix(read_embeddings(out)), embedding_matrix(expected))
    trained = embed_scene(files[0], load_encoder(checkpoint), progress=False)
    assert not np.allclose(embedding_matrix(expected), embedding_matrix(trained), atol=1e-3)


def test_bad_inputs_are_named(setup, tmp_path, capsys):
    root, store, checkpoint, files = setup
    not_a_store = tmp_path / "empty"
    not_a_store.mkdir()
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 not really a tiff")
    odd = tmp_path / "notes.txt"
    odd.write_text("not a scene")
    linear = _utm_scene(tmp_path, 32, 32, units="linear")
    out = tmp_path / "x.parquet"
    cases = [
        ((tmp_path / "nowhere", store.path, "-o", out), "nowhere", "does not exist"),
        ((root, store.path, "-o", out), str(root), "no model_card.json"),
        ((checkpoint, tmp_path / "missing.zarr", "-o", out), "missing.zarr", "does not exist"),
        ((checkpoint, not_a_store, "-o", out), "empty", "not a chip store"),
        ((checkpoint, broken, "-o", out), "broken.tif", "cannot be read"),
        ((checkpoint, odd, "-o", out), "notes.txt", "cannot tell which reader"),
        ((checkpoint, linear, "-o", out), linear.name, "linear"),
        ((checkpoint, store.path, "-o", tmp_path / "x.csv"), "x.csv", ".parquet"),
        ((checkpoint, store.path, "-o", out, "--dense", tmp_path / "d.h5"), "d.h5", ".zarr"),
        ((checkpoint, files[0], "-o", out, "--split", "val"), files[0].name, "chip stores only"),
    ]
    for argv, name, problem in cases:
        assert _run(*argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("sarlab embed: error:") and name in err and problem in err, err
        assert err.count("\n") == 1  # one line, no traceback
    assert not out.exists()
