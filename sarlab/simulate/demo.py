"""The embedded default dataset ``demo-arctic-sim``: simulated scenes in the real layouts.

``sarlab data fetch demo-arctic-sim`` (or :func:`ensure_demo_data`, which notebooks call)
runs :func:`generate_demo` into a temporary folder that becomes the dataset folder only
when complete::

    sea_ice/<scene_id>.nc                      EW HH/HV, AI4Arctic ready-to-train NetCDF
    flood/S1Hand/<Event>_<n>_S1Hand.tif        IW VV/VH, Sen1Floods11 chips
    flood/LabelHand/<Event>_<n>_LabelHand.tif
    demo.json                                  every scene: file, split, seed, repeat_of

Splits are by scene: a repeat pass (the same ice a few days later, for temporal SSL
views) stays in the split of its first pass, so no place appears in two splits. Held-out
scenes are stratified (:func:`stratified_splits`) by their open-water (sea ice) or water
(flood) fraction, so validation and test span the same range of conditions as training.
Everything is drawn from ``seed``: the same seed and sarlab version give the same bytes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from sarlab.atomic import atomic_write_text
from sarlab.errors import InputError
from sarlab.io.ai4arctic import write_ai4arctic
from sarlab.io.sen1floods11 import write_sen1floods11
from sarlab.simulate.flood import flood_chip
from sarlab.simulate.sea_ice import repeat_pass, sea_ice_scene

__all__ = [
    "DEFAULT_SPEC",
    "DEMO_NAME",
    "LAYOUT_FILE",
    "DemoSpec",
    "demo_layout",
    "demo_scenes",
    "demo_splits",
    "ensure_demo_data",
    "generate_demo",
    "stratified_splits",
]

DEMO_NAME = "demo-arctic-sim"
LAYOUT_FILE = "demo.json"
PARTS = ("sea_ice", "flood")


@dataclass(frozen=True)
class DemoSpec:
    """How much to simulate; the default generates in well under a minute on 2 cores."""

    sea_ice_size: int = 768
    sea_ice_splits: tuple[tuple[str, int], ...] = (("train", 6), ("val", 1), ("test", 2))
    repeat_passes: int = 2  # train scenes that also get a second pass
    flood_size: int = 512
    flood_splits: tuple[tuple[str, int], ...] = (("train", 12), ("val", 3), ("test", 5))


DEFAULT_SPEC = DemoSpec()


def _child_seeds(seed: int, count: int, stream: int) -> list[int]:
    """Independent per-scene seeds, stable when another part's count changes."""
    sequence = np.random.SeedSequence([int(seed), stream])
    return [int(s.generate_state(1)[0]) for s in sequence.spawn(count)]


def _open_water_fraction(ds: Any) -> float:
    """Share of charted sea pixels that are open water (SOD 0), land and unlabelled left out."""
    sod = np.asarray(ds["SOD"].values)
    charted = sod != 255
    return float((sod[charted] == 0).mean()) if charted.any() else 0.0


def stratified_splits(scores: list[float], counts: tuple[tuple[str, int], ...]) -> list[str]:
    """One split per scene so that every held-out split spans the range of ``scores``.

    Scenes are ranked by score (here the open-water fraction) and the held-out scenes
    are taken at evenly spaced ranks, alternating between the held-out splits: a
    validation scene that is all water and test scenes with none would make early
    stopping pick weights for the wrong class mix.
    """
    names = [name for name, count in counts for _ in range(count)]
    if len(names) != len(scores):
        raise ValueError(f"{len(scores)} scenes for {len(names)} split places")
    # each held-out split's members spread evenly over the ranks: member j of c at (j+0.5)/c
    held = sorted(
        ((j + 0.5) / count, name) for name, count in counts if name != "train" for j in range(count)
    )
    held = [name for _, name in held]
    ranks = np.argsort(np.asarray(scores), kind="stable")
    places = np.round(np.linspace(0, len(scores) - 1, len(held) + 2)[1:-1]).astype(int)
    splits = ["train"] * len(scores)
    for place, name in zip(places, held, strict=True):
        splits[int(ranks[place])] = name
    return splits


def _write_sea_ice(root: Path, spec: DemoSpec, seed: int, bar: tqdm) -> list[dict[str, Any]]:
    count = sum(n for _, n in spec.sea_ice_splits)
    seeds = _child_seeds(seed, count + spec.repeat_passes, stream=1)
    first_passes = [sea_ice_scene(s, size=spec.sea_ice_size) for s in seeds[:count]]
    splits = stratified_splits(
        [_open_water_fraction(ds) for ds in first_passes], spec.sea_ice_splits
    )
    jobs = [
        (ds, {"split": split, "seed": s})
        for ds, split, s in zip(first_passes, splits, seeds, strict=False)
    ]
    train = [i for i, split in enumerate(splits) if split == "train"]
    for k, first in enumerate(train[: spec.repeat_passes]):
        again = repeat_pass(first_passes[first], seed=seeds[count + k])
        jobs.append((again, {"split": "train", "seed": seeds[count + k], "repeat_of": first}))
    scenes: list[dict[str, Any]] = []
    for ds, job in jobs:
        scene_id = str(ds.attrs["scene_id"])
        path = write_ai4arctic(ds, root / "sea_ice" / f"{scene_id}.nc")
        entry = {"scene_id": scene_id, "file": path.relative_to(root).as_posix(), **job}
        entry["open_water_fraction"] = round(_open_water_fraction(ds), 4)
        if "repeat_of" in job:
            entry["repeat_of"] = scenes[job["repeat_of"]]["scene_id"]
        scenes.append(entry)
        bar.update()
    return scenes


def _water_fraction(ds: Any) -> float:
    water = np.asarray(ds["water"].values)
    valid = water != 255
    return float((water[valid] == 1).mean()) if valid.any() else 0.0


def _write_flood(root: Path, spec: DemoSpec, seed: int, bar: tqdm) -> list[dict[str, Any]]:
    count = sum(n for _, n in spec.flood_splits)
    seeds = _child_seeds(seed, count, stream=2)
    chips = [flood_chip(chip_seed, size=spec.flood_size) for chip_seed in seeds]
    splits = stratified_splits([_water_fraction(ds) for ds in chips], spec.flood_splits)
    entries = []
    for ds, split, chip_seed in zip(chips, splits, seeds, strict=True):
        scene_id = str(ds.attrs["scene_id"])
        s1, label = write_sen1floods11(
            ds,
            root / "flood" / "S1Hand" / f"{scene_id}_S1Hand.tif",
            root / "flood" / "LabelHand" / f"{scene_id}_LabelHand.tif",
        )
        entries.append(
            {
                "scene_id": scene_id,
                "file": s1.relative_to(root).as_posix(),
                "label": label.relative_to(root).as_posix() if label else None,
                "split": split,
                "seed": chip_seed,
                "water_fraction": round(_water_fraction(ds), 4),
            }
        )
        bar.update()
    return entries


def generate_demo(
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    spec: DemoSpec = DEFAULT_SPEC,
    progress: bool = True,
) -> list[Path]:
    """Write the demo dataset into ``out_dir``; return every file written (the manifest hook)."""
    root = Path(out_dir)
    total = sum(n for _, n in spec.sea_ice_splits) + spec.repeat_passes
    total += sum(n for _, n in spec.flood_splits)
    with tqdm(total=total, desc="simulating demo scenes", disable=not progress) as bar:
        layout = {
            "name": DEMO_NAME,
            "seed": int(seed),
            "spec": asdict(spec),
            "sea_ice": _write_sea_ice(root, spec, seed, bar),
            "flood": _write_flood(root, spec, seed, bar),
        }
    atomic_write_text(root / LAYOUT_FILE, json.dumps(layout, indent=1) + "\n")
    files = [root / LAYOUT_FILE]
    for part in PARTS:
        for entry in layout[part]:
            files.append(root / entry["file"])
            if entry.get("label"):
                files.append(root / entry["label"])
    return files


def ensure_demo_data(data_dir: str | os.PathLike[str] | None = None, progress: bool = True) -> Path:
    """The demo dataset's folder, generated on first use (checked against SHA256SUMS after)."""
    from sarlab.io.manifest import fetch, load_manifest

    fetch(DEMO_NAME, data_dir, progress=progress)
    return load_manifest(DEMO_NAME).dataset_dir(data_dir)


def demo_layout(root: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``demo.json`` written by :func:`generate_demo`."""
    path = Path(root) / LAYOUT_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(
            path, "missing: not a demo-arctic-sim folder (run ensure_demo_data)"
        ) from None
    except json.JSONDecodeError as error:
        raise InputError(path, f"is not valid JSON ({error})") from None


def demo_scenes(
    root: str | os.PathLike[str],
    part: str,
    split: str | None = None,
    *,
    repeats: bool = True,
) -> list[Path]:
    """The files of one part (``"sea_ice"`` or ``"flood"``), optionally of one split only."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, not {part!r}")

    def keep(entry: dict[str, Any]) -> bool:
        wanted_split = split is None or entry["split"] == split
        return wanted_split and (repeats or "repeat_of" not in entry)

    return [Path(root) / e["file"] for e in demo_layout(root)[part] if keep(e)]


def demo_splits(root: str | os.PathLike[str], part: str) -> dict[str, str]:
    """scene id -> split, for :func:`sarlab.chips.build_chip_store`'s ``splits``."""
    return {e["scene_id"]: e["split"] for e in demo_layout(root)[part]}
