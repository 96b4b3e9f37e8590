"""Reading and validating data manifests (the YAML schema of ``data_manifests/<name>.yaml``).

Kept apart from :mod:`sarlab.io.manifest` (fetch, verify, command line) so that each
stays short; users import everything from :mod:`sarlab.io.manifest`.

A manifest is rejected, with a ManifestError naming its file, when it lacks a licence
(``licence.id`` plus ``licence.url`` or ``licence.text``), mixes quantities or units
(header, parts, items and normalisation statistics must agree: one kind of pixel per
dataset), names a path that could leave the dataset folder (absolute, ``..``, drive
letters, backslashes), gives a malformed sha256, or names an unknown reader layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pooch
import yaml

from sarlab.conventions import MODES, PRODUCTS, QUANTITIES, UNITS, normalize_polarizations
from sarlab.errors import ManifestError

__all__ = [
    "LAYOUTS",
    "Item",
    "Manifest",
    "check_relpath",
    "data_dir",
    "list_manifests",
    "load_manifest",
    "manifest_checksum",
    "manifest_dir",
    "validate_manifest",
]

#: The sarlab readers a manifest may name (``layout``).
LAYOUTS = ("geotiff", "safe", "ai4arctic", "sen1floods11", "bigearthnet", "ssl4eo_s12", "major_tom")
_REQUIRED = (
    "name", "description", "licence", "citation", "homepage", "sensor", "mode", "product",
    "quantity", "units", "polarizations", "pixel_spacing_m", "layout", "splits",
    "normalization", "items",
)  # fmt: skip
_OPTIONAL = ("doi", "download", "generator", "seed", "parts", "scaling", "notes")
_PART_KEYS = ("path", "layout", "mode", "polarizations", "pixel_spacing_m", "quantity", "units")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
GENERATOR_RE = re.compile(r"^sarlab(\.[A-Za-z_]\w*)+:[A-Za-z_]\w*$")
_URL = re.compile(r"^https?://")


@dataclass(frozen=True)
class Item:
    """One pinned file: where it goes under the dataset folder, where it comes from, its hash."""

    path: str
    url: str
    sha256: str
    size: int | None


@dataclass(frozen=True)
class Manifest:
    """A validated manifest; ``raw`` is the parsed YAML (what the checksum covers)."""

    name: str
    source: Path
    quantity: str
    units: str
    polarizations: tuple[str, ...]
    layout: str | None
    items: tuple[Item, ...]
    generator: str | None
    seed: int | None
    raw: dict[str, Any] = field(repr=False)

    def dataset_dir(self, root: str | os.PathLike[str] | None = None) -> Path:
        """Where this dataset's files live: ``<data dir>/<name>``."""
        return (Path(root) if root is not None else data_dir()) / self.name


def data_dir() -> Path:
    """``$SARLAB_DATA_DIR`` (a mirror), else the user cache (``~/.cache/sarlab/data``)."""
    env = os.environ.get("SARLAB_DATA_DIR")
    return Path(env).expanduser() if env else Path(pooch.os_cache("sarlab")) / "data"


def manifest_dir() -> Path:
    """``$SARLAB_MANIFEST_DIR``, else ``data_manifests/`` of this checkout."""
    env = os.environ.get("SARLAB_MANIFEST_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data_manifests"


def list_manifests() -> list[str]:
    """Names of the shipped manifests, sorted."""
    return sorted(p.stem for p in manifest_dir().glob("*.yaml"))


def _manifest_path(name_or_path: str | os.PathLike[str]) -> Path:
    text = os.fspath(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text:
        return Path(text)
    path = manifest_dir() / f"{text}.yaml"
    if not path.is_file():
        known = ", ".join(list_manifests()) or "none"
        raise ManifestError(path, f"no manifest named {text!r}; known: {known}")
    return path


def load_manifest(name_or_path: str | os.PathLike[str] | Manifest) -> Manifest:
    """Read (``yaml.safe_load``) and validate a manifest given by name or path."""
    if isinstance(name_or_path, Manifest):
        return name_or_path
    path = _manifest_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ManifestError(path, f"cannot read manifest: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ManifestError(
            path, f"not valid YAML{at}: {getattr(error, 'problem', error)}"
        ) from None
    return validate_manifest(data, path)


def manifest_checksum(manifest: Manifest | str | os.PathLike[str]) -> str:
    """sha256 of the canonical JSON of the manifest (comments and layout do not count)."""
    raw = load_manifest(manifest).raw
    text = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _require(ok: object, source: Path, problem: str) -> None:
    if not ok:
        raise ManifestError(source, problem)


def _pols(value: Any, source: Path, what: str) -> list[str]:
    try:
        return normalize_polarizations(value or [])
    except (TypeError, ValueError) as error:
        raise ManifestError(source, f"{what}: {error}") from None


def check_relpath(rel: Any, source: Path, what: str) -> str:
    """A path that stays inside the dataset folder: relative, no '..', no drive or backslash."""
    _require(isinstance(rel, str) and rel.strip(), source, f"{what} needs a path")
    pure = PurePosixPath(rel)
    escapes = pure.is_absolute() or ".." in pure.parts or "\\" in rel or re.match(r"^\w:", rel)
    _require(not escapes, source, f"{what} path {rel!r} escapes the data folder")
    return pure.as_posix()


def _check_geometry(block: Mapping[str, Any], source: Path, what: str) -> list[str]:
    """mode, layout, polarisations and pixel spacing of the header or of one part."""
    mode, layout = block.get("mode"), block.get("layout")
    _require(mode is None or mode in MODES, source, f"{what} mode {mode!r} not in {MODES}")
    _require(layout is None or layout in LAYOUTS, source, f"unknown layout {layout!r} in {what}")
    spacing = block.get("pixel_spacing_m")
    ok = spacing is None or (isinstance(spacing, int | float) and spacing > 0)
    _require(ok, source, f"{what} pixel_spacing_m must be a positive number")
    return _pols(block.get("polarizations"), source, what)


def _check_kind(
    block: Mapping[str, Any], header: Mapping[str, Any], source: Path, what: str
) -> None:
    """quantity/units given on a part, item or statistics must be the header's."""
    for key in ("quantity", "units"):
        if block.get(key) is not None and block[key] != header[key]:
            problem = f"mixed {key}: {what} says {block[key]!r}, the header {header[key]!r}"
            raise ManifestError(source, problem)


def _check_items(data: Mapping[str, Any], source: Path) -> tuple[Item, ...]:
    _require(isinstance(data["items"], list), source, "items must be a list (may be empty)")
    items: list[Item] = []
    for i, raw in enumerate(data["items"]):
        _require(isinstance(raw, Mapping), source, f"item {i} must be a mapping")
        path = check_relpath(raw.get("path"), source, f"item {i}")
        what = f"item {i} ({path})"
        _require(path not in {item.path for item in items}, source, f"{what} is listed twice")
        url, sha, size = raw.get("url"), str(raw.get("sha256") or "").lower(), raw.get("size")
        _require(isinstance(url, str) and _URL.match(url), source, f"{what} needs an http(s) url")
        _require(SHA256_RE.match(sha), source, f"{what} sha256 {sha!r} is not 64 hex digits")
        ok = size is None or (type(size) is int and size >= 0)
        _require(ok, source, f"{what} size must be a byte count or null")
        _check_kind(raw, data, source, what)
        items.append(Item(path, url, sha, size))
    return tuple(items)


def _check_parts(data: Mapping[str, Any], pols: list[str], source: Path) -> None:
    parts = data.get("parts") or {}
    _require(isinstance(parts, Mapping), source, "parts must map part names to their fields")
    if not parts:
        _require(data["layout"] is not None, source, "unknown layout None: give layout or parts")
        _require(data["mode"] is not None, source, "missing mode")
    for part_name, part in parts.items():
        what = f"part {part_name!r}"
        _require(isinstance(part, Mapping), source, f"{what} must be a mapping")
        unknown = sorted(set(part) - set(_PART_KEYS))
        _require(not unknown, source, f"{what} has unknown keys {unknown}")
        check_relpath(part.get("path"), source, what)
        _require(part.get("layout") is not None, source, f"{what} needs a layout")
        extra = set(_check_geometry(part, source, what)) - set(pols)
        _require(not extra, source, f"{what} polarizations {sorted(extra)} not in the header")
        _check_kind(part, data, source, what)


def _check_normalization(data: Mapping[str, Any], source: Path) -> None:
    norm = data["normalization"]
    if norm is None:
        return
    _require(isinstance(norm, Mapping), source, "normalization must be a mapping or null")
    _check_kind(norm, data, source, "normalization")
    bands = _pols(norm.get("bands"), source, "normalization")
    for key in ("mean", "std"):
        values = norm.get(key)
        ok = isinstance(values, list) and len(values) == len(bands) > 0
        ok = ok and all(isinstance(v, int | float) for v in values)
        _require(ok, source, f"normalization.{key} needs one number per band {bands}")


def validate_manifest(data: Any, source: str | os.PathLike[str] = "<manifest>") -> Manifest:
    """Check a parsed manifest; every problem raises ManifestError naming ``source``."""
    source = Path(source)
    _require(isinstance(data, Mapping), source, "a manifest must be a YAML mapping")
    if "licence" not in data and "license" in data:
        raise ManifestError(source, "missing licence (sarlab manifests spell it 'licence')")
    missing = [key for key in _REQUIRED if key not in data]
    _require(not missing, source, f"missing {', '.join(missing)}")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    _require(not unknown, source, f"unknown keys {unknown}")
    name = data["name"]
    _require(isinstance(name, str) and _NAME.match(name), source, f"bad name {name!r}")
    if source.suffix in (".yaml", ".yml"):
        _require(source.stem == name, source, f"name {name!r} differs from the file name")
    lic = data["licence"]
    ok = isinstance(lic, Mapping) and lic.get("id") and (lic.get("url") or lic.get("text"))
    _require(ok, source, "missing licence: give licence.id and licence.url or licence.text")
    for key in ("description", "citation", "sensor"):
        _require(isinstance(data[key], str) and data[key].strip(), source, f"missing {key}")
    homepage = data["homepage"]
    ok = isinstance(homepage, str) and _URL.match(homepage)
    ok = ok or (homepage is None and data.get("generator") is not None)  # generated: no site
    _require(ok, source, "homepage must be an http(s) URL")
    doi = data.get("doi")
    _require(doi is None or str(doi).startswith("10."), source, f"doi {doi!r} is not a bare DOI")
    quantity, units = data["quantity"], data["units"]
    _require(quantity in QUANTITIES, source, f"unknown quantity {quantity!r}; use {QUANTITIES}")
    _require(units in UNITS, source, f"unknown units {units!r}; use {UNITS}")
    _require(data["product"] in PRODUCTS, source, f"product {data['product']!r} not in {PRODUCTS}")
    pols = _check_geometry(data, source, "header")
    _require(pols, source, "missing polarizations")
    _check_parts(data, pols, source)
    _require(isinstance(data["splits"], Mapping), source, "splits must be a mapping")
    _check_normalization(data, source)
    items = _check_items(data, source)
    generator, seed = data.get("generator"), data.get("seed")
    if generator is not None:
        ok = isinstance(generator, str) and GENERATOR_RE.match(generator)
        _require(ok, source, f"generator {generator!r} must be 'sarlab.module:function'")
        _require(type(seed) is int, source, "a generated dataset needs an integer seed")
        _require(not items, source, "a generated dataset lists no downloadable items")
    elif not items:
        download = data.get("download")
        ok = isinstance(download, Mapping) and download.get("instructions")
        _require(ok, source, "no items, no generator and no download.instructions")
    return Manifest(
        name=name,
        source=source,
        quantity=quantity,
        units=units,
        polarizations=tuple(pols),
        layout=data["layout"],
        items=items,
        generator=generator,
        seed=seed,
        raw=dict(data),
    )
