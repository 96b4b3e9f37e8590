"""Static PNG twins of HoloViews figures, for reports read without JavaScript.

Under ``sarlab run`` every HoloViews object a notebook displays also gets an ``image/png``
rendered with the matplotlib backend (the first frame of a HoloMap, with the colour map,
limits, axis labels and title its bokeh options give), marked in the output's metadata.
The offline HTML export (:mod:`sarlab.html_offline`) places that image in a ``<noscript>``
after the interactive figure: a reader with JavaScript off, a printer that drops canvases
or a mail client still sees the figure. Interactively nothing is rendered twice.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from typing import Any

import holoviews as hv

__all__ = ["FALLBACK_KEY", "enable_static_fallbacks", "static_png"]

FALLBACK_KEY = "sarlab_static_fallback"
_SHARED_OPTIONS = (
    "cmap", "clim", "title", "xlabel", "ylabel", "logx", "logy", "invert_yaxis", "color",
    "colorbar", "alpha", "line_dash", "xlim", "ylim",
)  # fmt: skip
_DPI = 72


def _first_frames(obj: Any) -> Any:
    """A HoloMap (or one inside a layout) replaced by its first frame: one static picture."""
    if isinstance(obj, hv.HoloMap):
        return obj[obj.keys()[0]]
    if hasattr(obj, "map"):
        return obj.map(lambda h: h[h.keys()[0]], hv.HoloMap)
    return obj


def _carry_options(element: Any) -> Any:
    options: dict[str, Any] = {}
    for group in ("plot", "style"):
        try:
            found = hv.Store.lookup_options("bokeh", element, group).kwargs
        except Exception:  # an element type bokeh does not know
            continue
        options.update({k: v for k, v in found.items() if k in _SHARED_OPTIONS})
    if not options:
        return element
    try:
        return element.opts(backend="matplotlib", clone=True, **options)
    except Exception:  # an option the matplotlib twin does not take: plain defaults
        return element


@contextlib.contextmanager
def _colorbars_without_redraw() -> Iterator[None]:
    """Place colorbars by the axes' layout position instead of redrawing the figure.

    HoloViews' matplotlib backend draws the whole figure before each colorbar to learn
    where its axes ended up, so a layout of n colorbar panels costs n full draws (18
    panels: 40 s of a 55 s render). The PNG twin comes out the same without those draws.
    """
    from holoviews.plotting.mpl.element import ColorbarPlot

    original = ColorbarPlot._draw_colorbar

    def draw_colorbar(self, element=None, dimension=None, redraw=True):
        return original(self, element, dimension, redraw=False)

    ColorbarPlot._draw_colorbar = draw_colorbar
    try:
        yield
    finally:
        ColorbarPlot._draw_colorbar = original


def static_png(obj: Any) -> bytes:
    """PNG bytes of a HoloViews object drawn with the matplotlib backend."""
    import holoviews.plotting.mpl  # noqa: F401  (registers the backend once)
    import matplotlib.pyplot as plt

    if "matplotlib" not in hv.Store.renderers:
        raise RuntimeError("holoviews matplotlib backend is not available")
    twin = _first_frames(obj)
    if hasattr(twin, "map"):
        twin = twin.map(_carry_options, hv.Element)
    with warnings.catch_warnings(), _colorbars_without_redraw():
        warnings.simplefilter("ignore")
        figure = hv.render(twin, backend="matplotlib")
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def _formatter(obj: Any) -> tuple[bytes, dict[str, Any]] | None:
    try:
        return static_png(obj), {FALLBACK_KEY: True}
    except Exception:  # a fallback must never break the notebook
        return None


def enable_static_fallbacks(force: bool = False) -> bool:
    """Register the PNG twin formatter in IPython: under ``sarlab run`` or when ``force``."""
    if not (force or os.environ.get("SARLAB_RUN_DIR")):
        return False
    if os.environ.get("SARLAB_STATIC_FALLBACKS", "1") == "0":
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    formatter = shell.display_formatter.formatters["image/png"]
    formatter.for_type(hv.core.dimension.Dimensioned, _formatter)
    return True
