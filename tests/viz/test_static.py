"""Static PNG twins: the same picture as HoloViews' own matplotlib render, drawn faster."""

from __future__ import annotations

import io

import holoviews as hv
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from sarlab.viz.static import static_png


def _layout() -> hv.Layout:
    rng = np.random.default_rng(0)
    images = [
        hv.Image(rng.normal(-15 + 3 * i, 2, (32, 32)), label=f"panel {i}", vdims="dB").opts(
            colorbar=True, cmap="gray"
        )
        for i in range(4)
    ]
    return hv.Layout(images).cols(2)


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def test_twin_matches_the_plain_matplotlib_render_with_every_colorbar():
    hv.extension("bokeh", "matplotlib", logo=False)
    hv.output(backend="bokeh")
    layout = _layout()
    ours = _pixels(static_png(layout))
    figure = hv.render(layout.map(lambda e: e.opts(backend="matplotlib", colorbar=True,
                                                    cmap="gray", clone=True), hv.Element),
                       backend="matplotlib")  # fmt: skip
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72, bbox_inches="tight")
    plt.close(figure)
    reference = _pixels(buffer.getvalue())
    assert ours.shape == reference.shape
    assert np.mean(np.abs(ours - reference)) < 1.0  # the same picture, colorbars included
