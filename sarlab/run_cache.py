"""Step caching for ``sarlab run``: a step whose inputs did not change is not run again.

A step's inputs are its notebook (bytes), the parameters it runs with, the artifacts of the
steps it needs (by content hash, not path), the code (a hash of the sarlab package source,
so uncommitted edits count) with the package versions, the data manifests its parameters
name (by checksum) and the data environment (``SARLAB_DATA_DIR``, ``SARLAB_MANIFEST_DIR``).
Data files changed in place under the same manifest are not noticed: ``--force`` then.
The hash of all this is the step's ``cache_key`` in run.json. A step that ended ``ok`` in
an earlier run of the same reports folder, with the same key and artifacts still intact
there (sha256 checked), is restored from that run: its executed notebook and artifacts are
copied into the new run folder and its HTML is exported again with the new run's header.

A step's artifacts are the files it created or changed in the run folder, found by
comparing the folder before and after the step. Parallel runs of a sweep that reach the
same step take a file lock on its key, so the step runs once and the others restore it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import sarlab
from sarlab.report import RUN_RECORD

__all__ = [
    "RUNNER_FILES",
    "artifact_digest",
    "cache_key",
    "code_version",
    "file_sha256",
    "find_cached",
    "new_artifacts",
    "restore_cached",
    "snapshot",
    "step_lock",
]

#: Files the runner itself writes into a run folder: never a step's artifacts.
RUNNER_FILES = (RUN_RECORD, "report.html")
LOCK_DIR = ".locks"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@cache
def code_version() -> str:
    """sha256 over the sarlab package's Python sources and static files (names and bytes)."""
    root = Path(sarlab.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        if path.suffix in {".pyc", ".pyo"}:
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _runner_file(relative: str, step_names: set[str]) -> bool:
    name = relative.split("/")[0]
    if name in RUNNER_FILES or name.startswith("."):
        return True
    stem, _, suffix = name.rpartition(".")
    return "/" not in relative and suffix in {"ipynb", "html"} and stem in step_names


def snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime_ns) for every file under ``run_dir``."""
    found = {}
    for path in run_dir.rglob("*"):
        if path.is_file():
            stat = path.stat()
            found[path.relative_to(run_dir).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return found


def new_artifacts(
    run_dir: Path, before: Mapping[str, tuple[int, int]], step_names: set[str]
) -> dict[str, str]:
    """Files a step created or changed (relative path -> sha256), the runner's own left out."""
    after = snapshot(run_dir)
    return {
        relative: file_sha256(run_dir / relative)
        for relative, stamp in sorted(after.items())
        if before.get(relative) != stamp and not _runner_file(relative, step_names)
    }


def artifact_digest(artifacts: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(sorted(artifacts.items()))).encode()).hexdigest()


def cache_key(
    notebook: Path,
    definition: Mapping[str, Any],
    upstream: Mapping[str, Mapping[str, str]],
    packages: Mapping[str, Any],
    kernel: str,
) -> str:
    """The hash of everything that decides what a step computes (see the module docstring).

    ``definition`` holds the step's name, declared outputs and unresolved parameters
    (``${step.output}`` stays a name, since the run folder differs between runs);
    ``upstream`` maps each needed step to its artifacts.
    """
    inputs = {
        "notebook": file_sha256(notebook),
        "step": definition,
        "upstream": {name: artifact_digest(a) for name, a in sorted(upstream.items())},
        "code": code_version(),
        "packages": dict(packages),
        "kernel": kernel,
        "data": {k: os.environ.get(k) for k in ("SARLAB_DATA_DIR", "SARLAB_MANIFEST_DIR")},
    }
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@contextmanager
def step_lock(reports_dir: Path, key: str) -> Iterator[None]:
    """Hold an exclusive lock on ``key`` (a file under ``reports_dir/.locks``)."""
    folder = reports_dir / LOCK_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{key[:32]}.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _intact(run_dir: Path, step: Mapping[str, Any]) -> bool:
    notebook = (step.get("outputs") or {}).get("notebook")
    if not notebook or not (run_dir / notebook).is_file():
        return False
    for relative, sha in (step.get("artifacts") or {}).items():
        path = run_dir / relative
        if not path.is_file() or file_sha256(path) != sha:
            return False
    return True


def find_cached(reports_dir: Path, key: str, exclude: str) -> tuple[Path, dict] | None:
    """The newest intact run folder and step entry that ran ``key`` successfully."""
    candidates = []
    for record_path in reports_dir.glob(f"*/{RUN_RECORD}"):
        if record_path.parent.name == exclude:
            continue
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for step in record.get("steps") or []:
            if step.get("cache_key") == key and step.get("status") in {"ok", "cached"}:
                candidates.append((str(step.get("ended") or ""), record_path.parent, step))
    for _, run_dir, step in sorted(candidates, key=lambda c: c[0], reverse=True):
        if _intact(run_dir, step):
            return run_dir, step
    return None


def restore_cached(source_dir: Path, step: Mapping[str, Any], run_dir: Path) -> Path:
    """Copy a cached step's executed notebook and artifacts into ``run_dir``; the notebook."""
    for relative in step.get("artifacts") or {}:
        target = run_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.restore.tmp")
        shutil.copy2(source_dir / relative, tmp)
        os.replace(tmp, target)
    notebook = step["outputs"]["notebook"]
    tmp = run_dir / f".{notebook}.restore.tmp"
    shutil.copy2(source_dir / notebook, tmp)
    os.replace(tmp, run_dir / notebook)
    return run_dir / notebook
