"""Timing and memory measurement shared by benchmarks: step timers, tensor-memory peaks.

On CPU the process RSS is a poor measure of one model's memory: the allocator
keeps freed pages, so whatever ran before hides the next peak. :class:`TensorMemory`
instead adds up the storages of live tensors, as the CUDA caching allocator's
``max_memory_allocated`` does, by watching every operator's outputs.
"""

from __future__ import annotations

import os
import platform
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["TensorMemory", "cpu_share", "environment", "sync", "time_steps"]


def sync(device: torch.device) -> None:
    """Wait for queued device work (CUDA runs asynchronously; the CPU does not)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(
    step: Callable[[], Any], warmup: int, steps: int, device: torch.device
) -> tuple[list[float], list[float]]:
    """Wall-clock and process-CPU seconds of each of ``steps`` calls after ``warmup`` ones.

    CPU time over (wall time x threads) is the share of the CPUs the process got:
    well below 1 means other processes took the cores and the wall times are inflated.
    """
    for _ in range(warmup):
        step()
    sync(device)
    wall, cpu = [], []
    for _ in range(steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        sync(device)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def cpu_share(wall: list[float], cpu: list[float]) -> float:
    """Process CPU time over wall time x torch threads (1.0: every thread always running)."""
    return sum(cpu) / (sum(wall) * torch.get_num_threads())


class TensorMemory(TorchDispatchMode):
    """Peak bytes of tensor storages alive inside the ``with`` block.

    Tensors that exist before (parameters, optimiser state, inputs) are passed
    to :meth:`add_existing`: they count from the start, and in-place updates of
    them are not counted again. Everything an operator creates is counted until
    its storage is freed (views share their base's storage and add nothing).
    """

    def __init__(self) -> None:
        super().__init__()
        self._refs: dict[int, weakref.ref] = {}
        self.current = 0
        self.peak = 0

    def _add(self, t: Tensor) -> None:
        if t.device.type == "meta" or t.is_sparse:
            return
        storage = t.untyped_storage()
        key, size = id(storage), storage.nbytes()
        if size == 0 or key in self._refs:
            return

        def freed(_: weakref.ref, key: int = key, size: int = size) -> None:
            if self._refs.pop(key, None) is not None:
                self.current -= size

        self._refs[key] = weakref.ref(storage, freed)
        self.current += size
        self.peak = max(self.peak, self.current)

    def add_existing(self, tensors: Iterable[Any]) -> TensorMemory:
        """Count tensors that already exist (nested containers are searched)."""
        for t in tree_leaves(list(tensors)):
            if isinstance(t, Tensor):
                self._add(t.detach())
        return self

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, Tensor):
                self._add(t)
        return out


def environment(device: torch.device) -> dict[str, Any]:
    """What the numbers depend on: torch, threads, CPUs, device, current load."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = None
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "load_avg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
