"""Code-free HTML exports of executed notebooks that render with no network at all.

Reports go to climate scientists on ships, in field stations and behind firewalls, so an
export must not need a CDN. nbconvert's lab template loads require.js, MathJax, the
Jupyter widget manager and mermaid from CDNs, and folium maps load Leaflet, jQuery and
Bootstrap from CDNs inside their iframes. Here:

- the template's CDN scripts are replaced by files vendored in ``sarlab/_static``
  (require.js; KaTeX instead of MathJax, included only when the notebook has math);
- every remaining ``<script src=http...>`` / ``<link href=http...>``, in the page and in
  iframe ``srcdoc`` documents (folium), is inlined from ``_static`` when it is a library
  we vendor (Leaflet, jQuery, Leaflet.awesome-markers) or removed and reported;
- panel's ``ImportedStyleSheet`` URLs inside Bokeh documents become inline stylesheets
  read from the installed panel package;
- ipywidgets state is dropped (the html-manager bundle is 3.6 MB): each widget output is
  replaced by a short note, the static figures carry the content.

Bokeh/HoloViews output made with INLINE resources is plain inline script and kept as is.
Map tiles are images fetched when online; offline the map shows its vector layers on grey.
"""

from __future__ import annotations

import base64
import copy
import html
import json
import mimetypes
import re
import warnings
from dataclasses import dataclass, field
from functools import cache
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import nbformat
from jinja2 import DictLoader
from nbconvert import HTMLExporter

from sarlab.viz.static import FALLBACK_KEY

__all__ = ["OfflineReport", "export_html", "make_offline", "needs_math"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_EXTERNAL = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
_IMPORTED_STYLESHEET = re.compile(
    r'\{\s*"type"\s*:\s*"object"\s*,\s*"name"\s*:\s*"ImportedStyleSheet"\s*,\s*'
    r'"id"\s*:\s*"([^"]+)"\s*,\s*"attributes"\s*:\s*\{\s*"url"\s*:\s*"(https?://[^"]+)"\s*\}\s*\}'
)
_BOKEH_CDN = re.compile(r"https?://cdn\.(?:bokeh|holoviz)\.org/[^\s\"'\\]+?\.js")
_MATH = re.compile(r"\$|\\\(|\\\[|\\begin\{")

_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}
{{ resources.sarlab_offline.math }}<script>{{ resources.sarlab_offline.requirejs }}</script>
{%- endblock html_head_js_requirejs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""

# Leaflet finds its default marker icons through a CSS url next to leaflet.css; inlined CSS
# has no such location, so the icons are handed over as data URIs.
_LEAFLET_ICONS = """
if (window.L && L.Icon && L.Icon.Default) {
  L.Icon.Default.imagePath = "";
  L.Icon.Default.mergeOptions(
    {iconUrl: "%(icon)s", iconRetinaUrl: "%(icon2x)s", shadowUrl: "%(shadow)s"});
}
"""


@dataclass
class OfflineReport:
    """What an export did to stay offline.

    ``online_only`` lists BokehJS/panel bundles that inline code still fetches from a CDN at
    view time: a figure made without INLINE resources, which will be blank offline.
    """

    inlined: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    online_only: list[str] = field(default_factory=list)
    static_fallbacks: int = 0  # figures that carry a PNG for readers without JavaScript

    def to_dict(self) -> dict[str, list[str] | int]:
        found: dict[str, list[str] | int] = {
            key: sorted(set(v)) for key, v in vars(self).items() if isinstance(v, list)
        }
        found["static_fallbacks"] = self.static_fallbacks
        return found


@dataclass(frozen=True)
class _Library:
    name: str
    url: re.Pattern[str]
    file: str
    needed: re.Pattern[str] | None = None  # inline only if the document's code uses it


_LIBRARIES = (
    _Library("requirejs", re.compile(r"/require(\.min)?\.js$"), "require.js"),
    _Library("leaflet", re.compile(r"/leaflet(-src)?(\.min)?\.js$"), "leaflet.js"),
    _Library("leaflet-css", re.compile(r"/leaflet(\.min)?\.css$"), "leaflet.css"),
    _Library(
        "jquery",
        re.compile(r"/jquery[-.\d]*(\.min)?\.js$"),
        "jquery.min.js",
        re.compile(r"\$\(|jQuery"),
    ),
    _Library(
        "awesome-markers",
        re.compile(r"/leaflet\.awesome-markers(\.min)?\.js$"),
        "leaflet.awesome-markers.js",
        re.compile("AwesomeMarkers"),
    ),
    _Library(
        "awesome-markers-css",
        re.compile(r"/leaflet\.awesome-markers(\.min)?\.css$"),
        "leaflet.awesome-markers.css",
        re.compile("AwesomeMarkers"),
    ),
)
# relative URLs inside vendored CSS -> file names in _static (which is flat)
_CSS_ASSETS = {"images/markers-": "awesome-markers-", "images/": "leaflet-", "fonts/": ""}


@cache
def _static_bytes(name: str) -> bytes:
    return resources.files("sarlab").joinpath("_static", name).read_bytes()


def _static_text(name: str) -> str:
    return _static_bytes(name).decode("utf-8")


def _data_uri(data: bytes, name: str) -> str:
    mime = mimetypes.guess_type(name)[0] or ("font/woff2" if name.endswith(".woff2") else "")
    return f"data:{mime or 'application/octet-stream'};base64,{base64.b64encode(data).decode()}"


def _static_asset(ref: str) -> bytes | None:
    """Bytes for a relative URL in vendored CSS (``images/x.png`` -> ``_static/leaflet-x.png``)."""
    ref = ref.split("?")[0].split("#")[0]
    for prefix, replacement in _CSS_ASSETS.items():
        if ref.startswith(prefix):
            name = replacement + ref[len(prefix) :]
            for candidate in (name, name.replace("@2x", "")):
                try:
                    return _static_bytes(candidate)
                except FileNotFoundError:
                    continue
    return None


def _inline_css_urls(css: str, load, depth: int = 0) -> str:
    """Relative ``url(...)`` and ``@import`` in CSS -> data URIs / contents from ``load``."""

    def imports(match: re.Match[str]) -> str:
        data = load(match.group(2))
        if data is None or depth > 3:
            return ""
        return _inline_css_urls(data.decode("utf-8"), load, depth + 1)

    css = re.sub(r"@import\s+(url\()?\s*['\"]?([^'\")\s;]+)['\"]?\s*\)?\s*;", imports, css)

    def url(match: re.Match[str]) -> str:
        ref = match.group(1)
        if ref.startswith(("data:", "#")) or _EXTERNAL.match(ref):
            return match.group(0)
        data = load(ref)
        return match.group(0) if data is None else f'url("{_data_uri(data, ref)}")'

    return re.sub(r"url\(\s*['\"]?([^'\")]+)['\"]?\s*\)", url, css)


def _vendored(library: _Library) -> str:
    """The library as an inline <script> or <style> block."""
    if library.file.endswith(".css"):
        css = _inline_css_urls(_static_text(library.file), _static_asset)
        return f"<style>\n{css}\n</style>"
    code = _static_text(library.file)
    if library.name == "leaflet":
        code += _LEAFLET_ICONS % {
            "icon": _data_uri(_static_bytes("leaflet-marker-icon.png"), "x.png"),
            "icon2x": _data_uri(_static_bytes("leaflet-marker-icon-2x.png"), "x.png"),
            "shadow": _data_uri(_static_bytes("leaflet-marker-shadow.png"), "x.png"),
        }
    return f"<script>\n{code}\n</script>"


@cache
def _math_head() -> str:
    """KaTeX (CSS, woff2 fonts as data URIs, JS, auto-render) set up like nbconvert's MathJax."""
    css = re.sub(
        r',\s*url\([^)]*\.(woff|ttf)\)\s*format\("(woff|truetype)"\)',
        "",
        _static_text("katex.min.css"),
    )
    css = _inline_css_urls(css, _static_asset)
    options = {
        "delimiters": [
            {"left": "$$", "right": "$$", "display": True},
            {"left": "\\[", "right": "\\]", "display": True},
            {"left": "$", "right": "$", "display": False},
            {"left": "\\(", "right": "\\)", "display": False},
            {"left": "\\begin{equation}", "right": "\\end{equation}", "display": True},
            {"left": "\\begin{align}", "right": "\\end{align}", "display": True},
        ],
        "throwOnError": False,
    }
    init = (
        'document.addEventListener("DOMContentLoaded", function () {'
        f" renderMathInElement(document.body, {json.dumps(options)}); }});"
    )
    return (
        f"<style>\n{css}\n</style>\n<script>\n{_static_text('katex.min.js')}\n</script>\n"
        f"<script>\n{_static_text('katex-auto-render.min.js')}\n</script>\n<script>{init}</script>\n"
    )


class _TagScanner(HTMLParser):
    """Offsets of <script>, <link> and <iframe> tags, so the document can be edited in place."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text = text
        self._line_starts = [0]
        for match in re.finditer("\n", text):
            self._line_starts.append(match.end())
        self.tags: list[dict] = []
        self._open_script: dict | None = None

    def _offset(self) -> int:
        line, col = self.getpos()
        return self._line_starts[line - 1] + col

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in {"script", "link", "iframe"}:
            return
        start = self._offset()
        end = start + len(self.get_starttag_text() or "")
        entry = {"tag": tag, "attrs": attrs, "start": start, "end": end}
        self.tags.append(entry)
        if tag == "script":
            self._open_script = entry

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._open_script is not None:
            start = self._offset()
            self._open_script["end"] = self.text.find(">", start) + 1
            self._open_script = None


def make_offline(document: str, report: OfflineReport | None = None) -> tuple[str, OfflineReport]:
    """Inline vendored libraries, remove other external scripts/stylesheets (also in srcdoc)."""
    report = report if report is not None else OfflineReport()
    document = _inline_bokeh_stylesheets(document, report)
    report.online_only.extend(_BOKEH_CDN.findall(document))
    scanner = _TagScanner(document)
    scanner.feed(document)
    scanner.close()
    edits: list[tuple[int, int, str]] = []
    done: set[str] = set()
    for tag in scanner.tags:
        attrs = dict(tag["attrs"])
        if tag["tag"] == "iframe":
            srcdoc = attrs.get("srcdoc")
            if srcdoc and re.search(r"<(script|link)\b", srcdoc, re.IGNORECASE):
                attrs["srcdoc"], _ = make_offline(srcdoc, report)
                edits.append((tag["start"], tag["end"], _start_tag("iframe", tag["attrs"], attrs)))
            continue
        url = attrs.get("src" if tag["tag"] == "script" else "href")
        if not url or not _EXTERNAL.match(url):
            continue
        library = next((lib for lib in _LIBRARIES if lib.url.search(url.split("?")[0])), None)
        if library is not None and library.needed and not library.needed.search(document):
            library = None
        if library is None:
            report.removed.append(url)
            replacement = f"<!-- sarlab: removed {html.escape(url)} (offline report) -->"
        elif library.name in done:
            replacement = ""
        else:
            done.add(library.name)
            report.inlined.append(library.name)
            replacement = _vendored(library)
        edits.append((tag["start"], tag["end"], replacement))
    for start, end, replacement in sorted(edits, reverse=True):
        document = document[:start] + replacement + document[end:]
    return document, report


def _start_tag(tag: str, original: list[tuple[str, str | None]], values: dict) -> str:
    parts = [tag]
    for key, _ in original:
        value = values[key]
        parts.append(key if value is None else f'{key}="{html.escape(value, quote=True)}"')
    return "<" + " ".join(parts) + ">"


def _inline_bokeh_stylesheets(document: str, report: OfflineReport) -> str:
    """Panel's CDN stylesheets inside Bokeh JSON -> InlineStyleSheet with the local file's CSS."""
    dist = _panel_dist()

    def replace(match: re.Match[str]) -> str:
        model_id, url = match.groups()
        css = None
        if dist is not None and url.startswith(dist[0]):
            path = dist[1] / url[len(dist[0]) :].split("?")[0]
            if path.is_file():
                css = _inline_css_urls(
                    path.read_text(encoding="utf-8"), _relative_loader(path.parent)
                )
        if css is None:
            report.removed.append(url)
            css = ""
        else:
            report.inlined.append("panel-css")
        model = {
            "type": "object",
            "name": "InlineStyleSheet",
            "id": model_id,
            "attributes": {"css": css},
        }
        return json.dumps(model).replace("</", "<\\/")

    return _IMPORTED_STYLESHEET.sub(replace, document)


def _relative_loader(folder: Path):
    def load(ref: str) -> bytes | None:
        path = (folder / ref.split("?")[0].split("#")[0]).resolve()
        return path.read_bytes() if path.is_file() else None

    return load


@cache
def _panel_dist() -> tuple[str, Path] | None:
    try:
        import panel
        from panel.io.resources import CDN_DIST
    except ImportError:
        return None
    return CDN_DIST, Path(panel.__file__).parent / "dist"


def needs_math(nb: nbformat.NotebookNode) -> bool:
    """Whether any markdown cell or rich output could hold LaTeX (then KaTeX is included)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and _MATH.search(cell.source):
            return True
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/latex" in data or _MATH.search(str(data.get("text/markdown", ""))):
                return True
    return False


def _drop_widget_state(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without ipywidgets state; each widget view becomes a short note."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                label = html.escape(str(data.get("text/plain", "widget")).strip()[:80])
                del data[WIDGET_VIEW]
                data["text/html"] = (
                    '<div class="sarlab-widget-note" style="color:#666;font-style:italic">'
                    f"Interactive widget ({label}): open the notebook in JupyterLab to use it; "
                    "the static figures in this report carry its content.</div>"
                )
    return nb


def _fold_static_fallbacks(nb: nbformat.NotebookNode) -> int:
    """Marked PNG twins of interactive figures -> a ``<noscript>`` image after the figure.

    Returns how many figures got one (see :mod:`sarlab.viz.static`).
    """
    folded = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data, meta = output.get("data", {}), output.get("metadata", {})
            marked = (meta.get("image/png") or {}).get(FALLBACK_KEY)
            if not (marked and "image/png" in data and "text/html" in data):
                continue
            png = data.pop("image/png")
            png = "".join(png) if isinstance(png, list) else png
            data["text/html"] = "".join(data["text/html"]) + (
                '<noscript><img class="sarlab-static-fallback" alt="static version of the '
                f'figure above" src="data:image/png;base64,{png.strip()}"></noscript>'
            )
            folded += 1
    return folded


def export_html(
    nb: nbformat.NotebookNode, *, title: str, source_dir: str | Path | None = None
) -> tuple[str, OfflineReport]:
    """Code-free, offline HTML for an executed notebook (inputs and prompts hidden).

    ``source_dir`` is where the notebook came from, so relative images in markdown are embedded.
    """
    nb = _drop_widget_state(nb)  # a copy: the folding below does not touch the caller's
    fallbacks = _fold_static_fallbacks(nb)
    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader({"sarlab_offline.html.j2": _TEMPLATE})],
        template_file="sarlab_offline.html.j2",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    report = OfflineReport(inlined=["requirejs"], static_fallbacks=fallbacks)
    math = _math_head() if needs_math(nb) else ""
    if math:
        report.inlined.append("katex")
    metadata = {"name": title, "path": str(source_dir) if source_dir else ""}
    offline = {"requirejs": _static_text("require.js"), "math": math}
    with warnings.catch_warnings():  # outputs only JupyterLab can show (holoviews_exec) are skipped
        warnings.filterwarnings("ignore", "Your element with mimetype", UserWarning)
        body, _ = exporter.from_notebook_node(
            nb, resources={"metadata": metadata, "sarlab_offline": offline}
        )
    return make_offline(body, report)
