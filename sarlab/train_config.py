"""What a pretraining run is told (:class:`TrainConfig`) and hands back (:class:`TrainResult`).

The config is plain JSON (it is saved in ``train_state/state.json`` and in the
model card), so a run can be repeated or resumed from its own record.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["PRECISIONS", "RESUME_KEYS", "TrainConfig", "TrainResult"]

PRECISIONS = ("auto", "fp32", "bf16")
# Fields that change the arithmetic of a run: resuming with any of them changed would not
# continue the same run, so it is refused. The rest (logging, workers, paths) may change.
RESUME_KEYS = (
    "steps", "epochs", "batch_size", "lr", "weight_decay", "warmup_steps", "min_lr",
    "betas", "grad_clip", "seed", "precision",
)  # fmt: skip


@dataclass
class TrainConfig:
    """Settings of :func:`sarlab.train.fit`.

    ``steps`` (optimizer updates) wins over ``epochs`` when given; one epoch is
    ``len(dataset) // batch_size`` steps (the tail that does not fill a global
    batch is left out, differently each epoch). ``batch_size`` is global: each of
    ``W`` processes gets ``batch_size / W``. ``lr`` is the peak learning rate,
    reached after ``warmup_steps`` linear steps and then cosine-decayed to
    ``min_lr`` (see :func:`sarlab.train_schedule.lr_at`). ``grad_clip`` None or 0
    switches clipping off (the norm is still logged). ``checkpoint_every`` None
    or 0 writes checkpoints only at the end. ``precision`` "auto" is fp32 on CPU
    and bf16 autocast on CUDA. ``device`` "auto" takes ``cuda:LOCAL_RANK`` where
    CUDA is present, else the CPU. ``max_seconds`` (None: no limit) stops the run
    after the first step that ends that long after the loop started, with a log line
    and a checkpoint at that step; the schedule still spans all ``steps``, so a
    rerun in the same ``out_dir`` resumes exactly where the time ran out.
    """

    steps: int | None = None
    epochs: int = 1
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 50
    min_lr: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int | None = 500
    num_workers: int = 0
    precision: str = "auto"
    device: str = "auto"
    out_dir: str = "runs/pretrain"
    find_unused_parameters: bool = False
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        self.out_dir = str(self.out_dir)
        problems = []
        if self.steps is not None and int(self.steps) < 1:
            problems.append(f"steps must be >= 1, got {self.steps}")
        for name in ("epochs", "batch_size", "log_every"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "num_workers", "seed"):
            if int(getattr(self, name)) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.checkpoint_every is not None and self.checkpoint_every < 0:
            problems.append(f"checkpoint_every must be >= 0 or None, got {self.checkpoint_every}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"lr must be a positive number, got {self.lr}")
        if not (math.isfinite(self.min_lr) and 0 <= self.min_lr <= self.lr):
            problems.append(f"min_lr must be in [0, lr={self.lr}], got {self.min_lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            problems.append(f"betas must be in [0, 1), got {self.betas}")
        if self.grad_clip is not None and not self.grad_clip >= 0:
            problems.append(f"grad_clip must be >= 0 or None, got {self.grad_clip}")
        if self.max_seconds is not None and not (
            math.isfinite(self.max_seconds) and self.max_seconds > 0
        ):
            problems.append(f"max_seconds must be > 0 or None, got {self.max_seconds}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (betas as a list)."""
        out = asdict(self)
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing ones take defaults."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {unknown}; known: {sorted(names)}")
        return cls(**data)

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimizer updates of the whole run."""
        return int(self.steps) if self.steps is not None else self.epochs * steps_per_epoch


@dataclass
class TrainResult:
    """What :func:`sarlab.train.fit` did.

    ``history`` holds every line of ``metrics.jsonl`` (earlier runs of a resumed
    run included) on rank 0 and is empty on the other ranks. ``resumed_from`` is
    the step the run continued from (None for a fresh start). ``final_loss`` is
    the loss of the last log line. ``stop_reason`` is ``"completed"`` or
    ``"max_seconds"`` (stopped at ``step`` < ``total_steps`` by the time limit).
    """

    out_dir: Path
    checkpoint: Path
    train_state: Path
    metrics_path: Path
    step: int
    total_steps: int
    steps_per_epoch: int | None
    world_size: int
    resumed_from: int | None
    final_loss: float | None
    wall_time_s: float
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = "completed"
