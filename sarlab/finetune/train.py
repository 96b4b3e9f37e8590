"""A compact supervised fine-tuning loop on a chip store, deterministic by seed.

Labelled chips are sampled from the TRAIN split only (:func:`sample_label_fraction`;
splits are by scene in every sarlab store, so val/test scenes never leak into
training). The loop trains for at most ``max_steps`` with AdamW (layer-wise LR
decay for ViTs), evaluates the validation split every ``eval_every`` steps, keeps
the best weights by the validation score (AutoICE combined score for sea ice,
water IoU for water) and stops after ``patience`` evaluations without
improvement; the test split is scored once, with the best weights.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from sarlab.chips_read import ChipDataset, ChipStore
from sarlab.conventions import IGNORE_INDEX
from sarlab.errors import InputError
from sarlab.finetune.metrics import autoice_scores, binary_iou_f1
from sarlab.finetune.model import build_model, param_groups, tasks_for_store

__all__ = [
    "FinetuneResult",
    "evaluate",
    "finetune",
    "sample_label_fraction",
    "score_predictions",
]

AUTOICE_CHARTS = ("SIC", "SOD", "FLOE")


def sample_label_fraction(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of ``max(1, round(n * fraction))`` of ``n`` chips, picked by ``seed``.

    The pick is a prefix of one seeded permutation, so for a seed the 1 % chips are
    inside the 5 % chips, which are inside the 10 % chips: fractions differ only in
    how many labels they see.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    if n < 1:
        raise ValueError("no training chips to sample from")
    k = max(1, round(n * fraction))
    order = np.random.default_rng([int(seed), 0x5A12]).permutation(n)
    return np.sort(order[:k])


@dataclass
class FinetuneResult:
    """What a run measured; ``model`` holds the best weights (not serialised by :meth:`row`)."""

    kind: str
    label_fraction: float
    seed: int
    n_train_chips: int
    best_step: int
    steps: int
    stop_reason: str
    val_score: float
    test: dict[str, float]
    seconds: float
    val: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    model: nn.Module | None = None

    def row(self) -> dict[str, Any]:
        """One flat JSON-safe record (metrics prefixed ``test_``, best-step ones ``val_``)."""
        skip = ("model", "history", "test", "val")
        out = {k: v for k, v in asdict(self).items() if k not in skip}
        out.update({f"test_{k}": v for k, v in self.test.items()})
        out.update({f"val_{k}": v for k, v in self.val.items()})
        return out


def score_predictions(true: Mapping[str, np.ndarray], pred: Mapping[str, np.ndarray]) -> dict:
    """Task metrics: AutoICE percentages for SIC/SOD/FLOE, IoU/F1 (fractions) for water."""
    out: dict[str, float] = {}
    charts = [t for t in AUTOICE_CHARTS if t in true]
    if charts:
        out.update(autoice_scores({c: true[c] for c in charts}, {c: pred[c] for c in charts}))
    if "water" in true:
        s = binary_iou_f1(true["water"], pred["water"])
        out.update(water_iou=s["iou"], water_f1=s["f1"])
    return out


def _selection_score(scores: Mapping[str, float]) -> float:
    if "combined" in scores:
        return float(scores["combined"])
    return float(scores.get("water_iou", float("nan")))


def _inputs(batch: Mapping[str, Any], device: torch.device) -> tuple[Tensor, Tensor | None]:
    inc = batch.get("incidence")
    return batch["image"].to(device), None if inc is None else inc.to(device)


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DataLoader, tasks: Sequence[str], device: torch.device | str = "cpu"
) -> dict[str, float]:
    """Argmax predictions over a loader, scored by :func:`score_predictions`."""
    device = torch.device(device)
    model.eval()
    true: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    pred: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    for batch in loader:
        out = model(*_inputs(batch, device))
        for k, t in enumerate(tasks):
            true[t].append(batch["labels"][:, k].numpy().ravel())
            pred[t].append(out[t].argmax(1).cpu().numpy().ravel())
    return score_predictions(
        {t: np.concatenate(v) for t, v in true.items()},
        {t: np.concatenate(v) for t, v in pred.items()},
    )


def _loss(out: Mapping[str, Tensor], labels: Tensor, tasks: Sequence[str]) -> Tensor:
    total = labels.new_zeros((), dtype=torch.float32)
    for k, t in enumerate(tasks):
        target = labels[:, k]
        if (target != IGNORE_INDEX).any():  # an all-nodata batch would give NaN
            total = total + F.cross_entropy(out[t], target, ignore_index=IGNORE_INDEX)
    return total


def _batches(dataset, batch_size: int, generator: torch.Generator) -> Iterator[dict]:
    while True:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)
        yield from loader


def finetune(
    store_path: str | os.PathLike[str],
    kind: str = "random",
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    tasks: Sequence[str] | None = None,
    label_fraction: float = 1.0,
    seed: int = 0,
    regime: str = "full",
    last_n: int = 2,
    decoder: str = "progressive",
    preset: str = "tiny",
    patch_size: int = 16,
    lr: float = 1e-3,
    layer_decay: float = 0.75,
    weight_decay: float = 0.05,
    batch_size: int = 16,
    max_steps: int = 300,
    eval_every: int = 25,
    patience: int = 4,
    max_seconds: float | None = None,
    eval_batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
    model_kwargs: Mapping[str, Any] | None = None,
) -> FinetuneResult:
    """Fine-tune ``kind`` (ssl | random | unet) on ``label_fraction`` of the train chips.

    ``checkpoint`` is the SSL encoder (its bands/units are checked against the
    store's; ``random`` with a checkpoint builds the same architecture untrained).
    Weights, chip sample and batch order all follow ``seed``; the caller's RNG is
    left untouched. Returns test metrics of the best-on-validation weights.
    """
    store = ChipStore(store_path)
    attrs = store.attrs
    if not attrs.get("label_vars"):
        raise InputError(store.path, "stores no labels: nothing to fine-tune on")
    task_classes = tasks_for_store(attrs["label_vars"], tasks)
    task_names = list(task_classes)
    label_pos = [attrs["label_vars"].index(t) for t in task_names]
    device = torch.device(device)

    def dataset(split: str) -> ChipDataset:
        keep = label_pos

        def pick(sample: dict) -> dict:
            sample["labels"] = sample["labels"][keep]
            return sample

        ds = ChipDataset(store.path, split=split, with_labels=True, transform=pick)
        if len(ds) == 0:
            raise InputError(store.path, f"has no chips in split {split!r}")
        return ds

    train_all, val, test = dataset("train"), dataset("val"), dataset("test")
    picks = sample_label_fraction(len(train_all), label_fraction, seed)
    train = Subset(train_all, picks.tolist())
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(
            kind, task_classes, len(train_all.bands), int(attrs["size"]),
            checkpoint=checkpoint, bands=train_all.bands, units=attrs["units"],
            quantity=attrs["quantity"], preset=preset, patch_size=patch_size,
            decoder=decoder, regime=regime, last_n=last_n, **dict(model_kwargs or {}),
        ).to(device)  # fmt: skip
        groups = param_groups(model, lr, weight_decay, layer_decay if kind != "unet" else 1.0)
        for g in groups:
            g.pop("names")
        optimizer = torch.optim.AdamW(groups, lr=lr)
        generator = torch.Generator().manual_seed(seed)
        batches = _batches(train, min(batch_size, len(train)), generator)
        val_loader = DataLoader(val, batch_size=eval_batch_size)
        best, best_state, best_step, bad, history = -math.inf, None, 0, 0, []
        best_val: dict[str, float] = {}
        stop_reason = "max_steps"
        bar = tqdm(
            total=max_steps, desc=f"finetune {kind} {label_fraction:g}", disable=not progress
        )
        step = 0
        while step < max_steps:
            model.train()
            batch = next(batches)
            out = model(*_inputs(batch, device))
            loss = _loss(out, batch["labels"].to(device), task_names)
            optimizer.zero_grad(set_to_none=True)
            if loss.requires_grad:
                loss.backward()
                optimizer.step()
            step += 1
            bar.update(1)
            timed_out = max_seconds is not None and time.perf_counter() - t0 > max_seconds
            if step % eval_every == 0 or step == max_steps or timed_out:
                val_scores = evaluate(model, val_loader, task_names, device)
                score = _selection_score(val_scores)
                history.append({"step": step, "loss": float(loss.detach()), "val_score": score})
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", val=f"{score:.3f}")
                if score > best:
                    best, best_step, bad, best_val = score, step, 0, val_scores
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    bad += 1
                if bad >= patience:
                    stop_reason = "early_stopping"
                    break
                if timed_out:
                    stop_reason = "max_seconds"
                    break
        bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        test_scores = evaluate(
            model, DataLoader(test, batch_size=eval_batch_size), task_names, device
        )
    return FinetuneResult(
        kind=kind, label_fraction=float(label_fraction), seed=int(seed),
        n_train_chips=len(train), best_step=best_step, steps=step, stop_reason=stop_reason,
        val_score=best, test=test_scores, seconds=time.perf_counter() - t0,
        val=dict(best_val), history=history, model=model.cpu().eval(),
    )  # fmt: skip
