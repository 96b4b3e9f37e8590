"""kNN probe on frozen patch features: how far the SSL features alone separate the classes.

Each training patch token is labelled with the majority class of its valid pixels
(patches less than half labelled are skipped); a test patch takes the majority
vote of its ``k`` nearest training tokens (cosine distance on L2-normalised
features), and every pixel of the patch inherits it before scoring.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier
from torch import Tensor
from torch.utils.data import DataLoader

from sarlab.conventions import IGNORE_INDEX
from sarlab.models import ViTEncoder

__all__ = ["knn_probe", "patch_labels"]


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
def _features(
    encoder: ViTEncoder, loader: DataLoader, k_label: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    feats, plabels, pixels = [], [], []
    encoder.eval()
    p = encoder.patch_size
    for batch in loader:
        fmap = encoder.dense_features(batch["image"])  # (B, D, h, w)
        f = torch.nn.functional.normalize(fmap.permute(0, 2, 3, 1), dim=-1)
        lab = batch["labels"][:, k_label]
        feats.append(f.reshape(-1, f.shape[-1]).numpy())
        plabels.append(patch_labels(lab, p, num_classes).reshape(-1).numpy())
        pixels.append(lab.numpy())
    return np.concatenate(feats), np.concatenate(plabels), np.concatenate(pixels)


def knn_probe(
    encoder: ViTEncoder,
    train_loader: DataLoader,
    test_loader: DataLoader,
    num_classes: int,
    k: int = 20,
    label_index: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel labels and kNN predictions ``(N, H, W)`` of the test chips (score them yourself)."""
    xtr, ytr, _ = _features(encoder, train_loader, label_index, num_classes)
    ok = ytr != IGNORE_INDEX
    if not ok.any():
        raise ValueError("no training patch is at least half labelled")
    knn = KNeighborsClassifier(n_neighbors=min(k, int(ok.sum()))).fit(xtr[ok], ytr[ok])
    xte, _, pixels = _features(encoder, test_loader, label_index, num_classes)
    n, h, w = pixels.shape
    p = encoder.patch_size
    pred = knn.predict(xte).reshape(n, h // p, w // p)
    return pixels, pred.repeat(p, axis=1).repeat(p, axis=2)
