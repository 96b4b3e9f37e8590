"""The pretraining loop: one function, :func:`fit`, short enough to read in one sitting.

    result = pretrain("chips.zarr", method="mae", preset="tiny", steps=2000, out_dir="runs/mae")
    encoder = load_encoder(result.checkpoint)

What it guarantees, and how:

* Reproducible: python, numpy and torch are seeded from ``config.seed`` (and the
  rank); the data order depends on ``(seed, epoch)`` only
  (:class:`~sarlab.train_data.ShardedBatchSampler`).
* Exact resume: every ``checkpoint_every`` steps ``train_state/`` stores the
  method's weights, the AdamW state, the schedule position and every RNG state;
  a rerun in the same ``out_dir`` restores them and skips the batches already
  seen, so on the CPU its final weights equal an uninterrupted run's bit for bit.
* Nothing half-written: checkpoints are folders renamed into place; the log is
  cut back to the resumed step.
* DDP under ``torchrun``: each rank trains on its slice of every global batch,
  rank 0 writes all files. Methods that draw their randomness from the batch's
  ``sample_seed`` (:func:`~sarlab.train_data.sample_masking`) reach the same
  weights on any number of processes (see :mod:`sarlab.train_data`).
* Streams: a torch ``IterableDataset`` (:mod:`sarlab.io.ssl4eo`,
  :mod:`sarlab.io.majortom`) reads its own share of shards on each rank and
  worker; batches are ``batch_size / W`` consecutive samples of that share, and
  each rank starts its next pass when its share runs out. A stream without a
  known length needs ``steps``. Resume is exact but replays (reads without
  training) the batches already seen; ``sample_seed`` comes from the samples'
  ``index`` (:class:`~sarlab.train_data.SeededStream`).

Files in ``out_dir``: ``metrics.jsonl``, ``train_state/`` and ``checkpoint/`` (the
encoder as a sarlab checkpoint with its model card, the method's other weights
as extra tensors).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset
from tqdm.auto import tqdm

from sarlab.chips import ChipDataset, ChipStore
from sarlab.errors import InputError
from sarlab.models.checkpoint import CARD_FILE, save_checkpoint
from sarlab.models.vit import ViTEncoder, vit_encoder
from sarlab.report import git_info, utc_now
from sarlab.train_card import base_card, check_card
from sarlab.train_config import TrainConfig, TrainResult
from sarlab.train_data import (
    SAMPLE_SEED,
    SeededSamples,
    SeededStream,
    ShardedBatchSampler,
    mix_seed,
    sample_masking,
    sample_rand,
    to_device,
)
from sarlab.train_dist import DistInfo, all_mean, barrier, gather_objects, setup_distributed
from sarlab.train_schedule import build_optimizer, lr_at, param_groups, set_lr
from sarlab.train_state import (
    MetricsLog,
    capture_rng,
    check_resume,
    load_train_state,
    restore_rng,
    save_train_state,
)

__all__ = [
    "CHECKPOINT_DIR",
    "METRICS_FILE",
    "SAMPLE_SEED",
    "STATE_DIR",
    "ShardedBatchSampler",
    "TrainConfig",
    "TrainResult",
    "fit",
    "lr_at",
    "param_groups",
    "pretrain",
    "sample_masking",
    "sample_rand",
]

CHECKPOINT_DIR, STATE_DIR, METRICS_FILE = "checkpoint", "train_state", "metrics.jsonl"
_STANDARD = ("step", "epoch", "loss", "lr", "grad_norm", "images_per_s")
Callback = Callable[[int, dict[str, Any]], None]


def _seed_everything(seed: int, rank: int) -> None:
    s = int(mix_seed(seed, rank))
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class _Window:
    """Sums over the steps since the last log line (kept on the device: no sync per step)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset(time.perf_counter(), 0)

    def reset(self, now: float, step: int) -> None:
        self.t0, self.step0, self.count = now, step, 0
        self.loss = torch.zeros((), device=self.device)
        self.grad = torch.zeros((), device=self.device)
        self.logs: dict[str, float] = {}

    def add(self, loss: Tensor, grad_norm: Tensor, logs: Mapping[str, float]) -> None:
        self.count += 1
        self.loss += loss.detach().float()
        self.grad += grad_norm.detach().float()
        for k, v in logs.items():
            self.logs[k] = self.logs.get(k, 0.0) + float(v)

    def record(self, info: DistInfo) -> dict[str, Any]:
        """Means over the window and the ranks; method logs named like ours get ``ssl_``."""
        keys = sorted(self.logs)
        values = torch.stack([self.loss, self.grad]).double().cpu()
        values = torch.cat([values, torch.tensor([self.logs[k] for k in keys]).double()])
        values = all_mean((values / self.count).to(info.device), info).cpu().tolist()
        out = {"loss": values[0], "grad_norm": values[1]}
        for k, v in zip(keys, values[2:], strict=True):
            out[k if k not in _STANDARD else f"ssl_{k}"] = v
        return out


def _loader(dataset: Dataset, config: TrainConfig, info: DistInfo, epoch: int, start: int):
    sampler = ShardedBatchSampler(
        len(dataset), config.batch_size, seed=config.seed, epoch=epoch,
        rank=info.rank, world_size=info.world_size, start_batch=start,
    )  # fmt: skip
    # Its own generator: DataLoader otherwise draws worker seeds from the global torch RNG,
    # which would make a resumed run's random stream differ from an uninterrupted one.
    gen = torch.Generator().manual_seed(int(mix_seed(config.seed, epoch, info.rank, 7)))
    return DataLoader(
        SeededSamples(dataset),
        batch_sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=info.device.type == "cuda",
        generator=gen,
    )


def _length(dataset: Dataset) -> int | None:
    """``len(dataset)``, or None for a stream whose length is not known."""
    if isinstance(dataset, IterableDataset):
        try:
            return len(dataset)  # type: ignore[arg-type]
        except TypeError:
            return None
    return len(dataset)  # type: ignore[arg-type]


def _with_dataset_card(dataset: Dataset, card_extra: Mapping[str, Any] | None) -> dict:
    """``card_extra`` over the dataset's own card fields (bands, units ...) where it has them."""
    extra = dict(card_extra or {})
    if not hasattr(dataset, "card_fields"):
        return extra
    fields = dict(dataset.card_fields())
    fields["data"] = {**fields.get("data", {}), **extra.pop("data", {})}
    return {**fields, **extra}


def _stream_batches(dataset: IterableDataset, config: TrainConfig, info: DistInfo, start: int):
    """(epoch, batch) of this rank's share of a stream, pass after pass, from batch ``start``.

    The stream shards itself over ranks and workers (``set_distributed``), so ranks
    may see different numbers of samples per pass; each rank simply starts its next
    pass (``set_epoch``) when its share runs out, and every rank trains the same
    number of steps. Resuming replays the batches before ``start`` without training.
    """
    per_rank = config.batch_size // info.world_size
    if hasattr(dataset, "set_distributed"):
        dataset.set_distributed(info.rank, info.world_size)
    epoch, seen = 0, 0
    while True:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        gen = torch.Generator().manual_seed(int(mix_seed(config.seed, epoch, info.rank, 7)))
        loader = DataLoader(
            SeededStream(dataset, config.seed, epoch), batch_size=per_rank, drop_last=True,
            num_workers=config.num_workers, pin_memory=info.device.type == "cuda", generator=gen,
        )  # fmt: skip
        produced = 0
        for batch in loader:
            produced, seen = produced + 1, seen + 1
            if seen > start:
                yield epoch, batch
        if produced == 0:
            raise InputError(
                getattr(dataset, "root", None),
                f"rank {info.rank}: a pass over the stream gave no full batch of {per_rank}",
            )
        epoch += 1


def _batches(dataset: Dataset, config: TrainConfig, info: DistInfo, start: int, spe: int | None):
    """(epoch, batch) from step ``start`` on, for as long as the training loop asks."""
    if isinstance(dataset, IterableDataset):
        yield from _stream_batches(dataset, config, info, start)
        return
    step = start
    while True:
        epoch, offset = divmod(step, spe)
        for batch in _loader(dataset, config, info, epoch, offset):
            yield epoch, batch
            step += 1


def _out_of_time(deadline: float | None, step: int, log_every: int, info: DistInfo) -> bool:
    """``max_seconds`` spent? Under DDP the ranks decide together, at log steps only."""
    if deadline is None:
        return False
    if not info.distributed:
        return time.perf_counter() >= deadline
    if step % log_every:
        return False
    late = torch.tensor(float(time.perf_counter() >= deadline), device=info.device)
    return bool(all_mean(late, info).item() > 0)


def fit(
    method: nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    *,
    resume: bool = True,
    progress: bool = True,
    card_extra: Mapping[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train ``method`` (an SSL method holding ``.encoder``) on ``dataset``; see the module doc.

    ``method(batch) -> (loss, logs)`` gets collated dict batches (plus
    ``sample_seed``) on the device; ``method.on_step_end(step, total_steps)``
    runs after every update (``step`` counts updates done, from 1). With
    ``resume`` a ``train_state/`` in ``config.out_dir`` is continued (its config
    must match in :data:`~sarlab.train_config.RESUME_KEYS`); without, it is
    removed and the run starts over. ``card_extra`` adds or replaces model-card
    fields (``data`` is merged). ``callbacks(step, info)`` run on every rank after
    each step and its checkpoint; an exception raised there stops the run as a
    kill would.
    """
    info = setup_distributed(config.device)
    try:
        return _fit(method, dataset, config, info, resume, progress, card_extra, callbacks)
    finally:
        info.close()


def _fit(method, dataset, config, info, resume, progress, card_extra, callbacks) -> TrainResult:
    wall0 = time.perf_counter()
    out = Path(config.out_dir)
    state_dir, ckpt_dir, metrics_path = out / STATE_DIR, out / CHECKPOINT_DIR, out / METRICS_FILE
    encoder = getattr(method, "encoder", None)
    if not isinstance(encoder, ViTEncoder):
        raise TypeError(f"{type(method).__name__} has no .encoder ViTEncoder to checkpoint")
    if config.batch_size % info.world_size:
        raise ValueError(
            f"batch_size {config.batch_size} is not divisible by {info.world_size} processes"
        )
    n = _length(dataset)
    if n is None:  # a stream that does not know its length: one epoch is one pass
        if config.steps is None:
            raise ValueError(
                f"{type(dataset).__name__} does not know its length; give steps= (epochs "
                "need a length)"
            )
        spe = None
    else:
        spe = n // config.batch_size
        if spe == 0:
            raise ValueError(
                f"the dataset has {n} samples, fewer than one batch of {config.batch_size}"
            )
    total = config.total_steps(spe) if spe is not None else int(config.steps)
    card = base_card(method, dataset, _with_dataset_card(dataset, card_extra))
    check_card(card, encoder, ckpt_dir / CARD_FILE)
    live = {"ssl": card["ssl"], "dataset_size": n}

    method.to(info.device).train()
    optimizer = build_optimizer(
        method, lr=config.lr, weight_decay=config.weight_decay, betas=config.betas
    )
    _seed_everything(config.seed, info.rank)
    start, resumed_from = 0, None
    if resume and (state_dir / "state.json").is_file():
        saved = load_train_state(state_dir)
        check_resume(saved["state"], config, live, state_dir / "state.json")
        method.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        start = resumed_from = int(saved["state"]["step"])
        if len(saved["rng"]) == info.world_size:
            restore_rng(saved["rng"][info.rank])
        else:
            warnings.warn(
                f"resuming a state of {len(saved['rng'])} processes on {info.world_size}: the "
                "data order is kept, the RNG streams are reseeded (exact only for methods "
                "drawing from sample_seed)",
                stacklevel=2,
            )
            _seed_everything(int(mix_seed(config.seed, start)), info.rank)
    elif info.is_main and state_dir.exists():
        shutil.rmtree(state_dir)
    barrier(info)

    metrics = MetricsLog(metrics_path, keep_until=start) if info.is_main else None
    model: nn.Module = method
    if info.distributed:
        model = nn.parallel.DistributedDataParallel(
            method,
            device_ids=[info.device.index] if info.device.type == "cuda" else None,
            find_unused_parameters=config.find_unused_parameters,
        )
    params = [p for p in method.parameters() if p.requires_grad]
    clip = float(config.grad_clip) if config.grad_clip else math.inf
    git = git_info(Path(__file__).resolve().parent) if info.is_main else {}
    sched = {"lr": config.lr, "min_lr": config.min_lr, "warmup_steps": config.warmup_steps}
    last: dict[str, Any] = {}
    window = _Window(info.device)
    bar = tqdm(
        total=total, initial=start, unit="step", desc=f"pretrain {card['ssl']['method']}",
        disable=not (progress and info.is_main), dynamic_ncols=True,
    )  # fmt: skip

    def save(step: int, lr: float, epoch: int) -> None:
        rngs = gather_objects(capture_rng(), info)
        if info.is_main:
            metrics.sync()
            scalars = {k: v for k, v in last.items() if isinstance(v, int | float)}
            finite = {k: v for k, v in scalars.items() if math.isfinite(v)}
            training = {
                "config": config.to_dict(), "total_steps": total,
                "steps_per_epoch": spe, "world_size": info.world_size,
            }  # fmt: skip
            full = {
                **card, "metrics": {**finite, "log_step": last.get("step"), "step": step},
                "git": git, "created": utc_now(), "training": training,
            }  # fmt: skip
            extra = {k: v for k, v in method.state_dict().items() if not k.startswith("encoder.")}
            save_checkpoint(ckpt_dir, encoder, full, extra_tensors=extra or None, overwrite=True)
            state = {
                "step": step, "epoch": step // spe if spe else epoch, "total_steps": total,
                "steps_per_epoch": spe, "world_size": info.world_size,
                "config": config.to_dict(), **live, "created": utc_now(),
                "scheduler": {"name": "warmup_cosine", "step": step, "last_lr": lr, **sched},
            }  # fmt: skip
            save_train_state(state_dir, method, optimizer, state, rngs)
        barrier(info)

    step, lr = start, config.lr
    window.reset(time.perf_counter(), step)
    deadline = None if config.max_seconds is None else time.perf_counter() + config.max_seconds
    stop_reason = "completed"
    batches = _batches(dataset, config, info, start, spe)
    try:
        while step < total:
            epoch, batch = next(batches)
            batch = to_device(batch, info.device)
            lr = lr_at(step, total_steps=total, **sched)
            set_lr(optimizer, lr)
            with _autocast(info.device, config.precision):
                loss, logs = model(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()
            step += 1
            method.on_step_end(step, total)
            window.add(loss, grad_norm, logs)
            bar.update(1)
            out_of_time = step < total and _out_of_time(deadline, step, config.log_every, info)
            if step % config.log_every == 0 or step == total or out_of_time:
                now = time.perf_counter()
                ips = (step - window.step0) * config.batch_size / max(now - window.t0, 1e-9)
                last = {"step": step, "epoch": epoch, "lr": lr,
                        **window.record(info), "images_per_s": ips}  # fmt: skip
                if metrics is not None:
                    metrics.write(last)
                bar.set_postfix(loss=f"{last['loss']:.4g}", lr=f"{lr:.3g}")
                window.reset(time.perf_counter(), step)
                if not math.isfinite(last["loss"]):
                    raise FloatingPointError(
                        f"loss is {last['loss']} at step {step} (lr {lr:.3g}); lower lr or "
                        f"check the inputs; the last good state is in {state_dir}"
                    )
            every = config.checkpoint_every
            if (every and step % every == 0) or step == total or out_of_time:
                save(step, lr, epoch)
            if callbacks:
                step_info = {"epoch": epoch, "lr": lr, "loss": float(loss.detach())}
                for callback in callbacks:
                    callback(step, step_info)
            if out_of_time:
                stop_reason = "max_seconds"
                break
    finally:
        batches.close()
        bar.close()
        if metrics is not None:
            metrics.close()
    history = metrics.read() if metrics is not None else []
    return TrainResult(
        out_dir=out, checkpoint=ckpt_dir, train_state=state_dir, metrics_path=metrics_path,
        step=step, total_steps=total, steps_per_epoch=spe, world_size=info.world_size,
        resumed_from=resumed_from, final_loss=history[-1]["loss"] if history else None,
        wall_time_s=time.perf_counter() - wall0, history=history, stop_reason=stop_reason,
    )  # fmt: skip


def pretrain(
    store_path: str | os.PathLike[str],
    method: str = "mae",
    preset: str = "tiny",
    *,
    out_dir: str | os.PathLike[str] | None = None,
    split: str | Sequence[str] | None = "train",
    patch_size: int = 16,
    incidence_conditioning: bool = False,
    encoder_kwargs: Mapping[str, Any] | None = None,
    method_kwargs: Mapping[str, Any] | None = None,
    config: TrainConfig | Mapping[str, Any] | None = None,
    manifest: str | None = None,
    manifest_checksum: str | None = None,
    resume: bool = True,
    progress: bool = True,
    **train_overrides: Any,
) -> TrainResult:
    """Pretrain a ``preset`` ViT with SSL ``method`` on a chip store's ``split``; calls :func:`fit`.

    The encoder takes the store's bands as channels and its chip size as
    ``img_size``. ``train_overrides`` are :class:`TrainConfig` fields (``steps=``,
    ``batch_size=``, ``lr=`` ...) applied over ``config``; ``out_dir`` (when
    given) wins over the config's. ``manifest``/``manifest_checksum`` name the
    data manifest in the model card. Weights are initialised from ``seed``
    without touching the caller's RNG.
    """
    from sarlab.ssl import build_method

    store = ChipStore(store_path)
    size = int(store.attrs["size"])
    if size % patch_size:
        raise InputError(
            store.path, f"chips of {size} px do not split into {patch_size} px patches"
        )
    if isinstance(config, TrainConfig):
        base = config.to_dict()
    else:
        base = TrainConfig.from_dict(dict(config or {})).to_dict()
    if out_dir is not None:
        train_overrides["out_dir"] = str(out_dir)
    cfg = TrainConfig.from_dict({**base, **train_overrides})
    dataset = ChipDataset(
        store.path,
        split=split,
        with_labels=False,
        with_incidence=True if incidence_conditioning else None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        encoder = vit_encoder(
            preset,
            in_chans=len(dataset.bands),
            patch_size=patch_size,
            img_size=size,
            incidence_conditioning=incidence_conditioning,
            **dict(encoder_kwargs or {}),
        )
        # the method learns the store's channel order and statistics unless told otherwise
        method_config = {"bands": dataset.bands, "band_stats": dataset.stats}
        method_config.update(method_kwargs or {})
        ssl = build_method(method, encoder, **method_config)
    card_extra = {
        "ssl": {"method": method, "config": ssl.config_dict()},
        "data": {"manifest": manifest, "checksum": manifest_checksum, "split": split},
    }
    return fit(ssl, dataset, cfg, resume=resume, progress=progress, card_extra=card_extra)
