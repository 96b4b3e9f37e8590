"""``reports/<run_id>/report.html``: one code-free, self-contained document per pipeline run.

A climate scientist gets one file: a header card (what ran, when, on which data, with which
model, the key metrics, and the error if it failed), a table of contents, then every
step's executed notebook as a section, with its interactive plots and maps and the static
PNG fallbacks the kernel attached (see :mod:`sarlab.viz.static`). The sections are the
per-step offline HTML exports (:func:`sarlab.html_offline.export_html`) joined under one
``<head>``, so nothing is exported twice and nothing loads from the network.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sarlab.atomic import atomic_write_text

__all__ = ["REPORT_FILE", "header_card", "model_summary", "write_run_report"]

REPORT_FILE = "report.html"
_BODY = re.compile(r"<body\b[^>]*>\s*<main>", re.IGNORECASE)
_SCRIPT = re.compile(r"(<script\b[^>]*>)(.*?)(</script>)", re.IGNORECASE | re.DOTALL)
_ELEMENT_ID = re.compile(r"getElementById\('[^']*'\)")
_LIBRARY_SIZE = 100_000  # scripts this large are libraries (BokehJS + Panel: ~3 MB each)
_TITLE = re.compile(r"<title>.*?</title>", re.IGNORECASE | re.DOTALL)

_CARD_STYLE = """
.sarlab-card { font-family: system-ui, sans-serif; border: 1px solid #d0d7de;
  border-radius: 8px; padding: 1em 1.4em; margin: 1em 0 2em; background: #f6f8fa; }
.sarlab-card h1 { margin: 0 0 .2em; font-size: 1.6em; }
.sarlab-card table { border-collapse: collapse; margin: .4em 0; }
.sarlab-card td, .sarlab-card th { padding: .2em .8em .2em 0; text-align: left;
  vertical-align: top; border-bottom: 1px solid #e5e7eb; }
.sarlab-status { font-weight: 700; padding: .1em .5em; border-radius: 4px; color: #fff; }
.sarlab-status.ok, .sarlab-status.cached { background: #1a7f37; }
.sarlab-status.failed, .sarlab-status.interrupted { background: #cf222e; }
.sarlab-status.running, .sarlab-status.skipped, .sarlab-status.pending { background: #9a6700; }
.sarlab-error { border-left: 4px solid #cf222e; background: #fff5f5; padding: .5em 1em; }
.sarlab-error pre { white-space: pre-wrap; font-size: .85em; }
.sarlab-step-title { font-family: system-ui, sans-serif; border-top: 3px solid #0969da;
  padding-top: .6em; margin-top: 3em; }
.sarlab-fallback-note { color: #666; font-style: italic; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _when(timestamp: Any) -> str:
    return str(timestamp or "")[:19].replace("T", " ")


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return _esc(value)


def model_summary(run_dir: Path, steps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The model cards among the steps' artifacts, reduced to what a reader wants to know."""
    cards = []
    for step in steps:
        for relative in step.get("artifacts") or {}:
            if not relative.endswith("model_card.json") or "/compare/" in relative:
                continue
            try:
                card = json.loads((run_dir / relative).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            arch = card.get("architecture") or {}
            cards.append(
                {
                    "step": step.get("name"),
                    "path": relative.rsplit("/", 1)[0],
                    "method": (card.get("ssl") or {}).get("method"),
                    "architecture": ", ".join(
                        f"{k} {arch[k]}"
                        for k in ("embed_dim", "depth", "num_heads", "patch_size", "img_size")
                        if k in arch
                    ),
                    "bands": card.get("bands"),
                    "units": card.get("units"),
                    "quantity": card.get("quantity"),
                    "parameters": card.get("parameter_count"),
                    "training": card.get("training") or card.get("metrics"),
                    "weights_sha256": str(card.get("weights_sha256") or "")[:16],
                }
            )
    seen, unique = set(), []
    for card in cards:  # a checkpoint published twice (pretrain/ and checkpoint/) shows once
        if card["weights_sha256"] not in seen:
            seen.add(card["weights_sha256"])
            unique.append(card)
    return unique


def _rows(pairs: Sequence[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{_esc(k)}</th><td>{v}</td></tr>" for k, v in pairs)


def _metrics_table(record: Mapping[str, Any]) -> str:
    rows = []
    for step in record.get("steps") or []:
        for name, value in (step.get("metrics") or {}).items():
            rows.append(
                f"<tr><td>{_esc(step['name'])}</td><td><code>{_esc(name)}</code></td>"
                f"<td>{_number(value)}</td></tr>"
            )
    if not rows:
        return "<p>No metrics were recorded.</p>"
    head = "<tr><th>step</th><th>metric</th><th>value</th></tr>"
    return f'<table class="sarlab-metrics">{head}{"".join(rows)}</table>'


def _error_box(record: Mapping[str, Any]) -> str:
    error = record.get("error")
    if not error:
        return ""
    step = next((s for s in record.get("steps") or [] if s["name"] == error.get("step")), {})
    detail = (step.get("error") or {}).get("traceback") or ""
    cell = ((step.get("error") or {}).get("cell") or {}).get("source") or ""
    return (
        '<div class="sarlab-error"><b>This run did not finish.</b> '
        f"Step <b>{_esc(error.get('step'))}</b> raised <code>{_esc(error.get('name'))}: "
        f"{_esc(error.get('message'))}</code>"
        + (f"<details><summary>Failing cell</summary><pre>{_esc(cell)}</pre></details>"
           if cell else "")
        + (f"<details><summary>Traceback</summary><pre>{_esc(detail)}</pre></details>"
           if detail else "")
        + "</div>"
    )  # fmt: skip


def _data_line(data: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for d in data:
        files = d.get("sha256sums_sha256")
        extra = f", files {_esc(files[:12])}" if files else ""
        lines.append(
            f"<code>{_esc(d['name'])}</code> (manifest sha256 "
            f"{_esc(d['manifest_sha256'][:12])}{extra})"
        )
    return "<br>".join(lines) or "none named by the parameters"


def _model_line(run_dir: Path, steps: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        f"<b>{_esc(m['method'] or 'model')}</b> ViT ({_esc(m['architecture'])}), "
        f"bands {_esc(m['bands'])} in {_esc(m['units'])} {_esc(m['quantity'])}, "
        f"{_esc(m['parameters'])} parameters, weights {_esc(m['weights_sha256'])}… "
        f"(step {_esc(m['step'])}, <code>{_esc(m['path'])}/</code>)"
        for m in model_summary(run_dir, steps)
    ]
    return "<br>".join(lines) or "none saved"


def _machine_line(hardware: Mapping[str, Any]) -> str:
    text = (
        f"{hardware.get('cpu') or 'CPU'}, {hardware.get('usable_cores')} cores, "
        f"{hardware.get('memory_gb')} GB"
    )
    if hardware.get("gpus"):
        text += f", GPUs: {', '.join(hardware['gpus'])}"
    return _esc(text)


def _steps_table(steps: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for step in steps:
        status = _esc(step.get("status"))
        source = step.get("cached_from")
        origin = f" from <code>{_esc(source['run_id'])}</code>" if source else ""
        duration = step.get("duration_s")
        seconds = "" if duration is None else f"{float(duration):.0f} s"
        rows.append(
            f'<tr><td><a href="#step-{_esc(step["name"])}">{_esc(step["name"])}</a></td>'
            f'<td><span class="sarlab-status {status}">{status}</span>{origin}</td>'
            f"<td>{seconds}</td></tr>"
        )
    return f"<table>{''.join(rows)}</table>"


def header_card(record: Mapping[str, Any], run_dir: Path) -> str:
    """What, when, data, model, key metrics and status of a run, as an HTML block."""
    pipeline = record.get("pipeline") or {}
    status = _esc(record.get("status", "unknown"))
    git = record.get("git") or {}
    sha = (git.get("sha") or "unknown")[:10]
    sha += " (uncommitted changes)" if git.get("dirty") else ""
    duration = record.get("duration_s")
    when = f"{_esc(_when(record.get('started')))} UTC"
    when += "" if duration is None else f", {float(duration):.0f} s"
    seeds = ", ".join(f"{k}={v}" for k, v in (record.get("seeds") or {}).items())
    code = str(record.get("code_version") or "")[:12]
    what = [
        ("Pipeline", f"<code>{_esc(pipeline.get('name'))}</code>: "
                     f"{_esc(pipeline.get('description'))}"),
        ("Status", f'<span class="sarlab-status {status}">{status}</span>'),
        ("When", when),
        ("Data", _data_line(record.get("data") or [])),
        ("Model", _model_line(run_dir, record.get("steps") or [])),
        ("Seeds", _esc(seeds) or "none"),
        ("Code", f"git <code>{_esc(sha)}</code>, sarlab sources <code>{_esc(code)}</code>"),
        ("Machine", _machine_line(record.get("hardware") or {})),
    ]  # fmt: skip
    sweep = record.get("sweep")
    if sweep:
        point = ", ".join(f"{k}={v!r}" for k, v in (sweep.get("point") or {}).items())
        where = f"point {int(sweep.get('index', 0)) + 1} of {_esc(sweep.get('of'))}"
        sweep_id = _esc(sweep.get("id"))
        what.insert(1, ("Sweep", f"<code>{sweep_id}</code> {where}: <code>{_esc(point)}</code>"))
    return (
        '<section class="sarlab-card" id="sarlab-header-card">'
        f"<h1>{_esc(pipeline.get('name'))} · run <code>{_esc(record.get('run_id'))}</code></h1>"
        f"{_error_box(record)}<table>{_rows(what)}</table>"
        f"<h3>Key metrics</h3>{_metrics_table(record)}"
        f"<h3>Steps</h3>{_steps_table(record.get('steps') or [])}"
        '<p><a href="../index.html">All runs</a> · <a href="run.json">run.json</a> '
        "(parameters, versions, provenance). Figures are interactive; each also carries a "
        "static image shown when JavaScript is off.</p></section>"
    )


def _split(document: str) -> tuple[str, str]:
    """(head up to and including ``<main>``, the cells inside ``<main>``) of an export."""
    match = _BODY.search(document)
    end = document.rfind("</main>")
    if match is None or end < match.end():
        raise ValueError("not an nbconvert lab export (no <body><main>)")
    return document[: match.end()], document[match.end() : end]


def _drop_repeated_libraries(cells: str, seen: set[str]) -> str:
    """Each notebook loads BokehJS inline; one page needs it once (saves ~3 MB per section).

    A large script equal to one already on the page (but for the id of the output element
    it writes into) is left out; the figures only need the library on ``window``.
    """

    def replace(match: re.Match[str]) -> str:
        code = match.group(2)
        if len(code) < _LIBRARY_SIZE:
            return match.group(0)
        digest = hashlib.sha256(_ELEMENT_ID.sub("", code).encode()).hexdigest()
        if digest in seen:
            return "<!-- sarlab: library already loaded above -->"
        seen.add(digest)
        return match.group(0)

    return _SCRIPT.sub(replace, cells)


def write_run_report(run_dir: str | Path, record: Mapping[str, Any]) -> Path:
    """(Re)write ``run_dir/report.html`` from run.json and the steps' HTML exports."""
    run_dir = Path(run_dir)
    heads, sections, libraries = [], [], set()
    for step in record.get("steps") or []:
        name = str(step["name"])
        title = f'<h2 class="sarlab-step-title" id="step-{_esc(name)}">{_esc(name)}</h2>'
        report = (step.get("outputs") or {}).get("html")
        if not report or not (run_dir / report).is_file():
            note = {"skipped": "skipped because an earlier step failed"}.get(
                str(step.get("status")), f"no report ({_esc(step.get('status'))})"
            )
            sections.append(f"{title}<p>This step has {note}.</p>")
            continue
        head, cells = _split((run_dir / report).read_text(encoding="utf-8"))
        cells = _drop_repeated_libraries(cells, libraries)
        heads.append(head)
        sections.append(f"<section>{title}{cells}</section>")
    if heads:  # the exports share one template; keep the one that loads KaTeX if any needs it
        head = next((h for h in heads if "renderMathInElement" in h), heads[0])
    else:
        head = '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"></head><body><main>'
    pipeline = (record.get("pipeline") or {}).get("name", "")
    title = f"<title>{_esc(pipeline)} · {_esc(record.get('run_id'))}</title>"
    head = _TITLE.sub(lambda _: title, head, count=1) if _TITLE.search(head) else head
    head = head.replace("</head>", f"<style>{_CARD_STYLE}</style></head>", 1)
    document = (
        head + header_card(record, run_dir) + "".join(sections) + "</main>\n</body>\n</html>\n"
    )
    return atomic_write_text(run_dir / REPORT_FILE, document)
