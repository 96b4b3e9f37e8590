"""Readers that turn Sentinel-1 products and SAR datasets into self-describing xarray Datasets.

Every reader returns the sarlab convention (:mod:`sarlab.conventions`): ``backscatter``
(band, y, x) with quantity/units/polarisation attrs, NaN nodata, incidence angle where
the source has it, uint8 labels with one ignore index, and the geo-reference kept.
"""

from __future__ import annotations

from sarlab.io.bigearthnet import bigearthnet_multi_hot, open_bigearthnet_s1
from sarlab.io.geotiff import open_geotiff, write_geotiff
from sarlab.io.safe import open_safe
from sarlab.io.samples import find_shared_data, open_speckle_sample
from sarlab.io.sen1floods11 import open_sen1floods11, write_sen1floods11

__all__ = [
    "bigearthnet_multi_hot",
    "find_shared_data",
    "open_bigearthnet_s1",
    "open_geotiff",
    "open_safe",
    "open_sen1floods11",
    "open_speckle_sample",
    "write_geotiff",
    "write_sen1floods11",
]
