"""ipywidgets front ends for JupyterLab; every one has a static twin for exported reports."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import holoviews as hv
import ipywidgets as widgets
import numpy as np

from sarlab.preprocess import linear_to_db
from sarlab.viz.plots import FILTERS, _filtered, image

__all__ = ["filter_explorer", "live_controls"]


def _show(output: widgets.Output, obj: object) -> None:
    """Replace what ``output`` shows by ``obj``.

    Sets the widget's outputs directly instead of ``with output: display(obj)``: the
    context manager hangs papermill (nteract/papermill#723), so headless runs could not
    execute a notebook holding these widgets.
    """
    output.outputs = ()
    output.append_display_data(obj)


def filter_explorer(intensity: np.ndarray, sizes: Sequence[int], looks: float) -> widgets.VBox:
    """A window-size slider redrawing the speckle filters side by side (JupyterLab).

    The report keeps :func:`sarlab.viz.plots.filter_comparison`'s HoloMap instead, whose
    slider works in static HTML.
    """
    intensity = np.asarray(intensity, dtype=np.float32)
    original = linear_to_db(intensity)
    clim = tuple(np.nanquantile(original, [0.02, 0.98]))
    slider = widgets.SelectionSlider(options=[int(s) for s in sizes], description="window")
    output = widgets.Output()

    def redraw(_change: object = None) -> None:
        size = slider.value
        panels = [image(original, "original (dB)", clim=clim)]
        panels += [
            image(linear_to_db(_filtered(intensity, name, size, looks)), name, clim=clim)
            for name in FILTERS
        ]
        _show(output, hv.Layout(panels).cols(5))

    slider.observe(redraw, names="value")
    redraw()
    return widgets.VBox([slider, output])


def live_controls(
    render: Callable[..., object], controls: dict[str, widgets.ValueWidget]
) -> widgets.VBox:
    """Sliders whose changes call ``render(**values)`` and show the result below them."""
    output = widgets.Output()

    def redraw(_change: object = None) -> None:
        _show(output, render(**{name: control.value for name, control in controls.items()}))

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox(list(controls.values())), output])
