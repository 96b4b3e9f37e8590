"""kNN probe on frozen patch features: how far the SSL features alone separate the classes.

Each training patch token is labelled with the majority class of its valid pixels
(patches less than half labelled are skipped); a test patch takes the majority
vote of its ``k`` nearest training tokens (cosine distance on L2-normalised
features), and every pixel of the patch inherits it before scoring.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from sarlab.chips_read import ChipDataset, ChipStore
from sarlab.conventions import IGNORE_INDEX
from sarlab.models import ViTEncoder

__all__ = ["knn_baseline", "knn_probe", "patch_labels"]


def patch_labels(labels: Tensor, patch: int, num_classes: int, min_valid: float = 0.5) -> Tensor:
    """``(B, H, W)`` pixel classes -> ``(B, H/p, W/p)`` majority class (IGNORE_INDEX if sparse)."""
    b, h, w = labels.shape
    blocks = labels.reshape(b, h // patch, patch, w // patch, patch).permute(0, 1, 3, 2, 4)
    blocks = blocks.reshape(b, h // patch, w // patch, patch * patch)
    counts = torch.stack([(blocks == c).sum(-1) for c in range(num_classes)], dim=-1)
    out = counts.argmax(-1)
    sparse = counts.sum(-1) < min_valid * patch * patch
    return torch.where(sparse, torch.full_like(out, IGNORE_INDEX), out)


@torch.no_grad()
def _embed(encoder: ViTEncoder, loader: DataLoader) -> tuple[np.ndarray, Tensor]:
    """L2-normalised patch features ``(N * h * w, D)`` and every label ``(N, T, H, W)``."""
    feats, labels = [], []
    encoder.eval()
    for batch in loader:
        fmap = encoder.dense_features(batch["image"])  # (B, D, h, w)
        f = torch.nn.functional.normalize(fmap.permute(0, 2, 3, 1), dim=-1)
        feats.append(f.reshape(-1, f.shape[-1]).numpy())
        labels.append(batch["labels"])
    return np.concatenate(feats), torch.cat(labels)


def _vote(
    train: tuple[np.ndarray, Tensor], test: tuple[np.ndarray, Tensor], patch: int,
    num_classes: int, k: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Pixel labels and kNN predictions ``(N, H, W)`` for one label plane of ``_embed``."""
    ytr = patch_labels(train[1], patch, num_classes).reshape(-1).numpy()
    ok = ytr != IGNORE_INDEX
    if not ok.any():
        raise ValueError("no training patch is at least half labelled")
    knn = KNeighborsClassifier(n_neighbors=min(k, int(ok.sum()))).fit(train[0][ok], ytr[ok])
    pixels = test[1].numpy()
    n, h, w = pixels.shape
    pred = knn.predict(test[0]).reshape(n, h // patch, w // patch)
    return pixels, pred.repeat(patch, axis=1).repeat(patch, axis=2)


def knn_probe(
    encoder: ViTEncoder,
    train_loader: DataLoader,
    test_loader: DataLoader,
    num_classes: int,
    k: int = 20,
    label_index: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel labels and kNN predictions ``(N, H, W)`` of the test chips (score them yourself)."""
    xtr, ltr = _embed(encoder, train_loader)
    xte, lte = _embed(encoder, test_loader)
    return _vote((xtr, ltr[:, label_index]), (xte, lte[:, label_index]),
                 encoder.patch_size, num_classes, k)  # fmt: skip


def knn_baseline(
    store_path: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    kind: str = "ssl",
    tasks: Sequence[str] = ("SOD",),
    label_fraction: float = 1.0,
    seed: int = 0,
    k: int = 20,
    split: str = "test",
    cache: dict | None = None,
) -> dict[str, float]:
    """:func:`knn_probe` of the checkpoint's encoder (``ssl``) or its seeded random twin
    (``random``) per task, trained on the chips :func:`finetune` would label, scored on ``split``.

    Nothing is trained, so the score measures the frozen features alone: the cleanest
    test of what pretraining put into the encoder. ``cache`` (a dict the caller keeps)
    holds the held-out features between calls: they do not depend on the label fraction,
    nor, for ``ssl``, on the seed, so a grid embeds them once per encoder.
    """
    from sarlab.finetune.model import TASK_CLASSES, encoder_for_store
    from sarlab.finetune.train import sample_label_fraction, score_predictions

    if kind not in ("ssl", "random"):
        raise ValueError(f"kind must be 'ssl' or 'random', got {kind!r}")
    store = ChipStore(store_path)
    attrs = store.attrs
    train = ChipDataset(store.path, split="train", with_labels=True)
    held_out = ChipDataset(store.path, split=split, with_labels=True)
    encoder = encoder_for_store(
        checkpoint, train.bands, attrs["units"], attrs.get("quantity"), int(attrs["size"])
    )
    if kind == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = ViTEncoder(encoder.config)
    picks = sample_label_fraction(len(train), label_fraction, seed).tolist()
    xtr, ltr = _embed(encoder, DataLoader(Subset(train, picks), batch_size=64))
    key = (str(Path(store_path).resolve()), str(checkpoint), kind,
           seed if kind == "random" else None, split)  # fmt: skip
    if cache is not None and key in cache:
        xte, lte = cache[key]
    else:
        xte, lte = _embed(encoder, DataLoader(held_out, batch_size=64))
        if cache is not None:
            cache[key] = (xte, lte)
    true, pred = {}, {}
    for task in tasks:
        i = list(attrs["label_vars"]).index(task)
        true[task], pred[task] = _vote(
            (xtr, ltr[:, i]), (xte, lte[:, i]), encoder.patch_size, TASK_CLASSES[task], k
        )
    return score_predictions(
        {t: v.ravel() for t, v in true.items()}, {t: v.ravel() for t, v in pred.items()}
    )
