"""sarlab: a notebook-first lab for self-supervised learning on Sentinel-1 SAR data."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
