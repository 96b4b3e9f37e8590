"""What a run.json records beyond parameters: hardware, data, seeds and notebook metrics.

A climate scientist reading a report, or a reviewer rerunning it a year later, needs to know
what machine produced the numbers, which data (manifest name and checksum, the dataset's
own SHA256SUMS), which seeds, and what the notebooks measured. Notebooks report their key
numbers with :func:`record_metrics`; the runner folds them into run.json after each step.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sarlab.atomic import atomic_write_json

__all__ = [
    "METRICS_DIR",
    "data_provenance",
    "hardware_info",
    "read_step_metrics",
    "record_metrics",
    "seeds_of",
]

METRICS_DIR = "metrics"  # under the run folder: <step>.json per step
SEED_NAMES = ("seed", "seeds")
MANIFEST_PARAMETERS = ("manifest", "data_manifest", "dataset")


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _gpus() -> list[str]:
    """GPU names from nvidia-smi (no torch import in the runner process)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def hardware_info() -> dict[str, Any]:
    """CPU model and cores (usable by this process), memory, GPUs, thread settings."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gb": _memory_gb(),
        "gpus": _gpus(),
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
    }


def seeds_of(steps: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``step.seed`` -> value for every seed-like parameter of every step."""
    return {
        f"{step['name']}.{name}": step["parameters"][name]
        for step in steps
        for name in SEED_NAMES
        if name in (step.get("parameters") or {})
    }


def _dataset_sums(name: str) -> str | None:
    """sha256 of the dataset's SHA256SUMS in the data dir, when it has been fetched."""
    from sarlab.io.manifest import CHECKSUM_FILE, data_dir

    sums = data_dir() / name / CHECKSUM_FILE
    return hashlib.sha256(sums.read_bytes()).hexdigest() if sums.is_file() else None


def data_provenance(steps: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every data manifest a step's parameters name, with its checksums and data folder."""
    from sarlab.io.manifest_schema import data_dir, list_manifests, manifest_checksum

    known = set(list_manifests())
    names = []
    for step in steps:
        for key, value in (step.get("parameters") or {}).items():
            if isinstance(value, str) and value in known and key in MANIFEST_PARAMETERS:
                names.append(value)
    found = []
    for name in dict.fromkeys(names):
        found.append(
            {
                "name": name,
                "manifest_sha256": manifest_checksum(name),
                "data_dir": str(data_dir() / name),
                "sha256sums_sha256": _dataset_sums(name),
            }
        )
    return found


def _plain(value: Any) -> Any:
    """JSON-safe numbers (numpy scalars, torch scalars) and containers."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None  # NaN is not JSON
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def record_metrics(metrics: Mapping[str, Any], run_dir: str | Path | None = None) -> Path:
    """Save a notebook's key metrics for its run.json, report header and the runs index.

    Call it with a few headline numbers (``{"SOD_f1_ssl": 41.2}``); calls add up (later
    values win). Outside ``sarlab run`` the file goes to the interactive run folder.
    Under torchrun only rank 0 writes (the path is returned on every rank).
    """
    from sarlab.run_ranks import is_follower

    if run_dir is None and os.environ.get("SARLAB_RUN_DIR"):
        run_dir = os.environ["SARLAB_RUN_DIR"]
    if run_dir is None:  # interactive: the kernel's run folder (imports torch, hence late)
        from sarlab.experiment import run_dir as default_run_dir

        run_dir = default_run_dir()
    folder = Path(run_dir)
    step = os.environ.get("SARLAB_STEP", "interactive")
    path = folder / METRICS_DIR / f"{step}.json"
    if is_follower():
        return path
    current = read_step_metrics(folder, step)
    current.update(_plain(dict(metrics)))
    return atomic_write_json(path, current)


def read_step_metrics(run_dir: Path, step: str) -> dict[str, Any]:
    path = Path(run_dir) / METRICS_DIR / f"{step}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
