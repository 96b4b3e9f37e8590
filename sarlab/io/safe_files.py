"""The files of a Sentinel-1 SAFE product, in a folder or a .zip, found through its manifest.

``manifest.safe`` is the product's table of contents: xarray-sentinel parses it
into (kind, swath, polarisation) per listed file. Partial downloads and trimmed
copies are common (a manifest listing files that are not there), so every
listed file is checked for existence here and the reader can say exactly what
is missing. Zipped products are read in place: XML through :mod:`zipfile`,
measurement GeoTIFFs through GDAL's ``/vsizip/``, so nothing is unpacked.
"""

from __future__ import annotations

import io
import os
import posixpath
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import rasterio
from rasterio.errors import RasterioError
from xarray_sentinel import esa_safe

from sarlab.errors import InputError

__all__ = ["SafeFiles", "check_measurement"]

PathLike = str | os.PathLike[str]
_KINDS = {
    "s1Level1ProductSchema": "annotation",
    "s1Level1CalibrationSchema": "calibration",
    "s1Level1NoiseSchema": "noise",
    "s1Level1MeasurementSchema": "measurement",
}
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


@dataclass
class SafeFiles:
    """One SAFE product: where it is, what its manifest says, and which listed files exist."""

    path: Path
    zip_root: str | None  # folder inside the zip holding manifest.safe ("" at top level)
    attrs: dict[str, Any]
    # (kind, swath, pol) -> path relative to the SAFE root, for files that exist
    files: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # (kind, swath, pol) -> path relative to the SAFE root, listed but absent
    missing: dict[tuple[str, str, str], str] = field(default_factory=dict)

    @classmethod
    def open(cls, path: PathLike) -> SafeFiles:
        """Locate manifest.safe, parse it and check which of its files exist."""
        path = Path(path).expanduser().absolute()
        if path.name == "manifest.safe":
            path = path.parent
        if not path.exists():
            raise InputError(path, "no such SAFE folder or .zip")
        zip_root: str | None = None
        if path.is_file():
            if not zipfile.is_zipfile(path):
                raise InputError(path, "neither a SAFE folder nor a .zip of one")
            zip_root = _zip_root(path)
        product = cls(path=path, zip_root=zip_root, attrs={})
        if not product.exists("manifest.safe"):
            raise InputError(path, "not a SAFE product: it has no manifest.safe")
        # the uncached parser: the cached one would keep every manifest it has seen alive
        parse = esa_safe.parse_manifest_sentinel1.__wrapped__
        try:
            attrs, listed = parse(product.open_bytes("manifest.safe"))
        except (ValueError, KeyError, SyntaxError) as exc:
            raise InputError(path, f"manifest.safe is not a Sentinel-1 manifest ({exc})") from exc
        product.attrs = attrs
        for href, (rep_id, _prefix, swath, pol, _date) in listed.items():
            kind = _KINDS.get(rep_id)
            if kind is None:
                continue
            rel = posixpath.normpath(href)
            key = (kind, swath.upper(), pol.upper())
            (product.files if product.exists(rel) else product.missing)[key] = rel
        return product

    @property
    def name(self) -> str:
        """The product name (``S1A_EW_GRDM_1SDH_...``), without .SAFE or .zip."""
        base = posixpath.basename(self.zip_root.rstrip("/")) if self.zip_root else self.path.name
        for suffix in (".zip", ".SAFE", ".safe"):
            base = base.removesuffix(suffix)
        return base

    def _member(self, rel: str) -> str:
        return posixpath.join(self.zip_root or "", rel)

    def exists(self, rel: str) -> bool:
        if self.zip_root is None:
            return (self.path / rel).is_file()
        with zipfile.ZipFile(self.path) as archive:
            try:
                archive.getinfo(self._member(rel))
            except KeyError:
                return False
        return True

    def size(self, rel: str) -> int:
        if self.zip_root is None:
            return (self.path / rel).stat().st_size
        with zipfile.ZipFile(self.path) as archive:
            return archive.getinfo(self._member(rel)).file_size

    def open_bytes(self, rel: str) -> io.BytesIO:
        """The file's content as a seekable in-memory file (XML is small)."""
        if self.zip_root is None:
            return io.BytesIO((self.path / rel).read_bytes())
        with zipfile.ZipFile(self.path) as archive:
            return io.BytesIO(archive.read(self._member(rel)))

    def head(self, rel: str, n: int) -> bytes:
        """The first ``n`` bytes of a file, without reading the rest."""
        if self.zip_root is None:
            with open(self.path / rel, "rb") as handle:
                return handle.read(n)
        with zipfile.ZipFile(self.path) as archive, archive.open(self._member(rel)) as handle:
            return handle.read(n)

    def gdal_path(self, rel: str) -> str:
        """A path GDAL/rasterio can open, also for a member of the zip."""
        if self.zip_root is None:
            return str(self.path / rel)
        return f"/vsizip/{self.path}/{self._member(rel)}"

    def display(self, rel: str) -> str:
        """How error messages name a file of the product."""
        return str(self.path / rel) if self.zip_root is None else f"{self.path}!{rel}"

    def require(self, kind: str, swath: str, pol: str, hint: str = "") -> str:
        """The file of ``kind`` for (swath, pol); InputError saying whether it is listed."""
        rel = self.files.get((kind, swath, pol))
        if rel is not None:
            return rel
        listed = self.missing.get((kind, swath, pol))
        where = f"{listed} is listed in manifest.safe but missing" if listed else "none is listed"
        raise InputError(self.path, f"no {kind} file for {swath} {pol}: {where}{hint}")

    def xml(self, rel: str) -> ElementTree.Element:
        """Parsed XML file of the product (annotation, calibration, noise)."""
        try:
            return ElementTree.parse(self.open_bytes(rel)).getroot()
        except ElementTree.ParseError as exc:
            raise InputError(self.display(rel), f"is not valid XML ({exc})") from exc

    def swaths(self) -> list[str]:
        """Swaths holding at least one existing measurement, in manifest order."""
        found = {s for (kind, s, _p) in self.files if kind == "measurement"}
        listed = [s.upper() for s in self.attrs.get("swaths", [])]
        ordered = [s for s in listed if s in found]
        return ordered + sorted(found - set(ordered))

    def polarizations(self, swath: str) -> list[str]:
        """Polarisations with an existing measurement in ``swath``, in manifest order."""
        found = {p for (kind, s, p) in self.files if kind == "measurement" and s == swath}
        listed = [p.upper() for p in self.attrs.get("transmitter_receiver_polarisations", [])]
        ordered = [p for p in listed if p in found]
        return ordered + sorted(found - set(ordered))


def _zip_root(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        manifests = [n for n in archive.namelist() if posixpath.basename(n) == "manifest.safe"]
    if not manifests:
        raise InputError(path, "the zip holds no manifest.safe: not a zipped SAFE product")
    if len(manifests) > 1:
        raise InputError(path, f"the zip holds {len(manifests)} manifest.safe files; expected 1")
    return posixpath.dirname(manifests[0])


def check_measurement(product: SafeFiles, rel: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Shape and block shape of a measurement TIFF; fail now if it is cut short or not a TIFF.

    Dask reads lazily, so a truncated download would otherwise surface as an
    obscure GDAL error deep inside a computation, long after the file was opened.
    """
    where = product.display(rel)
    magic = product.head(rel, 4)
    if magic not in _TIFF_MAGIC:
        raise InputError(where, f"not a TIFF file (it starts with {magic!r})")
    size = product.size(rel)
    try:
        with rasterio.open(product.gdal_path(rel)) as src:
            height, width = src.shape
            bh, bw = src.block_shapes[0]
            ny, nx = -(-height // bh), -(-width // bw)
            offset = src.get_tag_item(f"BLOCK_OFFSET_{nx - 1}_{ny - 1}", "TIFF", bidx=1)
            nbytes = src.get_tag_item(f"BLOCK_SIZE_{nx - 1}_{ny - 1}", "TIFF", bidx=1)
            if offset and nbytes and int(offset) + int(nbytes) > size:
                raise InputError(
                    where,
                    f"truncated: its last block ends at byte {int(offset) + int(nbytes)} but the "
                    f"file has {size} bytes; download the product again",
                )
            src.read(1, window=src.block_window(1, ny - 1, nx - 1))
    except RasterioError as exc:
        raise InputError(
            where, f"cannot be read as a GeoTIFF, truncated or corrupt ({exc})"
        ) from exc
    return (height, width), (bh, bw)
