"""Plots (holoviews/hvplot, bokeh backend) and maps (leafmap in Jupyter, folium headless)."""

from __future__ import annotations

from sarlab.viz.plots import (
    db_histogram,
    filter_comparison,
    image,
    incidence_dependence,
    intensity_histogram,
    setup_notebook_plots,
)
from sarlab.viz.pretrain import chip_gallery, loss_curves, method_panels, speckle_view_pairs

__all__ = [
    "chip_gallery",
    "db_histogram",
    "filter_comparison",
    "image",
    "incidence_dependence",
    "intensity_histogram",
    "loss_curves",
    "method_panels",
    "setup_notebook_plots",
    "speckle_view_pairs",
]
