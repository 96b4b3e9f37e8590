"""``sarlab run`` under torchrun: every rank executes the notebooks, rank 0 alone writes the run.

``torchrun --nproc_per_node N -m sarlab.cli run PIPELINE`` starts N runners. The training
inside the notebooks is one DistributedDataParallel job, so every rank must execute every
cell, and all of them must see one run folder: ``pretrain`` resumes from the training
state there and later steps read rank 0's checkpoint by name. Hence:

* all ranks use ``reports/<run_id>/`` (the id is ``--run-id`` or derived from
  torchrun's ``TORCHELASTIC_RUN_ID``, the same on every rank);
* rank 0 is an ordinary run (run.json, HTML, report.html, the index);
* rank r > 0 waits for rank 0's run.json, then executes the same steps with the same
  parameters into ``reports/<run_id>/ranks/rank<r>/`` (executed notebooks and a small
  ``status.json``) and writes nothing else there: no HTML, record or index;
* nothing is restored from the step cache, because a rank that restored a step while
  another trained it would leave the others waiting in a collective;
* notebooks publish artifacts and metrics on rank 0 only (:func:`is_follower`).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from sarlab.atomic import atomic_write_json
from sarlab.errors import InputError
from sarlab.pipeline import Pipeline, resolve_refs
from sarlab.report import utc_now
from sarlab.run_step import execute_notebook

__all__ = ["follow_run", "is_follower", "torchrun_rank", "torchrun_run_id"]

RANKS_DIR = "ranks"
RUN_RECORD = "run.json"


def torchrun_rank() -> tuple[int, int]:
    """(rank, world size) from the environment torchrun sets; (0, 1) outside it."""
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as error:
        raise InputError(None, f"RANK/WORLD_SIZE are not integers: {error}") from error


def is_follower() -> bool:
    """True on ranks other than 0 of a multi-process run: they must not publish artifacts."""
    rank, world = torchrun_rank()
    return world > 1 and rank > 0


def torchrun_run_id(pipeline_name: str) -> str:
    """One run id for every rank: ``<pipeline>-<torchrun's run id>``."""
    elastic = os.environ.get("TORCHELASTIC_RUN_ID", "")
    if not elastic:
        raise InputError(
            None, "several processes (WORLD_SIZE > 1) but no TORCHELASTIC_RUN_ID: give "
            "--run-id so every rank writes the same run",
        )  # fmt: skip
    return f"{pipeline_name}-{re.sub(r'[^A-Za-z0-9_.-]', '-', elastic)}"


def _wait_for_leader(run_dir: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not (run_dir / RUN_RECORD).is_file():
        if time.monotonic() > deadline:
            raise InputError(run_dir, f"rank 0 did not start this run within {timeout:g} s")
        time.sleep(0.2)


def follow_run(
    pipeline: Pipeline, run_dir: Path, rank: int, kernel: str, *, wait_s: float = 600.0
) -> dict[str, Any]:
    """Execute the pipeline's steps as rank ``rank`` beside rank 0's run; returns the status.

    Stops at the first failing step, as rank 0 does. The status (per step: ok or
    failed with the error) goes to ``ranks/rank<r>/status.json``.
    """
    _wait_for_leader(run_dir, wait_s)
    out = run_dir / RANKS_DIR / f"rank{rank}"
    out.mkdir(parents=True, exist_ok=True)
    status: dict[str, Any] = {"rank": rank, "started": utc_now(), "steps": {}, "status": "ok"}
    for step in pipeline.steps:
        _, error = execute_notebook(
            step.notebook, step.name, resolve_refs(step.parameters, run_dir), run_dir, kernel,
            timeout=step.timeout, time_limit=step.time_limit, notebook_dir=out,
        )  # fmt: skip
        status["steps"][step.name] = "ok" if error is None else {
            "status": "failed", **{k: error[k] for k in ("name", "message")}}  # fmt: skip
        if error is not None:
            status["status"] = "failed"
            break
    status["ended"] = utc_now()
    atomic_write_json(out / "status.json", status)
    return status
