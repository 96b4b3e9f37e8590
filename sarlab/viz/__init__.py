"""Plots (holoviews/hvplot, bokeh backend) and maps (leafmap in Jupyter, folium headless)."""

from __future__ import annotations

from sarlab.viz.maps import (
    cluster_colors,
    explorer,
    explorer_html,
    folium_map,
    quicklook,
    scatter_2d,
)
from sarlab.viz.plots import (
    db_histogram,
    filter_comparison,
    image,
    incidence_dependence,
    intensity_histogram,
    setup_notebook_plots,
)
from sarlab.viz.prediction_map import prediction_map, prediction_map_html
from sarlab.viz.pretrain import chip_gallery, loss_curves, method_panels, speckle_view_pairs

__all__ = [
    "chip_gallery",
    "cluster_colors",
    "db_histogram",
    "explorer",
    "explorer_html",
    "filter_comparison",
    "folium_map",
    "image",
    "incidence_dependence",
    "intensity_histogram",
    "loss_curves",
    "method_panels",
    "prediction_map",
    "prediction_map_html",
    "quicklook",
    "scatter_2d",
    "setup_notebook_plots",
    "speckle_view_pairs",
]
