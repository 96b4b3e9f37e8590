"""Benchmarks: throughput and memory as ratios against a reference measured in the same run.

Each benchmark is a module here with ``run(out_dir: Path, quick: bool) -> dict``; the
result is written atomically to ``reports/bench/<name>.json``. Benchmarks are never
timed tests: they report, the tests only check that they run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import time
from pathlib import Path
from typing import Any

from sarlab.atomic import atomic_write_json

BENCHMARKS = ("chips", "pretrain", "embed")


def run_benchmark(name: str, out_dir: str | Path = "reports/bench", quick: bool = False) -> dict:
    """Run one benchmark and write ``<out_dir>/<name>.json``; returns the result."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    module = importlib.import_module(f"sarlab.benchmarks.{name}")
    out_dir = Path(out_dir)
    started = time.time()
    result: dict[str, Any] = module.run(out_dir=out_dir, quick=quick)
    result.setdefault("benchmark", name)
    result["machine"] = {"platform": platform.platform(), "processor": platform.processor()}
    result["started"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started))
    result["wall_s"] = round(time.time() - started, 3)
    atomic_write_json(out_dir / f"{name}.json", result)
    return result


def _cli(args: argparse.Namespace) -> int:
    names = BENCHMARKS if args.name == "all" else (args.name,)
    for name in names:
        result = run_benchmark(name, out_dir=args.out_dir, quick=args.quick)
        print(json.dumps(result, indent=2, default=str))
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="run benchmarks, write reports/bench/*.json")
    parser.add_argument("name", choices=(*BENCHMARKS, "all"))
    parser.add_argument("--out-dir", default="reports/bench")
    parser.add_argument("--quick", action="store_true", help="small sizes, for tests")
    parser.set_defaults(func=_cli)
