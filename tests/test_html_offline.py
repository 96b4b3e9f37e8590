"""Offline HTML export: nothing may load over the network, code stays out, content stays in."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from importlib import resources

import nbformat
import pytest

from sarlab.html_offline import export_html, make_offline, needs_math

STATIC = resources.files("sarlab").joinpath("_static")


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []
        self.srcdocs: list[str] = []
        self.classes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.classes.extend((values.get("class") or "").split())
        url = (
            values.get("src") if tag == "script" else values.get("href") if tag == "link" else None
        )
        if url and re.match(r"\s*(https?:)?//", url, re.IGNORECASE):
            self.external.append(url)
        if tag == "iframe" and values.get("srcdoc"):
            self.srcdocs.append(values["srcdoc"])


def parse(document: str) -> _Refs:
    refs = _Refs()
    refs.feed(document)
    refs.close()
    return refs


# classes nbconvert gives rendered code inputs (and their prompts): none may appear
CODE_CLASSES = {"jp-InputArea-editor", "jp-CodeMirrorEditor", "jp-InputPrompt", "highlight"}


def code_classes(document: str) -> set[str]:
    return CODE_CLASSES & set(parse(document).classes)


def external_resources(document: str) -> list[str]:
    """Every <script src> / <link href> over http(s), in the page and in iframe srcdoc pages."""
    refs = parse(document)
    found = list(refs.external)
    for srcdoc in refs.srcdocs:
        found += external_resources(srcdoc)
    return found


def iframe_documents(document: str) -> list[str]:
    return parse(document).srcdocs


CDN_PAGE = """<!DOCTYPE html><html><head>
<script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.1.10/require.min.js"></script>
<link rel="stylesheet" href="https://cdn.example.org/theme.css">
<link rel="icon" href="//cdn.example.org/favicon.ico">
<script type="text/javascript" src="https://cdn.example.org/plotly.min.js" ></script >
<script src="local.js"></script>
</head><body><p>kept</p>
<iframe srcdoc="&lt;html&gt;&lt;head&gt;
&lt;script src=&quot;https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js&quot;&gt;&lt;/script&gt;
&lt;script src=&quot;https://code.jquery.com/jquery-3.7.1.min.js&quot;&gt;&lt;/script&gt;
&lt;link rel=&quot;stylesheet&quot; href=&quot;https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.css&quot;/&gt;
&lt;link rel=&quot;stylesheet&quot; href=&quot;https://cdn.jsdelivr.net/npm/bootstrap@5.2.2/dist/css/bootstrap.min.css&quot;/&gt;
&lt;/head&gt;&lt;body&gt;
&lt;script&gt;var map = L.map(&apos;m&apos;);&lt;/script&gt;&lt;/body&gt;&lt;/html&gt;"
 style="width:100%"></iframe>
</body></html>"""


def test_make_offline_inlines_vendored_libraries_and_removes_the_rest():
    assert len(external_resources(CDN_PAGE)) == 8  # the scanner used below sees them all
    page, report = make_offline(CDN_PAGE)
    assert external_resources(page) == []
    assert "var requirejs, require, define;" in page  # require.js itself, inlined
    assert '<script src="local.js"></script>' in page and "<p>kept</p>" in page
    assert set(report.removed) == {
        "https://cdn.example.org/theme.css",
        "//cdn.example.org/favicon.ico",
        "https://cdn.example.org/plotly.min.js",
        "https://cdn.jsdelivr.net/npm/bootstrap@5.2.2/dist/css/bootstrap.min.css",
        # the map never calls $( or jQuery, so jQuery is dropped rather than inlined
        "https://code.jquery.com/jquery-3.7.1.min.js",
    }
    (inner,) = iframe_documents(page)
    assert "Leaflet 1.9.4" in inner and ".leaflet-container" in inner
    assert "var map = L.map('m');" in inner
    # the marker images referenced by leaflet.css are data URIs, not relative files
    assert "images/layers.png" not in inner and "data:image/png;base64," in inner
    assert report.to_dict()["inlined"] == ["leaflet", "leaflet-css", "requirejs"]


def test_make_offline_keeps_jquery_where_the_map_uses_it():
    page = CDN_PAGE.replace("var map = L.map(&apos;m&apos;);", "$(document).ready(f);")
    page, report = make_offline(page)
    (inner,) = iframe_documents(page)
    assert "jQuery v3.7.1" in inner and "jquery" in report.inlined


def test_panel_stylesheets_become_inline_bokeh_models():
    from panel.io.resources import CDN_DIST

    loading = {"type": "object", "name": "ImportedStyleSheet", "id": "p1", "attributes": {}}
    loading["attributes"]["url"] = f"{CDN_DIST}css/loading.css?v=1"
    unknown = {"type": "object", "name": "ImportedStyleSheet", "id": "p2", "attributes": {}}
    unknown["attributes"]["url"] = "https://example.org/x.css"
    page = f"<script>var docs_json = {json.dumps({'roots': [loading, unknown]})};</script>"
    page, report = make_offline(page)
    docs = json.loads(page.split("var docs_json = ", 1)[1].rsplit(";</script>", 1)[0])
    first, second = docs["roots"]
    assert first["name"] == "InlineStyleSheet" and first["id"] == "p1"
    assert ".pn-loading" in first["attributes"]["css"]
    # loading.css points at ../assets/*.svg spinners: they must travel as data URIs
    assert "../assets/" not in first["attributes"]["css"]
    assert "data:image/svg+xml;base64," in first["attributes"]["css"]
    assert second == {
        "type": "object",
        "name": "InlineStyleSheet",
        "id": "p2",
        "attributes": {"css": ""},
    }
    assert report.removed == ["https://example.org/x.css"]


def _notebook(markdown: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("secret = 'SOURCE-ONLY-MARKER'\nprint('hello')")
    code.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="hello from the output\n"),
        nbformat.v4.new_output(
            "display_data",
            data={
                "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2},
                "text/plain": "IntSlider(value=3)",
            },
        ),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell(markdown), code]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def test_export_html_is_code_free_offline_and_notes_widgets():
    body, report = export_html(_notebook("# Title\n\nNo formulas here."), title="t")
    assert external_resources(body) == []
    assert "SOURCE-ONLY-MARKER" not in body
    assert code_classes(body) == set()
    assert "hello from the output" in body and "Title" in body
    assert "Interactive widget (IntSlider(value=3))" in body
    assert "html-manager" not in body and "unpkg.com" not in body
    assert "mermaid.esm" not in body and "mathjax" not in body.lower()
    assert "katex" not in report.inlined and "renderMathInElement" not in body


def test_export_html_includes_katex_only_with_math():
    nb = _notebook("Backscatter $\\sigma^0 = 10 \\log_{10} I$ in dB.")
    assert needs_math(nb) and not needs_math(_notebook("price 5 EUR"))
    body, report = export_html(nb, title="t")
    assert "katex" in report.inlined and "renderMathInElement" in body
    assert external_resources(body) == []
    # fonts travel inside the page: no url(fonts/...) left
    assert "url(fonts/" not in body and "data:font/woff2;base64," in body
    # KaTeX is a UMD bundle: it must load before require.js defines `define`
    assert body.index("renderMathInElement") < body.index("var requirejs, require, define;")


@pytest.mark.parametrize(
    "name", sorted(p.name for p in STATIC.iterdir() if p.name.endswith((".js", ".css")))
)
def test_vendored_code_can_be_inlined(name):
    text = STATIC.joinpath(name).read_text(encoding="utf-8")
    assert "</script" not in text.lower()  # would end the inline <script> early


def test_vendored_files_are_documented_and_small():
    readme = STATIC.joinpath("README.md").read_text(encoding="utf-8")
    files = [p for p in STATIC.iterdir() if p.name not in {"README.md", "LICENSES.txt"}]
    assert files
    for path in files:
        assert f"`{path.name}`" in readme, f"{path.name} is not listed in _static/README.md"
        assert len(path.read_bytes()) < 500_000
    assert sum(len(p.read_bytes()) for p in files) < 1_100_000


def test_the_checks_catch_a_default_nbconvert_export():
    """The helpers above are what the runner tests rely on: they must see CDN loads and code."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(_notebook("$x$"))
    assert any("require" in url for url in external_resources(body))
    assert code_classes(body) == CODE_CLASSES
    assert "SOURCE-ONLY-MARKER" in body


def test_bokeh_output_made_with_cdn_resources_is_flagged():
    """A figure made without INLINE resources fetches BokehJS when viewed: say so."""
    from bokeh.core.templates import AUTOLOAD_NB_JS
    from bokeh.resources import CDN

    loader = AUTOLOAD_NB_JS.render(
        js_urls=CDN.js_files, css_urls=[], js_raw=[], css_raw=[], elementid="x", force=True
    )
    _, report = make_offline(f"<script>{loader}</script>")
    bokeh_urls = [url for url in CDN.js_files if url.startswith("https://cdn.bokeh.org/")]
    assert bokeh_urls and report.online_only == bokeh_urls
    _, clean = make_offline("<script>Bokeh.embed.embed_items_notebook(docs_json)</script>")
    assert clean.online_only == []
