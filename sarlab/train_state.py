"""The resumable state of a run (``train_state/``) and its ``metrics.jsonl``.

``train_state/`` holds everything an uninterrupted run would still have in
memory after step k, so that a rerun continues bit for bit::

    model.safetensors   the SSL method's state dict (encoder, decoder, EMA teachers ...)
    optimizer.pt        AdamW state (torch.save of tensors and numbers; read weights_only)
    rng.safetensors     torch CPU (and CUDA) generator states, one set per rank
    state.json          step, epoch, config, method, schedule, python/numpy RNG per rank

It is written in a temporary sibling folder renamed into place, ``state.json``
last, so a kill leaves the previous state or the new one, never a mixture.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from sarlab.atomic import atomic_directory, atomic_write_text
from sarlab.errors import InputError
from sarlab.train_config import RESUME_KEYS, TrainConfig

__all__ = [
    "STATE_VERSION",
    "MetricsLog",
    "capture_rng",
    "check_resume",
    "load_train_state",
    "restore_rng",
    "save_train_state",
]

STATE_VERSION = 1
MODEL_FILE, OPTIM_FILE, RNG_FILE, STATE_FILE = (
    "model.safetensors",
    "optimizer.pt",
    "rng.safetensors",
    "state.json",
)


def capture_rng() -> dict[str, Any]:
    """This process's python, numpy, torch CPU and CUDA generator states."""
    py = random.getstate()
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    cuda = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state().clone(),
        "cuda": cuda,
    }


def restore_rng(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_train_state(
    path_dir: str | os.PathLike[str],
    method: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: Mapping[str, Any],
    rng_per_rank: list[Mapping[str, Any]],
) -> Path:
    """Write ``train_state/`` atomically (replacing the previous one only when complete)."""
    path = Path(path_dir)
    weights = {k: v.detach().cpu().clone().contiguous() for k, v in method.state_dict().items()}
    tensors, json_rng = {}, []
    for rank, rng in enumerate(rng_per_rank):
        tensors[f"rank{rank}.torch"] = rng["torch"]
        for i, s in enumerate(rng["cuda"]):
            tensors[f"rank{rank}.cuda{i}"] = s
        json_rng.append({"python": rng["python"], "numpy": rng["numpy"], "cuda": len(rng["cuda"])})
    record = {**state, "version": STATE_VERSION, "rng": json_rng}
    text = json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n"
    with atomic_directory(path, overwrite=True) as tmp:
        save_file(weights, str(tmp / MODEL_FILE), metadata={"format": "pt"})
        torch.save(optimizer.state_dict(), tmp / OPTIM_FILE)
        save_file(tensors, str(tmp / RNG_FILE))
        (tmp / STATE_FILE).write_text(text, encoding="utf-8")
        for written in tmp.iterdir():
            _fsync(written)
    return path


def load_train_state(path_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``dict(state=..., model=state_dict, optimizer=state_dict, rng=[per rank])``.

    Nothing is unpickled beyond tensors and plain containers (``weights_only``).
    """
    path = Path(path_dir)
    state_file = path / STATE_FILE
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(state_file, f"cannot read the training state: {err}") from err
    if state.get("version") != STATE_VERSION:
        raise InputError(state_file, f"training state version {state.get('version')} unknown")
    try:
        model = load_file(str(path / MODEL_FILE), device="cpu")
        rng_tensors = load_file(str(path / RNG_FILE), device="cpu")
    except (SafetensorError, OSError) as err:
        raise InputError(path, f"unreadable training state: {err}") from err
    try:
        optim = torch.load(path / OPTIM_FILE, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle/unpickling/runtime errors alike
        raise InputError(path / OPTIM_FILE, f"unreadable optimizer state: {err}") from err
    rng = []
    for rank, entry in enumerate(state["rng"]):
        rng.append(
            {
                "python": entry["python"],
                "numpy": entry["numpy"],
                "torch": rng_tensors[f"rank{rank}.torch"],
                "cuda": [rng_tensors[f"rank{rank}.cuda{i}"] for i in range(entry["cuda"])],
            }
        )
    return {"state": state, "model": model, "optimizer": optim, "rng": rng}


def check_resume(
    saved: Mapping[str, Any],
    config: TrainConfig,
    live: Mapping[str, Any],
    where: str | os.PathLike[str],
) -> None:
    """Refuse to continue a saved run under other arithmetic (:data:`RESUME_KEYS`, method, data).

    ``live`` holds this run's values of other saved keys (SSL method and config,
    dataset size); every difference is listed in the InputError.
    """
    old = TrainConfig.from_dict({**saved["config"], "out_dir": config.out_dir})
    diffs = [
        f"{k}: {getattr(old, k)!r} -> {getattr(config, k)!r}"
        for k in RESUME_KEYS
        if getattr(old, k) != getattr(config, k)
    ]
    diffs += [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in live.items() if saved.get(k) != v]
    if diffs:
        raise InputError(
            where,
            "cannot resume: this run differs from the saved one (" + "; ".join(diffs) + "); "
            "pass resume=False to start over, or use another out_dir",
        )


class MetricsLog:
    """``metrics.jsonl``: one JSON object per log step, appended and flushed as training goes.

    Opening with ``keep_until=k`` keeps the lines of steps <= k (what a run resumed
    from step k already logged) and drops later ones and any half-written last
    line, so a resumed run's file reads as if it had never been interrupted.
    """

    def __init__(self, path: str | os.PathLike[str], keep_until: int = 0) -> None:
        self.path = Path(path)
        kept = [r for r in self.read() if r["step"] <= keep_until] if keep_until > 0 else []
        atomic_write_text(self.path, "".join(self._line(r) for r in kept))
        self._handle = self.path.open("a", encoding="utf-8")

    @staticmethod
    def _line(record: Mapping[str, Any]) -> str:
        return json.dumps(dict(record), allow_nan=True) + "\n"

    def read(self) -> list[dict[str, Any]]:
        """The complete, well-formed lines of the file (a torn last line is skipped)."""
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                records.append(record)
        return records

    def write(self, record: Mapping[str, Any]) -> None:
        self._handle.write(self._line(record))
        self._handle.flush()

    def sync(self) -> None:
        """Flush to disk (called at checkpoints, so the log is never behind the state)."""
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()
