"""A scene's ice chart: its polygons and their SIC, SOD and FLOE, and the coast.

A scene's surface is drawn from its seed as procedural fields
(:mod:`sarlab.simulate.texture`) that can be evaluated at any map position, so the
drifting ice of a repeat pass is evaluated where it came from
(:func:`sarlab.simulate.floes.compose`). This module holds the chart level:

* chart polygons: warped Voronoi cells (15-25 km, smaller in small scenes). Each gets a
  total concentration from a large-scale ice-edge ramp (open water, then a marginal ice
  zone, then pack) with some scatter, a dominant stage of development drawn with the
  region's weights (new and young ice likelier in the marginal zone, old ice only where
  the concentration exceeds 60 %), and a floe size consistent with both (vast floes
  only at SIC 9-10). Polygons with SIC 0 are open water (SOD 0, FLOE 0).
* the coast: a rough land mask attached to the region's image edge (3-20 % of the
  scene), with a band of fast ice along it in about half of the scenes.

The pixels inside the polygons (floes, ridges, leads) are made in
:mod:`sarlab.simulate.floes`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import special

from sarlab.simulate.geometry import Grid, Region
from sarlab.simulate.texture import SmoothField, cell_centres, cell_uniform, cells, key_of

__all__ = [
    "DEFORMED_FYI",
    "FLOE_SIZE_M",
    "LAND",
    "NEW_ICE",
    "OLD_ICE",
    "OPEN_WATER",
    "THICK_FYI",
    "THIN_FYI",
    "YOUNG_ICE",
    "IceState",
    "make_state",
    "polygons",
]

OPEN_WATER, NEW_ICE, YOUNG_ICE, THIN_FYI, THICK_FYI, OLD_ICE, DEFORMED_FYI, LAND = range(8)
FLOE_SIZE_M = {1: 15.0, 2: 60.0, 3: 300.0, 4: 1200.0, 5: 5000.0}  # AutoICE FLOE code -> size
_SECONDARY = {1: 2, 2: 1, 3: 2, 4: 3, 5: 4}  # the second stage found among a stage's floes
# unit vector (map x east, y north) pointing from the coast edge into the image
_EDGES = {"left": (1.0, 0.0), "right": (-1.0, 0.0), "top": (0.0, -1.0), "bottom": (0.0, 1.0)}


@dataclass(frozen=True)
class IceState:
    """Everything the surface of one scene depends on (drawn by :func:`make_state`)."""

    seed: int
    region: Region
    centre: tuple[float, float]  # frame centre, EPSG:3413 m
    width_m: float
    pixel_m: float
    polygon_m: float
    ice_normal: tuple[float, float]  # unit vector from open water towards the pack
    edge_m: float  # ice-edge position along ice_normal from the centre
    miz_m: float  # width of the marginal ice zone
    land_threshold: float
    fast_threshold: float  # = land_threshold where there is no fast ice
    ridge_angle: float
    lead_angle: float

    def key(self, *parts: object) -> int:
        return key_of(self.seed, *parts)

    def land_score(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """High towards the region's coast edge, rough (fractal-ish) along the coast."""
        ix, iy = _EDGES[self.region.land_edge]
        inward = ((x - self.centre[0]) * ix + (y - self.centre[1]) * iy) / self.width_m + 0.5
        rough = SmoothField(self.key("land", 1), self.width_m / 2.5)(x, y)
        fine = SmoothField(self.key("land", 2), self.width_m / 10.0)(x, y)
        return -2.5 * inward + 0.45 * rough + 0.15 * fine

    def fixed(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Land and fast-ice masks (image frame: they do not drift)."""
        score = self.land_score(x, y)
        land = score > self.land_threshold
        return land, (score > self.fast_threshold) & ~land


def make_state(seed: int, region: Region, grid: Grid) -> IceState:
    """Draw a scene's surface parameters; thresholds are set on the scene's own frame."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1CE]))
    width = float(max(grid.shape) * grid.pixel_m)
    ix, iy = _EDGES[region.land_edge]
    to_coast = np.arctan2(-iy, -ix)  # map angle of the direction towards the coast
    angle = to_coast + rng.uniform(-0.7, 0.7) if rng.random() < 0.6 else rng.uniform(0, 2 * np.pi)
    land_fraction = rng.uniform(0.03, 0.2)
    fast_fraction = rng.uniform(0.01, 0.06) if rng.random() < 0.5 else 0.0
    state = IceState(
        seed=int(seed),
        region=region,
        centre=grid.centre,
        width_m=width,
        pixel_m=grid.pixel_m,
        polygon_m=float(np.clip(width / 4.0, 3e3, rng.uniform(15e3, 25e3))),
        ice_normal=(float(np.cos(angle)), float(np.sin(angle))),
        edge_m=rng.uniform(-0.7, 0.3) * width,
        miz_m=rng.uniform(0.15, 0.4) * width,
        land_threshold=0.0,
        fast_threshold=0.0,
        ridge_angle=rng.uniform(0, np.pi),
        lead_angle=rng.uniform(0, np.pi),
    )
    xs, ys = np.meshgrid(grid.x[::4], grid.y[::4])
    score = state.land_score(xs, ys)
    land_t, fast_t = np.quantile(score, [1 - land_fraction, 1 - land_fraction - fast_fraction])
    return replace(state, land_threshold=float(land_t), fast_threshold=float(fast_t))


def polygons(state: IceState, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, dict]:
    """Polygon id per point and per-polygon attributes (arrays over the unique polygons)."""
    scale = state.polygon_m
    warp_x = SmoothField(state.key("warp", "x"), scale / 1.5)(x, y)
    warp_y = SmoothField(state.key("warp", "y"), scale / 1.5)(x, y)
    pkey = state.key("polygon")
    ci, cj, _ = cells(x + 0.3 * scale * warp_x, y + 0.3 * scale * warp_y, scale, pkey)
    ids, inverse = np.unique(ci * 2**20 + (cj + 2**19), return_inverse=True)
    pi, pj = ids // 2**20, ids % 2**20 - 2**19
    px, py = cell_centres(pi, pj, scale, pkey)
    h = [cell_uniform(pi, pj, state.key("attr", k)) for k in range(6)]
    along = (px - state.centre[0]) * state.ice_normal[0] + (
        py - state.centre[1]
    ) * state.ice_normal[1]
    z = special.ndtri(np.clip(h[0], 1e-9, 1 - 1e-9))
    conc = np.clip((along - state.edge_m) / state.miz_m + 0.12 * z, 0.0, 1.0)
    sic = np.rint(10.0 * conc).astype(np.uint8)
    w = np.asarray(state.region.stage_weights)[None, :] * np.stack(
        [1 + 2 * (1 - conc), 1 + 1.5 * (1 - conc), np.ones_like(conc), conc, conc * (conc > 0.6)],
        axis=1,
    )
    cum = np.cumsum(w, axis=1) / w.sum(axis=1, keepdims=True)
    stage = (1 + (h[1][:, None] > cum).sum(axis=1)).clip(1, 5).astype(np.uint8)
    floe = _floe_codes(stage, sic, h[2])
    attrs = {
        "sic": sic,
        "sod": np.where(sic > 0, stage, 0).astype(np.uint8),
        "floe": np.where(sic > 0, floe, 0).astype(np.uint8),
        "secondary": np.vectorize(_SECONDARY.get, otypes=[np.uint8])(stage),
        "secondary_fraction": np.where(stage == 5, 0.1 + 0.15 * h[3], 0.25 * h[3]),
        "deformed": np.where(stage == 4, 0.15 + 0.3 * h[4], 0.1 + 0.3 * h[4]),
    }
    attrs["id"] = ids
    return inverse.reshape(x.shape), attrs


def _floe_codes(stage: np.ndarray, sic: np.ndarray, u: np.ndarray) -> np.ndarray:
    """A floe size consistent with stage and concentration (vast floes only in pack)."""
    young = np.where(u < 0.5, 1, 2)  # new ice: cake; young: cake or small
    thin = np.where(sic <= 4, 2 + (u < 0.5), np.where(sic <= 8, 3 + (u < 0.5), 4 + (u < 0.3)))
    thick = np.where(sic <= 6, 3 + (u < 0.6), np.where(sic <= 8, 4, 4 + (u < 0.5)))
    codes = np.select([stage == 1, stage == 2, stage == 3], [1, young, thin], thick)
    return np.where(sic >= 9, codes, np.minimum(codes, 4)).astype(np.uint8)
