"""The glue the notebooks share: where a run writes, which chip store it trains on, and back.

Notebooks stay short by calling these instead of repeating the steps::

    store = prepare_chip_store("demo-arctic-sim", part="sea_ice", size=64)
    result = pretrain(store.path, "gradient", out_dir=run_dir() / "pretrain" / "gradient")
    publish_checkpoint(result.checkpoint, run_dir() / "checkpoint")
    method = load_method(run_dir() / "checkpoint")      # encoder + decoder, for visualize()

Chip stores are derived data: :func:`prepare_chip_store` keeps them in
``<data dir>/chips/``, named by a hash of everything that decides their content
(data files, part, size, stride, validity threshold, splits, labels), so the
notebooks of one pipeline, and later runs, reuse a store instead of chipping again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import default_collate

from sarlab.atomic import atomic_directory
from sarlab.chips import ChipDataset, ChipStore, build_chip_store
from sarlab.chips_format import FORMAT_VERSION
from sarlab.errors import InputError
from sarlab.io.manifest import data_dir, load_manifest
from sarlab.train_config import TrainResult
from sarlab.train_data import SAMPLE_SEED, mix_seed

__all__ = [
    "CHIPS_DIR",
    "DEFAULT_SPLITS",
    "LAYOUT_FILES",
    "bigearthnet_patches",
    "fixed_batch",
    "load_method",
    "method_for_store",
    "prepare_chip_store",
    "publish_checkpoint",
    "run_dir",
    "runs_table",
    "store_summary",
]

CHIPS_DIR = "chips"  # under the data dir: reusable chip stores
#: Scene splits by fraction of scenes for datasets that do not assign them (the demo does).
DEFAULT_SPLITS = {"train": 0.8, "val": 0.1, "test": 0.1}
#: Layout -> (file patterns searched recursively, label variables to keep).
LAYOUT_FILES: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    "ai4arctic": (("*.nc",), ("SIC", "SOD", "FLOE")),
    "sen1floods11": (("*_S1Hand.tif",), ("water",)),
    "geotiff": (("*.tif", "*.tiff"), None),
}
_RUN_DIR: Path | None = None


def run_dir() -> Path:
    """This run's artifact folder: ``$SARLAB_RUN_DIR`` under ``sarlab run``, else ./runs/<time>.

    Interactively the folder is made once per kernel, so every cell writes to the same one.
    """
    global _RUN_DIR
    env = os.environ.get("SARLAB_RUN_DIR")
    if env:
        path = Path(env)
    else:
        if _RUN_DIR is None:
            _RUN_DIR = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
        path = _RUN_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def bigearthnet_patches(
    path: str, scratch: str | os.PathLike[str], n_simulated: int = 96, seed: int = 0
) -> list[Path]:
    """BigEarthNet-S1 patch folders for the multi-label task, or ``[]`` when there are none.

    ``path``: a folder of patches; ``""``: ``<data dir>/bigearthnet-s1`` when it holds
    patches (``sarlab data fetch bigearthnet-s1``); ``"simulated"``: ``n_simulated``
    simulated patches written into ``scratch`` (the real layout, flood-simulator
    landscapes); ``"none"``: none.
    """
    from sarlab.finetune.multilabel import find_bigearthnet_patches

    if path == "none":
        return []
    if path == "simulated":
        from sarlab.simulate.bigearthnet import write_bigearthnet_patches

        return write_bigearthnet_patches(scratch, n_simulated, seed, progress=False)
    if not path:
        default = data_dir() / "bigearthnet-s1"
        if not default.is_dir() or next(default.rglob("*_labels_metadata.json"), None) is None:
            return []
        path = str(default)
    return find_bigearthnet_patches(path)


# ---- chip stores ---------------------------------------------------------------------------


def _demo_scenes(root: Path, part: str, max_scenes: int | None) -> tuple[list[Path], dict]:
    from sarlab.simulate.demo import demo_layout

    entries = demo_layout(root)[part]
    if max_scenes is not None:  # round robin over the splits, so each keeps a scene
        by_split: dict[str, list[dict]] = {}
        for entry in entries:
            by_split.setdefault(entry["split"], []).append(entry)
        order = sorted(by_split, key=lambda s: (s != "train", s))
        picked: list[dict] = []
        while len(picked) < max_scenes and any(by_split.values()):
            for split in order:
                if by_split[split] and len(picked) < max_scenes:
                    picked.append(by_split[split].pop(0))
        entries = picked
    return [root / e["file"] for e in entries], {e["scene_id"]: e["split"] for e in entries}


def _find_files(root: Path, layout: str, max_scenes: int | None) -> list[Path]:
    patterns = LAYOUT_FILES[layout][0]
    found = {
        p
        for pattern in patterns
        for p in root.rglob(pattern)
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }
    # AI4Arctic test scenes keep their charts in <scene>_reference.nc beside them
    files = sorted(p for p in found if not p.name.endswith("_reference.nc"))
    if not files:
        raise InputError(root, f"holds no {layout} scene files ({', '.join(patterns)})")
    return files[:max_scenes] if max_scenes is not None else files


def _resolve(manifest: str, part: str, data_path: str, max_scenes: int | None, progress: bool):
    """(scene files, splits, layout, label variables, name of the part)."""
    info = load_manifest(manifest)
    # the embedded default is generated here and names its scenes' splits in demo.json
    is_demo = (info.generator or "").startswith("sarlab.simulate.demo:")
    parts = info.raw.get("parts") or {}
    if parts and part not in parts:
        raise InputError(info.source, f"has parts {sorted(parts)}, not {part!r}")
    if data_path:
        root = Path(data_path).expanduser()
    elif is_demo:
        from sarlab.simulate.demo import ensure_demo_data

        root = ensure_demo_data(progress=progress)
    else:
        root = info.dataset_dir()
    if not root.is_dir():
        raise InputError(
            root,
            f"no {info.name} data here: run `sarlab data fetch {info.name}` (or put the files "
            "there and `sarlab data verify`), or pass data_path",
        )
    layout = parts[part]["layout"] if parts else info.layout
    if layout not in LAYOUT_FILES:
        raise InputError(
            info.source,
            f"layout {layout!r}: prepare_chip_store reads {sorted(LAYOUT_FILES)}; build the "
            "store with sarlab.chips.build_chip_store and the right reader instead",
        )
    part_name = part if parts else ""
    if is_demo:
        files, splits = _demo_scenes(root, part, max_scenes)
    else:
        folder = root / parts[part]["path"] if parts else root
        files, splits = _find_files(folder, layout, max_scenes), dict(DEFAULT_SPLITS)
    return files, splits, layout, LAYOUT_FILES[layout][1], part_name


def _fingerprint(files: list[Path]) -> list[list[Any]]:
    """Name, size and modification time of every scene file: a regenerated file changes it."""
    out = []
    for f in files:
        stat = f.stat()
        out.append([str(f.resolve()), stat.st_size, stat.st_mtime_ns])
    return out


def _matches(store: ChipStore, settings: Mapping[str, Any]) -> bool:
    a = store.attrs
    return (
        a.get("size") == settings["size"]
        and a.get("stride") == settings["stride"]
        and a.get("min_valid") == settings["min_valid"]
        and a.get("n_scenes") == len(settings["files"])
        and (settings["label_vars"] is None or a.get("label_vars") == settings["label_vars"])
    )


def prepare_chip_store(
    manifest: str = "demo-arctic-sim",
    part: str = "sea_ice",
    data_path: str = "",
    size: int = 64,
    stride: int | None = None,
    min_valid: float = 0.9,
    out: str | os.PathLike[str] | None = None,
    max_scenes: int | None = None,
    *,
    progress: bool = True,
) -> ChipStore:
    """The chip store of a dataset (built on first use, then reused), with labels and incidence.

    ``manifest`` names the dataset (``data_manifests/<name>.yaml``); its files are
    read from ``data_path`` if given, else ``<data dir>/<name>`` (the demo is
    generated there on first use). ``part`` picks a part of a multi-part dataset
    (the demo's ``sea_ice``: EW HH/HV with SIC/SOD/FLOE charts; ``flood``: IW VV/VH
    with ``water``) and is ignored for single-part ones. Splits are by scene: the
    demo's own, else :data:`DEFAULT_SPLITS` fractions of the scenes. ``max_scenes``
    keeps the first scenes (the demo: round robin over its splits), for quick runs.
    The store goes to ``out`` if given, else into ``<data dir>/chips/`` under a
    name hashing the settings; an existing store built with the same settings is
    reused, one built differently is rebuilt.
    """
    if max_scenes is not None and max_scenes < 1:
        raise ValueError(f"max_scenes must be >= 1 or None, got {max_scenes}")
    files, splits, layout, labels, part_name = _resolve(
        manifest, part, data_path, max_scenes, progress
    )
    settings = {
        "manifest": manifest, "part": part_name, "files": _fingerprint(files),
        "splits": splits, "size": int(size), "stride": int(stride or size),
        "min_valid": float(min_valid), "label_vars": None if labels is None else list(labels),
        "layout": layout, "chip_format": FORMAT_VERSION,
    }  # fmt: skip
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    if out is None:
        name = "-".join(s for s in (manifest, part_name, f"{size}px", key) if s)
        out = data_dir() / CHIPS_DIR / f"{name}.zarr"
    out = Path(out)
    overwrite = False
    if out.exists():
        try:
            existing = ChipStore(out)
        except InputError:
            existing = None  # not a chip store: build_chip_store refuses to overwrite it
        if existing is not None and _matches(existing, settings):
            return existing
        overwrite = existing is not None
    return build_chip_store(
        files, out, size=int(size), stride=stride, min_valid=float(min_valid),
        label_vars=labels, include_incidence=True, splits=splits, reader=layout,
        overwrite=overwrite, progress=progress,
    )  # fmt: skip


def store_summary(store: ChipStore) -> pd.DataFrame:
    """Scenes and chips per split (splits are by scene: no scene is counted twice)."""
    table = store.table
    out = table.groupby("split").agg(scenes=("scene_id", "nunique"), chips=("chip_id", "count"))
    return out.reindex(
        [s for s in ("train", "val", "test") if s in out.index]
        + sorted(s for s in out.index if s not in ("train", "val", "test"))
    )


# ---- batches, methods and checkpoints ------------------------------------------------------


def fixed_batch(
    store: ChipStore | str | os.PathLike[str],
    n: int = 8,
    split: str | None = "val",
    seed: int = 0,
    **dataset_kwargs: Any,
) -> dict[str, Tensor]:
    """``n`` chips of ``split`` picked by ``seed``, collated, with per-sample ``sample_seed``.

    The same store and seed give the same chips, masks and views, so figures of
    methods trained for different times show the same examples.
    """
    path = store.path if isinstance(store, ChipStore) else Path(store)
    dataset = ChipDataset(path, split=split, **dataset_kwargs)
    if len(dataset) == 0:
        raise InputError(path, f"has no chips in split {split!r}")
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(dataset), size=min(n, len(dataset)), replace=False))
    batch = default_collate([dataset[int(i)] for i in picks])
    seeds = mix_seed(seed, batch["index"].numpy())
    batch[SAMPLE_SEED] = torch.as_tensor(seeds, dtype=torch.int64)
    return batch


def method_for_store(
    store: ChipStore | str | os.PathLike[str],
    method: str,
    preset: str = "tiny",
    patch_size: int = 16,
    *,
    seed: int = 0,
    incidence_conditioning: bool = False,
    encoder_kwargs: Mapping[str, Any] | None = None,
    **method_kwargs: Any,
):
    """An untrained SSL method for a store's bands, statistics and chip size, as pretrain builds it.

    For figures that do not depend on training (speckle views, masks, targets) and
    as the "before" of a before/after comparison. Seeded without touching the global RNG.
    """
    from sarlab.models import vit_encoder
    from sarlab.ssl import build_method

    path = store.path if isinstance(store, ChipStore) else Path(store)
    dataset = ChipDataset(path, split="train", with_labels=False)
    size = int(ChipStore(path).attrs["size"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = vit_encoder(
            preset, in_chans=len(dataset.bands), patch_size=patch_size, img_size=size,
            incidence_conditioning=incidence_conditioning, **dict(encoder_kwargs or {}),
        )  # fmt: skip
        config = {"bands": dataset.bands, "band_stats": dataset.stats, **method_kwargs}
        return build_method(method, encoder, **config).eval()


def load_method(checkpoint: str | os.PathLike[str], device: str | torch.device = "cpu"):
    """The whole SSL method of a pretraining checkpoint (encoder plus decoder, projector ...).

    :func:`sarlab.models.load_encoder` gives the encoder alone; figures of what a
    method predicts need the rest, saved by the trainer as extra tensors.
    """
    from sarlab.models import load_encoder, load_extra_tensors
    from sarlab.ssl import build_method

    encoder = load_encoder(checkpoint)
    ssl = encoder.model_card["ssl"]
    method = build_method(ssl["method"], encoder, **ssl["config"])
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state.update(load_extra_tensors(checkpoint))
    missing, unexpected = method.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(
            checkpoint, f"does not match method {ssl['method']!r}: missing {missing}, "
            f"unexpected {unexpected}",
        )  # fmt: skip
    return method.to(device).eval()


def publish_checkpoint(checkpoint: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Copy a checkpoint folder to ``dest`` (replaced atomically): a stable path for later steps.

    Under torchrun only rank 0 copies (it alone wrote the checkpoint); other ranks get
    ``dest`` back unchanged.
    """
    from sarlab.run_ranks import is_follower

    src, dest = Path(checkpoint), Path(dest)
    if is_follower():
        return dest
    if not (src / "model_card.json").is_file():
        raise InputError(src, "is not a checkpoint folder (no model_card.json)")
    with atomic_directory(dest, overwrite=True) as tmp:
        for item in src.iterdir():
            shutil.copy2(item, tmp / item.name)
    return dest


def runs_table(results: Mapping[str, TrainResult]) -> pd.DataFrame:
    """One row per run: how long it trained (steps, seconds, images/s) and its losses."""
    rows = []
    for name, r in results.items():
        speeds = [h["images_per_s"] for h in r.history if "images_per_s" in h]
        rows.append(
            {
                "method": name,
                "steps": r.step,
                "planned steps": r.total_steps,
                "stopped by": r.stop_reason,
                "seconds": round(r.wall_time_s, 1),
                "images/s": round(float(np.mean(speeds)), 1) if speeds else None,
                "first loss": r.history[0]["loss"] if r.history else None,
                "final loss": r.final_loss,
            }
        )
    return pd.DataFrame(rows).set_index("method")
