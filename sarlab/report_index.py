"""reports/index.html: every run of a reports folder, its status, key metrics and links.

One static page, sortable by any column with a few lines of inline JavaScript, so a sweep
of label fractions can be ranked by its score without a server or a library. A failed or
interrupted run shows its error; a run of a sweep links to the sweep's table.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from sarlab.atomic import atomic_write_text
from sarlab.report import RUN_RECORD, read_runs, when

__all__ = ["write_index"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; } td { vertical-align: top; }
td, th { padding: .35em .8em; border-bottom: 1px solid #ddd; text-align: left; }
th { cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort="ascending"]::after { content: " ▲"; }
th[aria-sort="descending"]::after { content: " ▼"; }
.ok, .cached { color: #1a7f37; font-weight: 600; }
.failed, .interrupted { color: #cf222e; font-weight: 600; }
.running { color: #9a6700; font-weight: 600; } code { font-size: .9em; } .skipped { color: #888; }
.error { color: #cf222e; font-size: .85em; max-width: 30em; }
"""

# Click a column header to sort by it (numbers numerically, empty cells last); no library.
_SORT_JS = """
document.querySelectorAll("table.runs th").forEach(function (th, column) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var down = th.getAttribute("aria-sort") !== "descending";
    th.closest("tr").querySelectorAll("th").forEach(function (h) {
      h.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", down ? "descending" : "ascending");
    var key = function (row) {
      var cell = row.cells[column]; var v = cell ? cell.getAttribute("data-sort") : null;
      if (v === null) { v = cell ? cell.textContent.trim() : ""; }
      if (v === "") { return null; }
      return /^-?[0-9.]+([eE][+-]?[0-9]+)?$/.test(v) ? parseFloat(v) : v;
    };
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === null) return 1; if (y === null) return -1;
      var c = typeof x !== typeof y ? (typeof x === "number" ? -1 : 1)
        : (x < y ? -1 : x > y ? 1 : 0);
      return down ? -c : c;
    }).forEach(function (row) { body.appendChild(row); });
  });
});
"""
MAX_METRIC_COLUMNS = 12


def _step_links(run_dir: str, steps: list[dict[str, Any]]) -> str:
    links = []
    for step in steps:
        name = html.escape(str(step.get("name", "?")))
        status = html.escape(str(step.get("status", "")))
        report = (step.get("outputs") or {}).get("html")
        if report:
            href = html.escape(f"{run_dir}/{report}", quote=True)
            links.append(f'<a href="{href}">{name}</a> <span class="{status}">{status}</span>')
        else:
            links.append(f'{name} <span class="{status}">{status}</span>')
    return "<br>".join(links)


def _metric_columns(runs: list[dict[str, Any]]) -> list[str]:
    """The ``step.metric`` names most runs report, at most MAX_METRIC_COLUMNS of them."""
    counts: dict[str, int] = {}
    for run in runs:
        for step, metrics in (run.get("metrics") or {}).items():
            if isinstance(metrics, dict):
                for name in metrics:
                    counts[f"{step}.{name}"] = counts.get(f"{step}.{name}", 0) + 1
    ranked = sorted(counts, key=lambda k: (-counts[k], k))[:MAX_METRIC_COLUMNS]
    return sorted(ranked)


def _metric_cell(run: dict[str, Any], column: str) -> str:
    step, _, name = column.partition(".")
    value = ((run.get("metrics") or {}).get(step) or {}).get(name)
    if value is None:
        return '<td data-sort=""></td>'
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f'<td data-sort="{html.escape(str(value), quote=True)}">{html.escape(shown)}</td>'


def _run_row(run: dict[str, Any], metric_columns: list[str]) -> str:
    run_dir = run["_dir"]
    status = html.escape(str(run.get("status", "unknown")))
    git = run.get("git") or {}
    sha = str(git.get("sha") or "")[:10] + (" (dirty)" if git.get("dirty") else "")
    pipeline = run.get("pipeline") or {}
    duration = run.get("duration_s")
    target = "report.html" if (run.get("_has_report")) else RUN_RECORD
    error = run.get("error") or {}
    problem = ""
    if error and status != "ok":
        text = f"{error.get('step')}: {error.get('name')}: {error.get('message')}"
        problem = f'<div class="error">{html.escape(text[:300])}</div>'
    sweep = run.get("sweep") or {}
    sweep_cell = ""
    if sweep.get("id"):
        href = html.escape(f"{sweep['id']}/sweep.html", quote=True)
        sweep_cell = f'<a href="{href}">{html.escape(str(sweep["id"]))}</a>'
    return (
        "<tr>"
        f'<td><a href="{html.escape(run_dir, quote=True)}/{target}">{html.escape(run_dir)}</a>'
        f' <a href="{html.escape(run_dir, quote=True)}/{RUN_RECORD}">json</a></td>'
        f"<td>{html.escape(str(pipeline.get('name', '')))}</td>"
        f'<td class="{status}">{status}{problem}</td>'
        f"<td>{html.escape(when(run.get('started')))}</td>"
        f'<td data-sort="{"" if duration is None else float(duration)}">'
        f"{'' if duration is None else f'{float(duration):.1f} s'}</td>"
        + "".join(_metric_cell(run, c) for c in metric_columns)
        + f"<td>{sweep_cell}</td><td><code>{html.escape(sha)}</code></td>"
        f"<td>{_step_links(run_dir, run.get('steps') or [])}</td>"
        "</tr>"
    )


def write_index(reports_dir: str | Path) -> Path:
    """(Re)write ``reports_dir/index.html``: every run, its status, key metrics and links.

    Rows sort by any column (click its header); a failed run shows its error.
    """
    reports_dir = Path(reports_dir)
    runs = read_runs(reports_dir)
    for run in runs:
        run["_has_report"] = (reports_dir / run["_dir"] / "report.html").is_file()
    columns = _metric_columns(runs)
    rows = [_run_row(run, columns) for run in runs]
    width = 8 + len(columns)
    body = (
        "\n".join(rows)
        or f'<tr><td colspan="{width}">No runs yet: <code>make demo</code></td></tr>'
    )
    metric_heads = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sarlab reports</title>
<style>{_STYLE}</style></head>
<body><h1>sarlab reports</h1>
<p>{len(runs)} runs. Click a column header to sort.</p>
<table class="runs"><thead><tr><th>run</th><th>pipeline</th><th>status</th><th>started (UTC)</th>
<th>duration</th>{metric_heads}<th>sweep</th><th>git</th><th>steps</th></tr></thead>
<tbody>
{body}
</tbody></table><script>{_SORT_JS}</script></body></html>
"""
    return atomic_write_text(reports_dir / "index.html", page)
