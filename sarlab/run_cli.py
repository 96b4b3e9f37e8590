"""``sarlab run``: one pipeline run, a sweep, or a rerun of a recorded run.

sarlab run pipelines/demo.yaml                     # one run (cached steps restored)
sarlab run pipelines/demo.yaml --force             # every step runs again
sarlab run pipelines/sweep-label-efficiency.yaml --workers 2
sarlab run pipelines/sweep-label-efficiency.yaml --dask tcp://scheduler:8786
sarlab run --rerun 20261206-101500-demo            # again from its run.json; compares metrics
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sarlab.errors import InputError
from sarlab.params import parse_overrides
from sarlab.pipeline import load_pipeline
from sarlab.report import RUN_RECORD, write_run_record
from sarlab.run import RunResult, run_pipeline
from sarlab.run_cache import code_version
from sarlab.run_ranks import RANKS_DIR
from sarlab.sweep import run_sweep

__all__ = ["compare_metrics", "register_cli", "rerun"]


def compare_metrics(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Exact comparison of two runs' metrics: ``{identical, differences: {step.name: [a, b]}}``."""
    differences = {}
    for step in sorted(set(before) | set(after)):
        old, new = before.get(step) or {}, after.get(step) or {}
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                differences[f"{step}.{name}"] = [old.get(name), new.get(name)]
    return {"identical": not differences and bool(before), "differences": differences}


def rerun(reports_dir: str | Path, run_id: str, *, progress: bool = True) -> RunResult:
    """Run a recorded run again (every step forced) from the pipeline text its run.json kept.

    The new run is ``<run_id>-rerun`` (``-rerun2`` ...); its run.json gets ``rerun_check``:
    whether the metrics are identical, which differ, and whether the code is the same.
    """
    reports_dir = Path(reports_dir)
    path = reports_dir / run_id / RUN_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError(path, "no run record to rerun (is the run id right?)") from error
    except ValueError as error:
        raise InputError(path, f"run record is not valid JSON: {error}") from error
    pipeline = record.get("pipeline") or {}
    if not pipeline.get("text") or not pipeline.get("path"):
        raise InputError(path, "the record does not keep its pipeline (made by an older sarlab)")
    new_id = next(
        f"{run_id}-rerun{n if n > 1 else ''}"
        for n in range(1, 1000)
        if not (reports_dir / f"{run_id}-rerun{n if n > 1 else ''}").exists()
    )
    result = run_pipeline(
        pipeline["path"], reports_dir, new_id, record.get("overrides") or {},
        text=pipeline["text"], force=True, sweep=record.get("sweep"), rerun_of=run_id,
        progress=progress,
    )  # fmt: skip
    check = compare_metrics(record.get("metrics") or {}, result.record.get("metrics") or {})
    check["same_code"] = record.get("code_version") == code_version()
    check["same_git_sha"] = (record.get("git") or {}).get("sha") == result.record["git"]["sha"]
    result.record["rerun_check"] = check
    write_run_record(result.run_dir, result.record)
    return result


def _print_steps(result: RunResult) -> None:
    for entry in result.record["steps"]:
        offline = entry.get("offline") or {}
        note = ""
        if entry.get("cached_from"):
            note = f" (restored from {entry['cached_from']['run_id']})"
        if offline.get("online_only"):
            note += " (WARNING: a figure loads BokehJS from a CDN; make it with INLINE resources)"
        elif offline.get("removed"):
            note += f" ({len(offline['removed'])} external resources left out of the HTML)"
        print(f"  {entry['name']}: {entry['status']}{note}", file=sys.stderr)


def _report_run(result: RunResult) -> int:
    if "rank" in result.record:  # a torchrun rank other than 0: rank 0 reports the run
        where = result.run_dir / RANKS_DIR / f"rank{result.record['rank']}"
        print(f"rank {result.record['rank']} of run {result.run_id}: {result.status}; "
              f"its notebooks: {where}", file=sys.stderr)  # fmt: skip
        return 0 if result.ok else 1
    _print_steps(result)
    index = result.run_dir.parent / "index.html"
    check = result.record.get("rerun_check")
    if check is not None:
        verdict = "identical" if check["identical"] else f"DIFFERENT: {check['differences']}"
        print(f"rerun of {result.record['rerun_of']}: metrics {verdict}", file=sys.stderr)
    if result.ok:
        print(f"run {result.run_id}: ok; report: {result.report} (all runs: {index})")
        return 0
    error = result.record["error"] or {}
    failed = next((s for s in result.steps if s.status == "failed"), None)
    where = failed.html if failed and failed.html else result.report
    print(
        f"run {result.run_id} FAILED in step {error.get('step')}: {error.get('name')}: "
        f"{error.get('message')}\nreport: {where}\nrun record: {result.run_dir / RUN_RECORD}",
        file=sys.stderr,
    )
    return 1


def _cli(args: argparse.Namespace) -> int:
    if args.rerun:
        if args.pipeline or args.set or args.sweep_point:
            raise InputError(None, "--rerun RUN_ID takes no pipeline and no --set")
        return _report_run(rerun(args.reports_dir, args.rerun, progress=not args.no_progress))
    if not args.pipeline:
        raise InputError(None, "give a pipeline file (or --rerun RUN_ID)")
    overrides = parse_overrides(args.set or [])
    force: bool | list[str] = bool(args.force) or list(args.force_step or [])
    if args.dry_run:
        pipeline = load_pipeline(args.pipeline, overrides)
        plan = {step.name: step.resolved_parameters() for step in pipeline.steps}
        points = list(pipeline.sweep.points) if pipeline.sweep else None
        print(json.dumps({"pipeline": pipeline.name, "steps": plan, "sweep": points},
                         indent=2, default=str))  # fmt: skip
        return 0
    if args.sweep_point:  # one point of a sweep, started by run_sweep
        payload = json.loads(args.sweep_point)
        overrides, sweep = payload["overrides"], payload["sweep"]
    else:
        sweep = None
        if load_pipeline(args.pipeline, overrides).sweep is not None:
            result = run_sweep(
                args.pipeline, args.reports_dir, overrides, workers=args.workers,
                dask_address=args.dask, sweep_id=args.run_id, force=bool(args.force),
                cache=not args.no_cache,
            )  # fmt: skip
            failed = [r for r in result.runs if r["status"] != "ok"]
            for row in result.runs:
                error = row.get("error") or {}
                why = f": {error.get('name')}: {error.get('message')}" if error else ""
                print(f"  {row['run_id']} {row['point']}: {row['status']}{why}", file=sys.stderr)
            print(f"sweep {result.sweep_id}: {len(result.runs) - len(failed)} of "
                  f"{len(result.runs)} runs ok; table: {result.folder / 'sweep.html'}")  # fmt: skip
            return 0 if not failed else 1
    result = run_pipeline(
        args.pipeline, args.reports_dir, args.run_id, overrides, progress=not args.no_progress,
        cache=not args.no_cache, force=force, sweep=sweep,
    )  # fmt: skip
    return _report_run(result)


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run a pipeline (or sweep) of notebooks, write reports/<run_id>/"
    )
    parser.add_argument("pipeline", nargs="?", help="pipeline YAML, e.g. pipelines/demo.yaml")
    parser.add_argument(
        "--run-id", help="folder name under the reports dir (default: time-pipeline)"
    )
    parser.add_argument("--reports-dir", default="reports")
    parser.add_argument(
        "--set",
        action="append",
        metavar="STEP.PARAM=VALUE",
        help="override a parameter (a YAML value); without STEP. for every step declaring it",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and print the resolved parameters"
    )
    parser.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")
    parser.add_argument("--force", action="store_true", help="rerun every step (no cache)")
    parser.add_argument(
        "--force-step", action="append", metavar="STEP", help="rerun this step (repeatable)"
    )
    parser.add_argument("--no-cache", action="store_true", help="neither use nor trust cache")
    parser.add_argument("--rerun", metavar="RUN_ID", help="run a recorded run again, compare")
    parser.add_argument("--workers", type=int, help="sweep: runs at once (default: cores)")
    parser.add_argument("--dask", metavar="ADDRESS", help="sweep: a Dask scheduler address")
    parser.add_argument("--sweep-point", help=argparse.SUPPRESS)  # internal: one sweep point
    parser.set_defaults(func=_cli)
