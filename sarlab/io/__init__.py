"""Readers that turn Sentinel-1 products and SAR datasets into self-describing xarray Datasets.

Every reader returns the sarlab convention (:mod:`sarlab.conventions`): ``backscatter``
(band, y, x) with quantity/units/polarisation attrs, NaN nodata, incidence angle where
the source has it, uint8 labels with one ignore index, and the geo-reference kept.
"""

from __future__ import annotations

from sarlab.io.ai4arctic import open_ai4arctic, write_ai4arctic
from sarlab.io.bigearthnet import bigearthnet_multi_hot, open_bigearthnet_s1
from sarlab.io.geotiff import open_geotiff, write_geotiff
from sarlab.io.safe import open_safe
from sarlab.io.samples import find_shared_data, open_speckle_sample, speckle_example
from sarlab.io.sen1floods11 import open_sen1floods11, write_sen1floods11

__all__ = [
    "MajorTOMS1Stream",
    "SSL4EOS1Stream",
    "bigearthnet_multi_hot",
    "find_shared_data",
    "open_ai4arctic",
    "open_bigearthnet_s1",
    "open_geotiff",
    "open_safe",
    "open_sen1floods11",
    "open_speckle_sample",
    "open_stream",
    "speckle_example",
    "write_ai4arctic",
    "write_geotiff",
    "write_sen1floods11",
]

# The streaming readers import torch (about 2 s): load them only when asked for.
_LAZY = {
    "MajorTOMS1Stream": "sarlab.io.majortom",
    "SSL4EOS1Stream": "sarlab.io.ssl4eo",
    "open_stream": "sarlab.io.streaming",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sarlab.io' has no attribute {name!r}")
