"""BigEarthNet-S1 multi-label classification: a linear head on pooled encoder features.

Each 120 x 120 VV/VH patch carries every CORINE class present in its footprint
(19-class nomenclature by default). The model is the encoder (SSL checkpoint or its
random-init twin) with one linear layer on the mean of its patch tokens, trained with
binary cross-entropy under the same regimes and layer-wise LR decay as segmentation,
and scored by macro mAP (:func:`~sarlab.finetune.metrics.mean_average_precision`).
Splits group patches by their source Sentinel-1 product, so no acquisition is in two
splits; labelled patches are a seeded, nested fraction of the training split.

Patches are read from disk when a batch needs them (:class:`BigEarthNetS1Dataset`),
so the full 590k-patch archive trains without being loaded into memory.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from sarlab.errors import InputError, UnitsError
from sarlab.finetune.metrics import mean_average_precision
from sarlab.finetune.model import encoder_for_store, param_groups, set_regime
from sarlab.finetune.train import sample_label_fraction
from sarlab.io.bigearthnet import (
    BIGEARTHNET_19,
    BIGEARTHNET_43,
    bigearthnet_multi_hot,
    open_bigearthnet_s1,
)
from sarlab.models import ViTEncoder, vit_encoder
from sarlab.preprocess.normalize import BandStats, compute_band_stats

__all__ = [
    "BigEarthNetS1Dataset",
    "MultiLabelClassifier",
    "MultiLabelResult",
    "compare_multilabel",
    "find_bigearthnet_patches",
    "finetune_multilabel",
    "patch_features",
    "random_forest_multilabel",
    "split_by_scene",
]

BANDS = ("VV", "VH")
PATCH_PX = 120  # BigEarthNet-S1 patch side
SPLITS = ("train", "val", "test")


def find_bigearthnet_patches(root: str | os.PathLike[str]) -> list[Path]:
    """Every patch folder (one holding ``*_labels_metadata.json``) below ``root``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "is not a folder of BigEarthNet-S1 patches")
    folders = sorted({p.parent for p in root.rglob("*_labels_metadata.json")})
    if not folders:
        raise InputError(root, "holds no BigEarthNet-S1 patch (no *_labels_metadata.json)")
    return folders


class BigEarthNetS1Dataset(Dataset):
    """BigEarthNet-S1 patches as ``{"image": (2, S, S) normalised dB, "target": (K,) float}``.

    Labels and source products come from the JSON files at construction (cheap); the
    rasters are read per item. ``crop`` keeps the central ``S`` pixels (a multiple of
    the encoder's patch size). ``stats`` normalises; without it images stay in dB.
    Both are plain attributes, settable once the encoder and the labelled patches are known.
    ``cache`` keeps decoded patches in memory (115 kB each; per DataLoader worker):
    epochs after the first then cost no reads. Switch it off for the full archive.
    """

    def __init__(
        self,
        patches: Sequence[str | os.PathLike[str]],
        *,
        scheme: str = "19",
        crop: int | None = None,
        stats: BandStats | None = None,
        cache: bool = True,
    ) -> None:
        self._cache: dict[int, np.ndarray] | None = {} if cache else None
        self.patches = [Path(p) for p in patches]
        if not self.patches:
            raise ValueError("no patches given")
        self.scheme = str(scheme)
        self.classes = BIGEARTHNET_19 if self.scheme == "19" else BIGEARTHNET_43
        self.crop, self.stats = crop, stats
        self.targets = np.zeros((len(self.patches), len(self.classes)), dtype=np.float32)
        self.scenes: list[str] = []
        for i, folder in enumerate(self.patches):
            meta_path = next(folder.glob("*_labels_metadata.json"), None)
            if meta_path is None:
                raise InputError(folder, "has no *_labels_metadata.json")
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                self.targets[i] = bigearthnet_multi_hot(meta["labels"], self.scheme)
            except (KeyError, ValueError, InputError) as err:
                raise InputError(meta_path, f"bad labels ({err})") from err
            self.scenes.append(str(meta.get("scene_source") or folder.name))

    def __len__(self) -> int:
        return len(self.patches)

    def image(self, i: int) -> np.ndarray:
        """Patch ``i`` as ``(2, S, S)`` float32 sigma0 dB (VV, VH), centre-cropped."""
        if self._cache is not None and i in self._cache:
            x = self._cache[i]
        else:
            ds = open_bigearthnet_s1(self.patches[i])
            x = ds["backscatter"].sel(band=list(BANDS)).values.astype(np.float32)
            if self._cache is not None:
                self._cache[i] = x
        if self.crop is not None:
            h, w = x.shape[-2:]
            if self.crop > min(h, w):
                raise InputError(self.patches[i], f"is {h}x{w} px, smaller than crop {self.crop}")
            top, left = (h - self.crop) // 2, (w - self.crop) // 2
            x = x[:, top : top + self.crop, left : left + self.crop]
        return x

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        x = self.image(i)
        if self.stats is not None:
            x = self.stats.normalize(x)
        x = np.nan_to_num(x, nan=0.0)  # NaN nodata sits at the band mean after normalising
        return {"image": torch.from_numpy(np.ascontiguousarray(x)),
                "target": torch.from_numpy(self.targets[i])}  # fmt: skip


def split_by_scene(
    scenes: Sequence[str], fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0
) -> np.ndarray:
    """``"train" | "val" | "test"`` per patch, whole source products per split (seeded).

    Products are shuffled and dealt to the splits until each holds its share of
    patches; val and test get at least one product each when there are three or more.
    """
    if len(fractions) != 3 or not math.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"fractions must be three shares summing to 1, got {fractions}")
    names = sorted(set(scenes))
    order = np.random.default_rng([int(seed), 0x5C]).permutation(len(names))
    counts = {s: 0 for s in names}
    for s in scenes:
        counts[s] += 1
    total, split_of, done = len(scenes), {}, 0
    bounds = np.cumsum(fractions)[:2] * total
    for rank, k in enumerate(order):
        name = names[k]
        missing = [s for s in ("val", "test") if s not in split_of.values()]
        if len(names) >= 3 and len(names) - rank <= len(missing):
            split_of[name] = missing[0]  # the last products fill a split still empty
        else:
            split_of[name] = SPLITS[int(np.searchsorted(bounds, done, side="right"))]
        done += counts[name]
    return np.array([split_of[s] for s in scenes])


class MultiLabelClassifier(nn.Module):
    """Encoder + linear layer on the mean (or cls) token: ``(B, C, H, W) -> (B, K)`` logits."""

    def __init__(self, encoder: ViTEncoder, n_classes: int, pool: str = "mean") -> None:
        super().__init__()
        self.encoder, self.pool, self.regime = encoder, pool, "full"
        self.head = nn.Linear(encoder.embed_dim, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder.pool(self.encoder(x), self.pool))

    def train(self, mode: bool = True) -> MultiLabelClassifier:
        super().train(mode)
        if self.regime == "frozen":
            self.encoder.eval()
        return self


@dataclass
class MultiLabelResult:
    """One run: test and best validation mAP, sizes, steps, and the trained model."""

    kind: str
    label_fraction: float
    seed: int
    n_train_patches: int
    best_step: int
    steps: int
    stop_reason: str
    val_map: float
    test_map: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        """Flat record for tables and JSON (no model)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("model", "history")}


def _scores(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[np.ndarray, ...]:
    model.eval()
    true, prob = [], []
    with torch.no_grad():
        for batch in loader:
            prob.append(torch.sigmoid(model(batch["image"].to(device))).cpu().numpy())
            true.append(batch["target"].numpy())
    return np.concatenate(true), np.concatenate(prob)


def _encoder(kind: str, checkpoint: Any, encoder_kwargs: Mapping[str, Any]) -> ViTEncoder:
    """The SSL encoder, its untrained twin, or (no checkpoint) a tiny ViT/16 on 112 px crops."""
    if checkpoint is not None:
        encoder = encoder_for_store(checkpoint, list(BANDS), "dB", "sigma0")
        return ViTEncoder(encoder.config) if kind == "random" else encoder
    if kind == "ssl":
        raise ValueError("kind='ssl' needs a checkpoint")
    kwargs = {"preset": "tiny", "patch_size": 16, **dict(encoder_kwargs)}
    patch = int(kwargs["patch_size"])
    return vit_encoder(kwargs.pop("preset"), in_chans=len(BANDS),
                       img_size=(PATCH_PX // patch) * patch, **kwargs)  # fmt: skip


def finetune_multilabel(
    patches: Sequence[str | os.PathLike[str]],
    kind: str = "random",
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    splits: Sequence[str] | None = None,
    scheme: str = "19",
    label_fraction: float = 1.0,
    seed: int = 0,
    regime: str = "full",
    lr: float = 1e-3,
    layer_decay: float = 0.75,
    batch_size: int = 32,
    max_steps: int = 200,
    eval_every: int = 20,
    patience: int = 4,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    encoder_kwargs: Mapping[str, Any] | None = None,
    cache: bool = True,
    progress: bool = True,
) -> MultiLabelResult:
    """Fine-tune ``kind`` (ssl | random) on ``label_fraction`` of the training patches.

    ``splits`` gives each patch's split (default :func:`split_by_scene` with ``seed``
    0, the same for every run so seeds vary only labels and weights). A checkpoint's
    card must say VV/VH sigma0 in dB; ``random`` with a checkpoint is its untrained
    twin. Bands are normalised with statistics of the labelled patches. The best
    validation mAP picks the weights the test split is scored with. ``cache=False``
    reads every patch from disk each epoch (the full archive does not fit in memory).
    """
    data = BigEarthNetS1Dataset(patches, scheme=scheme, cache=cache)
    splits = split_by_scene(data.scenes) if splits is None else np.asarray(splits)
    if len(splits) != len(data):
        raise ValueError(f"{len(splits)} split names for {len(data)} patches")
    index = {s: np.flatnonzero(splits == s) for s in SPLITS}
    empty = [s for s, idx in index.items() if len(idx) == 0]
    if empty:
        raise InputError(Path(data.patches[0]).parent, f"no patches in split(s) {empty}")
    device = torch.device(device)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = _encoder(kind, checkpoint, encoder_kwargs or {})
        crop = (PATCH_PX // encoder.patch_size) * encoder.patch_size  # centred, whole tokens
        model = MultiLabelClassifier(encoder, len(data.classes)).to(device)
        set_regime(model, regime)
        labelled = index["train"][sample_label_fraction(len(index["train"]), label_fraction, seed)]
        data.crop = crop
        stats = compute_band_stats(
            np.stack([data.image(int(i)) for i in labelled], axis=1).reshape(len(BANDS), -1),
            list(BANDS), "dB", progress=False,
        )  # fmt: skip
        data.stats = stats
        groups = param_groups(model, lr, layer_decay=layer_decay)
        for g in groups:
            g.pop("names")
        optimizer = torch.optim.AdamW(groups, lr=lr)
        generator = torch.Generator().manual_seed(seed)
        train = Subset(data, labelled.tolist())
        val_loader = DataLoader(Subset(data, index["val"].tolist()), batch_size=64,
                                num_workers=num_workers)  # fmt: skip
        best, best_state, best_step, bad, history = -math.inf, None, 0, 0, []
        stop_reason, step = "max_steps", 0
        bar = tqdm(total=max_steps, desc=f"multi-label {kind} {label_fraction:g}",
                   disable=not progress)  # fmt: skip
        while step < max_steps and stop_reason == "max_steps":
            loader = DataLoader(train, batch_size=min(batch_size, len(train)), shuffle=True,
                                generator=generator, num_workers=num_workers)  # fmt: skip
            for batch in loader:
                model.train()
                logits = model(batch["image"].to(device))
                loss = F.binary_cross_entropy_with_logits(logits, batch["target"].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                bar.update(1)
                if step % eval_every and step != max_steps:
                    continue
                score = mean_average_precision(*_scores(model, val_loader, device))
                score = -math.inf if math.isnan(score) else score
                history.append({"step": step, "loss": float(loss.detach()), "val_map": score})
                if score > best:
                    best, best_step, bad = score, step, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    bad += 1
                if bad >= patience:
                    stop_reason = "early_stopping"
                if step >= max_steps or bad >= patience:
                    break
        bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        test_map = mean_average_precision(
            *_scores(model, DataLoader(Subset(data, index["test"].tolist()), batch_size=64), device)
        )
    return MultiLabelResult(
        kind=kind, label_fraction=float(label_fraction), seed=int(seed),
        n_train_patches=len(labelled), best_step=best_step, steps=step, stop_reason=stop_reason,
        val_map=best, test_map=test_map, seconds=time.perf_counter() - t0, history=history,
        model=model.cpu().eval(),
    )  # fmt: skip


def patch_features(images: np.ndarray) -> np.ndarray:
    """Per-patch statistics of dB images ``(N, 2, H, W)``: what a classical model sees.

    Mean, standard deviation and the 10/50/90th percentiles of VV, VH and the VH-VV
    ratio (dB difference), NaN-aware: 15 features per patch.
    """
    images = np.asarray(images, dtype=np.float32)
    bands = np.concatenate([images, images[:, 1:2] - images[:, 0:1]], axis=1)
    flat = bands.reshape(bands.shape[0], bands.shape[1], -1)
    pct = np.nanpercentile(flat, [10, 50, 90], axis=2)  # (3, N, 3)
    feats = [np.nanmean(flat, axis=2), np.nanstd(flat, axis=2), *pct]
    return np.concatenate(feats, axis=1)


def random_forest_multilabel(
    patches: Sequence[str | os.PathLike[str]],
    *,
    splits: Sequence[str] | None = None,
    scheme: str = "19",
    label_fraction: float = 1.0,
    seed: int = 0,
    n_estimators: int = 200,
) -> dict[str, float]:
    """Classical baseline: a random forest on :func:`patch_features`, test macro mAP.

    Same splits and the same labelled patches as :func:`finetune_multilabel`.
    """
    from sklearn.ensemble import RandomForestClassifier

    data = BigEarthNetS1Dataset(patches, scheme=scheme)
    splits = split_by_scene(data.scenes) if splits is None else np.asarray(splits)
    train = np.flatnonzero(splits == "train")
    labelled = train[sample_label_fraction(len(train), label_fraction, seed)]
    test = np.flatnonzero(splits == "test")

    def features(index: np.ndarray) -> np.ndarray:  # only the patches used are read
        return patch_features(np.stack([data.image(int(i)) for i in index]))

    forest = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=-1)
    forest.fit(features(labelled), data.targets[labelled])
    proba = forest.predict_proba(features(test))
    # one (n, 2) array per class; a class the labelled patches never (or always) show
    # gives (n, 1): its score is that constant
    scores = np.stack(
        [p[:, list(forest.classes_[k]).index(1)] if 1 in forest.classes_[k] else np.zeros(len(test))
         for k, p in enumerate(proba)], axis=1,
    )  # fmt: skip
    return {"test_map": mean_average_precision(data.targets[test], scores),
            "n_train_patches": len(labelled)}  # fmt: skip


def compare_multilabel(
    patches: Sequence[str | os.PathLike[str]],
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    label_fraction: float = 1.0,
    seed: int = 0,
    n_estimators: int = 200,
    **settings: Any,
) -> pd.DataFrame:
    """Test mAP of the SSL encoder, its random-init twin and the forest on the same labels.

    The SSL encoder runs only when its card reads VV/VH sigma0 in dB (otherwise it is
    said why, and the random-init encoder is the tiny preset). ``settings`` go to
    :func:`finetune_multilabel`. One row per model, indexed ssl, random and forest.
    """
    kinds = ["random"]
    if checkpoint is not None:
        try:
            encoder_for_store(checkpoint, list(BANDS), "dB", "sigma0")
            kinds = ["ssl", "random"]
        except UnitsError as err:
            print(f"no SSL encoder for BigEarthNet-S1: {err}")
            checkpoint = None
    splits = split_by_scene(BigEarthNetS1Dataset(patches).scenes)
    rows = []
    for kind in kinds:
        run = finetune_multilabel(patches, kind, checkpoint, splits=splits,
                                  label_fraction=label_fraction, seed=seed, **settings)  # fmt: skip
        rows.append({
            "key": kind, "model": f"{kind} encoder + linear head", "test_mAP": run.test_map,
            "val_mAP": run.val_map, "labelled_patches": run.n_train_patches, "steps": run.steps,
        })  # fmt: skip
    forest = random_forest_multilabel(patches, splits=splits, label_fraction=label_fraction,
                                      seed=seed, n_estimators=n_estimators)  # fmt: skip
    rows.append({"key": "forest", "model": "random forest (backscatter statistics)",
                 "test_mAP": forest["test_map"],
                 "labelled_patches": forest["n_train_patches"]})  # fmt: skip
    return pd.DataFrame(rows).set_index("key")
