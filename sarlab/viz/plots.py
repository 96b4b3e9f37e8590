"""HoloViews plots for SAR teaching and reports.

Every function returns a holoviews object: interactive in JupyterLab and, with
bokeh's INLINE resources (see :func:`setup_notebook_plots`), still interactive
in the offline HTML that a Papermill run exports.
"""

from __future__ import annotations

from collections.abc import Sequence

import holoviews as hv
import holoviews.plotting.bokeh
import numpy as np
import pandas as pd
import xarray as xr
from scipy import special, stats

from sarlab.preprocess import boxcar, estimate_enl, gamma_map, lee, linear_to_db, refined_lee
from sarlab.viz.static import enable_static_fallbacks

__all__ = [
    "db_histogram",
    "filter_comparison",
    "image",
    "incidence_dependence",
    "intensity_histogram",
    "setup_notebook_plots",
]

FILTERS = ("boxcar", "lee", "refined_lee", "gamma_map")


def setup_notebook_plots() -> None:
    """Load the bokeh backend with inline JavaScript so exported HTML renders offline.

    Under ``sarlab run`` every figure also gets a static PNG twin for the report
    (:func:`sarlab.viz.static.enable_static_fallbacks`).
    """
    hv.extension("bokeh", inline=True, logo=False)
    _keep_extensions_offline()
    enable_static_fallbacks()


def _keep_extensions_offline() -> None:
    """Later extension loads must not switch the page to BokehJS from a CDN.

    ``import hvplot.pandas`` (hvplot re-imports itself in every cell) calls the extension
    again with CDN resources, which breaks an offline report. Make inline the default and
    let hvplot skip the reload when the extension is already loaded.
    """
    from holoviews.ipython import notebook_extension

    notebook_extension.inline = True
    try:
        import hvplot
    except ImportError:
        return
    if not getattr(hvplot.post_patch, "sarlab_offline", False):
        original = hvplot.post_patch

        def post_patch(extension="bokeh", logo=False, check_loaded=False):
            return original(extension, logo, check_loaded=True)

        post_patch.sarlab_offline = True  # type: ignore[attr-defined]
        hvplot.post_patch = post_patch


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel()
    return values[np.isfinite(values)]


def intensity_histogram(intensity: np.ndarray, looks: float, label: str = "") -> hv.Overlay:
    """Histogram of I / mean(I) against the Gamma(L, 1/L) density that speckle theory predicts."""
    values = _finite(intensity)
    values = values[values > 0] / values[values > 0].mean()
    edges = np.linspace(0, np.quantile(values, 0.995), 80)
    density, edges = np.histogram(values, bins=edges, density=True)
    centres = 0.5 * (edges[1:] + edges[:-1])
    pdf = stats.gamma.pdf(centres, a=looks, scale=1.0 / looks)
    histogram = hv.Histogram((edges, density), kdims="I / mean(I)", vdims="density", label=label)
    curve = hv.Curve((centres, pdf), "I / mean(I)", "density", label=f"Gamma(L={looks:.2f})")
    return (histogram.opts(alpha=0.5) * curve.opts(color="black")).opts(width=420, height=300)


def db_histogram(intensity: np.ndarray, looks: float, label: str = "") -> hv.Overlay:
    """The same speckle in dB: skewed, and its mean sits below 10 log10(mean intensity).

    The density of 10 log10(v) for v ~ Gamma(L, 1/L) is the log-gamma (Fisher-Tippett)
    law; its mean is 10/ln10 * (digamma(L) - ln L) dB below the mean in linear units.
    """
    values = _finite(intensity)
    values = values[values > 0]
    relative_db = linear_to_db(values / values.mean())
    edges = np.linspace(*np.quantile(relative_db, [0.002, 0.998]), 80)
    density, edges = np.histogram(relative_db, bins=edges, density=True)
    centres = 0.5 * (edges[1:] + edges[:-1])
    v = 10 ** (centres / 10)
    pdf = stats.gamma.pdf(v, a=looks, scale=1.0 / looks) * v * np.log(10) / 10
    bias = 10 / np.log(10) * (float(np.log(looks)) - float(special.digamma(looks)))
    histogram = hv.Histogram(
        (edges, density), kdims="dB relative to mean", vdims="density", label=label
    )
    curve = hv.Curve((centres, pdf), "dB relative to mean", "density", label="log-Gamma")
    mean_line = hv.VLine(-bias).opts(color="red", line_dash="dashed")
    title = f"mean of dB is {bias:.2f} dB below dB of mean (L={looks:.2f})"
    overlay = histogram.opts(alpha=0.5) * curve.opts(color="black") * mean_line
    return overlay.opts(width=420, height=300, title=title)


def image(
    data: xr.DataArray | np.ndarray,
    title: str = "",
    *,
    clim: tuple[float, float] | None = None,
    cmap: str = "gray",
    max_pixels: int = 512,
) -> hv.Image:
    """A raster view, block-averaged down to ``max_pixels`` on the long side for the browser."""
    array = np.asarray(data, dtype=np.float32)
    step = max(1, int(np.ceil(max(array.shape) / max_pixels)))
    if step > 1:
        ny, nx = (array.shape[0] // step) * step, (array.shape[1] // step) * step
        blocks = array[:ny, :nx].reshape(ny // step, step, nx // step, step)
        array = np.nanmean(blocks, axis=(1, 3))
    if clim is None:
        finite = array[np.isfinite(array)]
        clim = tuple(np.quantile(finite, [0.02, 0.98])) if finite.size else (0.0, 1.0)
    ny, nx = array.shape
    return hv.Image(array, bounds=(0, 0, nx * step, ny * step), label=title).opts(
        cmap=cmap,
        clim=clim,
        colorbar=True,
        width=320,
        height=300,
        title=title,
        xaxis=None,
        yaxis=None,
        tools=["hover"],
    )


def _filtered(intensity: np.ndarray, name: str, size: int, looks: float) -> np.ndarray:
    if name == "boxcar":
        return boxcar(intensity, size=size)
    if name == "lee":
        return lee(intensity, looks=looks, size=size)
    if name == "refined_lee":
        return refined_lee(intensity, looks=looks)
    if name == "gamma_map":
        return gamma_map(intensity, looks=looks, size=size)
    raise ValueError(f"unknown filter {name!r}; choose from {FILTERS}")


def filter_comparison(
    intensity: np.ndarray,
    sizes: Sequence[int],
    looks: float,
    *,
    homogeneous: np.ndarray | None = None,
) -> tuple[hv.HoloMap, pd.DataFrame]:
    """Speckle filters side by side for each window size, and their ENL/mean-bias table.

    Returns a HoloMap keyed by window size (a slider in the notebook and in the
    exported HTML) and a DataFrame with the ENL inside ``homogeneous`` (a mask;
    default the whole image) and the mean ratio to the unfiltered image, which
    shows that a filter smooths speckle without changing the radiometry.
    """
    intensity = np.asarray(intensity, dtype=np.float32)
    mask = np.ones(intensity.shape, bool) if homogeneous is None else np.asarray(homogeneous)
    original_db = linear_to_db(intensity)
    clim = tuple(np.nanquantile(original_db, [0.02, 0.98]))
    original_mean = float(np.nanmean(intensity[mask]))
    frames, rows = {}, []
    for size in sizes:
        panels = [image(original_db, "original (dB)", clim=clim)]
        for name in FILTERS:
            out = _filtered(intensity, name, int(size), looks)
            panels.append(image(linear_to_db(out), name, clim=clim))
            rows.append(
                {
                    "filter": name,
                    "window": 7 if name == "refined_lee" else int(size),
                    "ENL": estimate_enl(out, mask=mask),
                    "mean / original mean": float(np.nanmean(out[mask])) / original_mean,
                }
            )
        frames[int(size)] = hv.Layout(panels).cols(5)
    table = pd.DataFrame(rows).drop_duplicates(["filter", "window"]).reset_index(drop=True)
    table.loc[len(table)] = {
        "filter": "none",
        "window": 1,
        "ENL": estimate_enl(intensity, mask=mask),
        "mean / original mean": 1.0,
    }
    return hv.HoloMap(frames, kdims="window size"), table


def incidence_dependence(
    db: np.ndarray,
    incidence: np.ndarray,
    classes: np.ndarray | None = None,
    class_names: dict[int, str] | None = None,
    *,
    max_points: int = 4000,
    seed: int = 0,
) -> hv.Overlay:
    """Backscatter (dB) against incidence angle, per class, with least-squares lines."""
    db, incidence = np.asarray(db).ravel(), np.asarray(incidence).ravel()
    labels = np.zeros(db.shape, int) if classes is None else np.asarray(classes).ravel()
    ok = np.isfinite(db) & np.isfinite(incidence)
    rng = np.random.default_rng(seed)
    overlays = []
    for value in np.unique(labels[ok]):
        select = np.flatnonzero(ok & (labels == value))
        if select.size < 20:
            continue
        sample = rng.choice(select, size=min(max_points, select.size), replace=False)
        name = (class_names or {}).get(int(value), str(value))
        slope, intercept = np.polyfit(incidence[select], db[select], 1)
        x = np.array([incidence[select].min(), incidence[select].max()])
        overlays.append(
            hv.Scatter(
                (incidence[sample], db[sample]), "incidence angle (deg)", "dB", label=name
            ).opts(size=2, alpha=0.3)
        )
        overlays.append(
            hv.Curve(
                (x, slope * x + intercept),
                "incidence angle (deg)",
                "dB",
                label=f"{name}: {slope:+.3f} dB/deg",
            )
        )
    return hv.Overlay(overlays).opts(width=640, height=380, legend_position="right")
