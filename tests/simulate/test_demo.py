"""The embedded default dataset: layout, splits by scene, real readers, chip store, determinism."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from sarlab.chips import ChipStore, build_chip_store
from sarlab.errors import InputError
from sarlab.io import open_ai4arctic, open_sen1floods11
from sarlab.simulate.demo import (
    DemoSpec,
    demo_layout,
    demo_scenes,
    demo_splits,
    generate_demo,
    stratified_splits,
)

TINY = DemoSpec(
    sea_ice_size=96,
    sea_ice_splits=(("train", 1), ("test", 1)),
    repeat_passes=1,
    flood_size=64,
    flood_splits=(("train", 1), ("val", 1)),
)


def _digests(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_scenes(tmp_path):
    files = generate_demo(tmp_path / "a", seed=5, spec=TINY, progress=False)
    generate_demo(tmp_path / "b", seed=5, spec=TINY, progress=False)
    generate_demo(tmp_path / "c", seed=6, spec=TINY, progress=False)
    assert len(files) == 1 + 3 + 2 * 2  # layout, 2 scenes + 1 repeat, 2 flood chips + labels
    a, b, c = (_digests(tmp_path / n) for n in "abc")
    assert a == b
    assert set(a.values()).isdisjoint(c.values())


def test_default_layout_splits_by_scene(demo_data):
    layout = demo_layout(demo_data)
    assert layout["name"] == "demo-arctic-sim" and layout["seed"] == 0
    for part in ("sea_ice", "flood"):
        ids = [e["scene_id"] for e in layout[part]]
        assert len(ids) == len(set(ids)), f"{part}: a scene id appears twice"
        assert set(demo_splits(demo_data, part).values()) == {"train", "val", "test"}
    repeats = [e for e in layout["sea_ice"] if "repeat_of" in e]
    first = {e["scene_id"]: e for e in layout["sea_ice"]}
    assert repeats and all(first[e["repeat_of"]]["split"] == e["split"] == "train" for e in repeats)
    train = demo_scenes(demo_data, "sea_ice", "train")
    assert len(train) == len(demo_scenes(demo_data, "sea_ice", "train", repeats=False)) + len(
        repeats
    )


def test_stratified_splits_spread_held_out_scenes_over_the_range():
    scores = [0.1, 0.9, 0.5, 0.3, 0.7, 0.2, 0.8, 0.0, 0.6]
    splits = stratified_splits(scores, (("train", 6), ("val", 1), ("test", 2)))
    assert splits.count("train") == 6 and splits.count("val") == 1 and splits.count("test") == 2
    held = sorted(s for s, name in zip(scores, splits, strict=True) if name != "train")
    assert held == [0.2, 0.5, 0.7]  # neither extreme, spread over the ranks
    assert [splits[scores.index(v)] for v in held] == ["test", "val", "test"]
    with pytest.raises(ValueError, match="3 scenes for 2 split places"):
        stratified_splits([0.0, 0.5, 1.0], (("train", 1), ("test", 1)))


def test_default_held_out_scenes_are_not_the_extremes(demo_data):
    for part, key in (("sea_ice", "open_water_fraction"), ("flood", "water_fraction")):
        entries = [e for e in demo_layout(demo_data)[part] if "repeat_of" not in e]
        values = [e[key] for e in entries]
        held = [e[key] for e in entries if e["split"] != "train"]
        assert min(values) < min(held) and max(held) < max(values), (part, values, held)


def test_default_files_open_with_the_real_readers(demo_data):
    scene = open_ai4arctic(demo_scenes(demo_data, "sea_ice", "test")[0], chunks=None)
    assert scene["backscatter"].attrs["units"] == "dB"
    assert list(scene["backscatter"]["band"].values) == ["HH", "HV"]
    assert {"SIC", "SOD", "FLOE", "incidence_angle", "distance_map"} <= set(scene.variables)
    land_pixels = 0
    for path in demo_scenes(demo_data, "sea_ice", repeats=False):
        charts = open_ai4arctic(path, chunks=None)
        land = charts["distance_map"].values == 0
        assert all((charts[c].values[land] == 255).all() for c in ("SIC", "SOD", "FLOE"))
        land_pixels += int(land.sum())
    assert land_pixels > 0
    incidence = scene["incidence_angle"].values
    assert 17 < np.nanmin(incidence) < 22 and 44 < np.nanmax(incidence) < 49
    chip = open_sen1floods11(demo_scenes(demo_data, "flood", "val")[0])
    assert list(chip["backscatter"]["band"].values) == ["VV", "VH"]
    assert set(np.unique(chip["water"].values)) <= {0, 1, 255}


def test_chip_store_builds_from_the_demo(demo_data, tmp_path):
    scenes = demo_scenes(demo_data, "sea_ice", "train", repeats=False)[:1]
    scenes += demo_scenes(demo_data, "sea_ice", "test")[:1]
    store = build_chip_store(
        scenes,
        tmp_path / "ice.zarr",
        size=64,
        min_valid=0.9,
        splits=demo_splits(demo_data, "sea_ice"),
        progress=False,
    )
    store = ChipStore(store.path)
    table = store.table
    assert set(table["split"]) == {"train", "test"} and len(table) > 50
    assert store.bands == ["HH", "HV"] and store.attrs["units"] == "dB"


def test_layout_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match=r"demo\.json"):
        demo_layout(tmp_path)
    (tmp_path / "demo.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        demo_layout(tmp_path)
    (tmp_path / "demo.json").write_text(json.dumps({"sea_ice": [], "flood": []}))
    with pytest.raises(ValueError, match="part must be one of"):
        demo_scenes(tmp_path, "glaciers")
