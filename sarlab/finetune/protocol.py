"""The label-efficiency protocol: label fractions x seeds x models on one chip store.

Every run samples its labelled chips from the train split by seed
(:func:`sarlab.finetune.train.sample_label_fraction`), early-stops on val and is
scored once on test; the SSL encoder, its random-init twin, a small U-Net and a
classical baseline see the same chips. Results are rewritten atomically after
every run (``runs.json``, ``runs.parquet``, ``summary.json``), so an interrupted
grid keeps what it measured.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sarlab.atomic import atomic_file, atomic_write_json
from sarlab.chips_read import ChipStore
from sarlab.finetune.baselines import otsu_water_baseline, random_forest_baseline
from sarlab.finetune.knn import knn_baseline
from sarlab.finetune.train import finetune

__all__ = ["DEFAULT_FRACTIONS", "DEFAULT_SEEDS", "label_efficiency", "summarize"]

DEFAULT_FRACTIONS = (0.01, 0.05, 0.10, 1.0)
DEFAULT_SEEDS = (0, 1, 2)


def summarize(runs: pd.DataFrame, prefix: str = "test_") -> pd.DataFrame:
    """Mean, std (ddof=1) and count of every ``test_*`` (or ``prefix``) metric per model and
    label fraction; ``prefix="val_"`` summarises the validation scores settings are chosen on."""
    metrics = [c for c in runs.columns if c.startswith(prefix)]
    grouped = runs.groupby(["kind", "label_fraction"])[metrics]
    out = grouped.agg(["mean", "std", "count"])
    out.columns = [f"{m}_{stat}" for m, stat in out.columns]
    return out.reset_index()


def _save(rows: list[dict[str, Any]], out: Path, settings: dict[str, Any]) -> pd.DataFrame:
    runs = pd.DataFrame(rows)
    atomic_write_json(out / "runs.json", {"settings": settings, "runs": rows})
    with atomic_file(out / "runs.parquet") as tmp:
        runs.to_parquet(tmp, index=False)
    summary = summarize(runs)
    atomic_write_json(out / "summary.json", summary.replace({np.nan: None}).to_dict("records"))
    return runs


def _baseline_row(kind: str, fraction: float, seed: int, scores: dict[str, float]) -> dict:
    row: dict[str, Any] = {"kind": kind, "label_fraction": float(fraction), "seed": int(seed)}
    row.update({f"test_{k}": float(v) for k, v in scores.items() if k != "threshold_db"})
    return row


def label_efficiency(
    store_path: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    kinds: Sequence[str] = ("ssl", "random", "unet"),
    tasks: Sequence[str] | None = None,
    baseline: bool = True,
    knn: bool = False,
    progress: bool = True,
    **finetune_kwargs: Any,
) -> pd.DataFrame:
    """Run the grid and return one row per run (also written to ``out_dir``).

    ``kinds`` are :func:`~sarlab.finetune.train.finetune` kinds (``ssl`` needs
    ``checkpoint``; ``random`` is built with the checkpoint's architecture when one
    is given). ``baseline`` adds Otsu (water; it uses no labels, so one score is
    repeated per fraction and seed) or a texture random forest (sea ice tasks). ``knn``
    adds the kNN probe on frozen features (:func:`~sarlab.finetune.knn.knn_baseline`) of
    the SSL encoder and its random twin (kinds ``ssl_knn``, ``random_knn``).
    ``finetune_kwargs`` go to every run (``max_steps``, ``lr``, ``regime`` ...).
    """
    store = ChipStore(store_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if ("ssl" in kinds or knn) and checkpoint is None:
        raise ValueError("kind 'ssl' and the kNN probe need a checkpoint")
    settings = {
        "store": str(store.path), "checkpoint": None if checkpoint is None else str(checkpoint),
        "fractions": [float(f) for f in fractions], "seeds": [int(s) for s in seeds],
        "kinds": list(kinds), "tasks": None if tasks is None else list(tasks), "knn": knn,
        "finetune": {k: v for k, v in finetune_kwargs.items() if isinstance(v, (int, float, str))},
    }  # fmt: skip
    label_vars = store.attrs["label_vars"]
    chosen = list(tasks) if tasks is not None else list(label_vars)
    ice = [t for t in chosen if t in ("SIC", "SOD", "FLOE")]
    rows: list[dict[str, Any]] = []
    grid = [(f, s, k) for f in fractions for s in seeds for k in kinds]
    otsu, held_out = None, {}  # held_out: kNN features of the test chips, per encoder
    for fraction, seed, kind in tqdm(grid, desc="label efficiency", disable=not progress):
        result = finetune(
            store.path, kind, checkpoint, tasks=tasks, label_fraction=fraction, seed=seed,
            progress=False, **finetune_kwargs,
        )  # fmt: skip
        rows.append(result.row())
        if baseline and kind == kinds[-1]:
            if "water" in chosen:
                otsu = otsu or otsu_water_baseline(store.path)
                rows.append(_baseline_row("otsu", fraction, seed, otsu))
            if ice:
                rf = random_forest_baseline(store.path, ice, label_fraction=fraction, seed=seed)
                rows.append(_baseline_row("random_forest", fraction, seed, rf))
        if knn and kind == kinds[-1]:
            for twin in ("ssl", "random"):
                scores = knn_baseline(store.path, checkpoint, twin, chosen, fraction, seed,
                                      cache=held_out)  # fmt: skip
                rows.append(_baseline_row(f"{twin}_knn", fraction, seed, scores))
        runs = _save(rows, out, settings)
    return runs
