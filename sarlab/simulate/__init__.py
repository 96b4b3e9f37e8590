"""Physically grounded Sentinel-1 scene simulator (sea ice EW HH/HV, flood IW VV/VH).

    scene = sea_ice_scene(seed=1, size=1024)          # AI4Arctic-like, with its ice chart
    later = repeat_pass(scene, seed=2)                # drifted ice, new wind and speckle
    chip = flood_chip(seed=3)                         # Sen1Floods11-like, with water label
    root = ensure_demo_data()                         # the embedded default dataset

Scenes come in the readers' convention, so :func:`sarlab.io.write_ai4arctic` and
:func:`sarlab.io.write_sen1floods11` store them in the real datasets' layouts and the
real readers open them unchanged.
"""

from __future__ import annotations

from sarlab.simulate.demo import (
    demo_layout,
    demo_scenes,
    demo_splits,
    ensure_demo_data,
    generate_demo,
)
from sarlab.simulate.flood import flood_chip, flood_pair
from sarlab.simulate.sea_ice import remove_noise, repeat_pass, sea_ice_scene

__all__ = [
    "demo_layout",
    "demo_scenes",
    "demo_splits",
    "ensure_demo_data",
    "flood_chip",
    "flood_pair",
    "generate_demo",
    "remove_noise",
    "repeat_pass",
    "sea_ice_scene",
]
