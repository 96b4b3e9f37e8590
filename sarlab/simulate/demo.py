"""The embedded default dataset ``demo-arctic-sim``: simulated scenes in the real layouts.

``sarlab data fetch demo-arctic-sim`` (or :func:`ensure_demo_data`, which notebooks call)
runs :func:`generate_demo` into a temporary folder that becomes the dataset folder only
when complete::

    sea_ice/<scene_id>.nc                      EW HH/HV, AI4Arctic ready-to-train NetCDF
    flood/S1Hand/<Event>_<n>_S1Hand.tif        IW VV/VH, Sen1Floods11 chips
    flood/LabelHand/<Event>_<n>_LabelHand.tif
    demo.json                                  every scene: file, split, seed, repeat_of

Splits are by scene: a repeat pass (the same ice a few days later, for temporal SSL
views) stays in the split of its first pass, so no place appears in two splits.
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


def _sea_ice_jobs(spec: DemoSpec, seed: int) -> list[dict[str, Any]]:
    splits = [name for name, count in spec.sea_ice_splits for _ in range(count)]
    seeds = _child_seeds(seed, len(splits) + spec.repeat_passes, stream=1)
    jobs = [{"split": s, "seed": seeds[i]} for i, s in enumerate(splits)]
    train = [i for i, s in enumerate(splits) if s == "train"]
    for k, first in enumerate(train[: spec.repeat_passes]):
        jobs.append({"split": "train", "seed": seeds[len(splits) + k], "repeat_of": first})
    return jobs


def _write_sea_ice(root: Path, spec: DemoSpec, seed: int, bar: tqdm) -> list[dict[str, Any]]:
    scenes: list[dict[str, Any]] = []
    first_passes: dict[int, Any] = {}
    for i, job in enumerate(_sea_ice_jobs(spec, seed)):
        if "repeat_of" in job:
            ds = repeat_pass(first_passes[job["repeat_of"]], seed=job["seed"])
        else:
            ds = sea_ice_scene(job["seed"], size=spec.sea_ice_size)
            first_passes[i] = ds
        scene_id = str(ds.attrs["scene_id"])
        path = write_ai4arctic(ds, root / "sea_ice" / f"{scene_id}.nc")
        entry = {"scene_id": scene_id, "file": path.relative_to(root).as_posix(), **job}
        if "repeat_of" in job:
            entry["repeat_of"] = scenes[job["repeat_of"]]["scene_id"]
        scenes.append(entry)
        bar.update()
    return scenes


def _write_flood(root: Path, spec: DemoSpec, seed: int, bar: tqdm) -> list[dict[str, Any]]:
    splits = [name for name, count in spec.flood_splits for _ in range(count)]
    chips = []
    for split, chip_seed in zip(splits, _child_seeds(seed, len(splits), stream=2), strict=True):
        ds = flood_chip(chip_seed, size=spec.flood_size)
        scene_id = str(ds.attrs["scene_id"])
        s1, label = write_sen1floods11(
            ds,
            root / "flood" / "S1Hand" / f"{scene_id}_S1Hand.tif",
            root / "flood" / "LabelHand" / f"{scene_id}_LabelHand.tif",
        )
        chips.append(
            {
                "scene_id": scene_id,
                "file": s1.relative_to(root).as_posix(),
                "label": label.relative_to(root).as_posix() if label else None,
                "split": split,
                "seed": chip_seed,
            }
        )
        bar.update()
    return chips


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
