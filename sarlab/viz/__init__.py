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

__all__ = [
    "db_histogram",
    "filter_comparison",
    "image",
    "incidence_dependence",
    "intensity_histogram",
    "setup_notebook_plots",
]
