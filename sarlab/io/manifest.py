"""Data manifests: one YAML per dataset that says what it is, where it comes from, and its bytes.

A manifest (``data_manifests/<name>.yaml``) carries the licence, citation and DOI, the
sensor, mode and product, what the pixels hold (``quantity`` and ``units``, one of each
for the whole dataset), the polarisations, the sarlab reader (``layout``), splits and
published normalisation statistics, then either

* ``items``: files with a pinned ``url``, ``sha256`` and ``size``: ``fetch`` downloads
  them with pooch and checks every hash;
* ``generator`` + ``seed``: a ``sarlab.`` function writes the data (the embedded demo);
  ``fetch`` runs it into a temporary folder that becomes the dataset folder only when
  complete, and records every file's sha256 in ``SHA256SUMS`` beside the data;
* ``download``: no pinned files (the dataset is tens of GB behind a portal); the user
  downloads it as described, then ``sarlab data verify NAME --write-checksums`` records
  the hashes once and every later ``verify`` checks the local copy against them.

Files of dataset NAME live in ``<data dir>/NAME/``. The data dir is ``$SARLAB_DATA_DIR``
when set (a local or shared mirror: nothing is downloaded for files already there and
valid), else ``pooch.os_cache("sarlab") / "data"`` (``~/.cache/sarlab/data`` on Linux).
Manifests are read from ``$SARLAB_MANIFEST_DIR``, else the checkout's ``data_manifests/``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pooch
import requests
from tqdm.auto import tqdm

from sarlab.atomic import atomic_directory, atomic_write_text
from sarlab.errors import ManifestError
from sarlab.io.manifest_schema import (
    GENERATOR_RE,
    LAYOUTS,
    SHA256_RE,
    Item,
    Manifest,
    check_relpath,
    data_dir,
    list_manifests,
    load_manifest,
    manifest_checksum,
    manifest_dir,
    validate_manifest,
)

__all__ = [
    "CHECKSUM_FILE",
    "LAYOUTS",
    "Item",
    "Manifest",
    "VerifyReport",
    "data_dir",
    "fetch",
    "list_manifests",
    "load_manifest",
    "manifest_checksum",
    "manifest_dir",
    "register_cli",
    "resolve_generator",
    "validate_manifest",
    "verify",
]

#: Per-dataset checksum file for generated or manually downloaded data (``sha256sum -c`` reads it).
CHECKSUM_FILE = "SHA256SUMS"


@dataclass(frozen=True)
class VerifyReport:
    """Every file checked: relative path -> sha256, and the total bytes read."""

    name: str
    root: Path
    files: dict[str, str]
    total_bytes: int
    checksum_source: str  # "manifest", or the SHA256SUMS file it was checked against


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inside(root: Path, rel: str, source: Path) -> Path:
    """``root/rel`` after checking that it (and any symlink on the way) stays under root."""
    rel = check_relpath(rel, source, "file")
    target = root / rel
    real_root, real = root.resolve(), target.resolve()
    if real != real_root and real_root not in real.parents:
        raise ManifestError(source, f"{rel} resolves to {real}, outside the data folder {root}")
    return target


def resolve_generator(spec: str) -> Callable[[Path, int], list[Path]]:
    """Import ``sarlab.module:function`` (only sarlab modules: a manifest runs no foreign code)."""
    if not GENERATOR_RE.match(spec):
        raise ManifestError(None, f"generator {spec!r} must be 'sarlab.module:function'")
    module_name, func_name = spec.split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as error:
        raise ManifestError(None, f"cannot load generator {spec}: {error}") from None
    return func


def _read_sums(path: Path) -> tuple[dict[str, str], str | None]:
    """(relative path -> sha256, recorded manifest checksum) from a SHA256SUMS file."""
    sums, recorded = {}, None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("# manifest-sha256 "):
            recorded = line.split()[-1]
        elif line.strip() and not line.startswith("#"):
            sha, sep, rel = line.partition("  ")
            if not sep or not SHA256_RE.match(sha):
                raise ManifestError(path, f"line {number} is not '<sha256>  <path>'")
            sums[rel] = sha
    return sums, recorded


def _write_sums(root: Path, manifest: Manifest, progress: bool) -> dict[str, str]:
    """Hash every file under root (the checksum file aside) into root/SHA256SUMS."""
    real_root = root.resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != CHECKSUM_FILE)
    sums = {}
    for path in tqdm(files, desc=f"sha256 {manifest.name}", disable=not progress):
        rel = path.relative_to(root).as_posix()
        _inside(real_root, rel, manifest.source)
        sums[rel] = _sha256(path)
    lines = [f"# sarlab data {manifest.name}", f"# manifest-sha256 {manifest_checksum(manifest)}"]
    lines += [f"{sha}  {rel}" for rel, sha in sums.items()]
    atomic_write_text(root / CHECKSUM_FILE, "\n".join(lines) + "\n")
    return sums


def verify(
    name: str | os.PathLike[str] | Manifest,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    write_checksums: bool = False,
    progress: bool = False,
) -> VerifyReport:
    """Recompute the sha256 of every file; a missing or changed file raises ManifestError.

    Pinned items are checked against the manifest; other datasets against their
    ``SHA256SUMS`` (written by ``fetch`` for generated data, or here with
    ``write_checksums`` after a manual download).
    """
    manifest = load_manifest(name)
    root = manifest.dataset_dir(data_dir)
    if manifest.items:
        if write_checksums:
            raise ManifestError(manifest.source, "pins sha256 per item; nothing to write")
        expected = {item.path: item.sha256 for item in manifest.items}
        origin = str(manifest.source)
        sizes = {item.path: item.size for item in manifest.items}
    else:
        sums_path = root / CHECKSUM_FILE
        if write_checksums:
            if not root.is_dir():
                raise ManifestError(root, f"no data here; download {manifest.name} first")
            _write_sums(root, manifest, progress)
        if not sums_path.is_file():
            raise ManifestError(
                sums_path,
                "missing: run `sarlab data verify "
                f"{manifest.name} --write-checksums` once after downloading",
            )
        expected, _ = _read_sums(sums_path)
        sizes, origin = {}, str(sums_path)
    files, total = {}, 0
    for rel, sha in tqdm(expected.items(), desc=f"verify {manifest.name}", disable=not progress):
        path = _inside(root, rel, manifest.source)
        if not path.is_file():
            raise ManifestError(path, f"missing (listed in {origin})")
        size = path.stat().st_size
        if sizes.get(rel) is not None and size != sizes[rel]:
            raise ManifestError(path, f"size {size} bytes, {origin} says {sizes[rel]}")
        got = _sha256(path)
        if got != sha:
            raise ManifestError(path, f"sha256 {got} does not match {sha} listed in {origin}")
        files[rel], total = got, total + size
    return VerifyReport(manifest.name, root, files, total, origin)


def _generate(manifest: Manifest, root: Path, progress: bool) -> list[Path]:
    sums_path = root / CHECKSUM_FILE
    if sums_path.is_file() and _read_sums(sums_path)[1] == manifest_checksum(manifest):
        try:
            report = verify(manifest, root.parent)
            return [root / rel for rel in report.files]
        except ManifestError:
            pass  # damaged or stale: generate afresh
    func = resolve_generator(manifest.generator or "")
    with atomic_directory(root, overwrite=True) as tmp:
        returned = [Path(p) for p in func(tmp, int(manifest.seed or 0)) or []]
        written = [(p if p.is_absolute() else tmp / p).resolve() for p in returned]
        outside = [p for p in written if tmp.resolve() not in p.parents]
        if outside:
            raise ManifestError(manifest.source, f"generator wrote {outside[0]} outside {tmp}")
        sums = _write_sums(tmp, manifest, progress)
        if not sums:
            raise ManifestError(manifest.source, f"generator {manifest.generator} wrote nothing")
        rels = [p.relative_to(tmp.resolve()).as_posix() for p in written] or list(sums)
    return [root / rel for rel in rels]


def fetch(
    name: str | os.PathLike[str] | Manifest,
    data_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Make the dataset's files present and valid under ``<data dir>/<name>/``; return them.

    Files already there with the right sha256 are not downloaded again (so a mirror in
    ``$SARLAB_DATA_DIR`` needs no network).
    """
    manifest = load_manifest(name)
    root = manifest.dataset_dir(data_dir)
    if manifest.generator:
        return _generate(manifest, root, progress)
    if not manifest.items:
        how = " ".join(manifest.raw["download"]["instructions"].split())
        raise ManifestError(
            manifest.source,
            f"no pinned files to fetch. {how} Put the files in "
            f"{root}, then run `sarlab data verify {manifest.name} "
            "--write-checksums`.",
        )
    paths = []
    for item in manifest.items:
        target = _inside(root, item.path, manifest.source)
        if not (target.is_file() and _sha256(target) == item.sha256):
            target.parent.mkdir(parents=True, exist_ok=True)
            downloader = pooch.HTTPDownloader(progressbar=progress, timeout=60)
            try:
                pooch.retrieve(
                    item.url,
                    known_hash=f"sha256:{item.sha256}",
                    fname=target.name,
                    path=target.parent,
                    downloader=downloader,
                )
            except ValueError as error:  # pooch: the sha256 of the download differs
                problem = f"download rejected ({manifest.source}): {' '.join(str(error).split())}"
                raise ManifestError(target, problem) from None
            except (OSError, requests.RequestException) as error:
                raise ManifestError(target, f"cannot download {item.url}: {error}") from None
        paths.append(target)
    return paths


def _files_kind(manifest: Manifest) -> str:
    if manifest.generator:
        return f"generated by {manifest.generator} (seed {manifest.seed})"
    count = len(manifest.items)
    return f"{count} pinned file{'s' * (count != 1)}" if count else "manual download"


def _print_info(manifest: Manifest) -> None:
    raw = manifest.raw
    parts = raw.get("parts") or {}
    layout = manifest.layout or ", ".join(f"{k}: {v['layout']}" for k, v in parts.items())
    rows = {
        "name": manifest.name,
        "file": manifest.source,
        "licence": f"{raw['licence']['id']} {raw['licence'].get('url') or ''}",
        "homepage": raw["homepage"] or "-",
        "doi": raw.get("doi") or "-",
        "sensor": " ".join(str(raw[k]) for k in ("sensor", "mode", "product") if raw[k]),
        "pixels": f"{manifest.quantity} [{manifest.units}] {','.join(manifest.polarizations)}",
        "layout": layout,
        "files": _files_kind(manifest),
        "checksum": manifest_checksum(manifest),
    }
    for key, value in rows.items():
        print(f"{key:>9}: {value}")
    print("\n" + " ".join(raw["description"].split()))
    print("\ncite:\n" + raw["citation"].rstrip())
    if raw.get("download"):
        print("\ndownload:\n" + " ".join(raw["download"]["instructions"].split()))


def _cli(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name in list_manifests():
            m = load_manifest(name)
            pixels = f"{m.quantity}[{m.units}] {','.join(m.polarizations)}"
            print(f"{name:22} {pixels:24} {m.raw['licence']['id']:26} {_files_kind(m)}")
    elif args.action == "info":
        _print_info(load_manifest(args.name))
    elif args.action == "fetch":
        paths = fetch(args.name, args.data_dir, progress=not args.no_progress)
        print(f"{len(paths)} files ready in {load_manifest(args.name).dataset_dir(args.data_dir)}")
    else:
        progress = not args.no_progress
        report = verify(
            args.name, args.data_dir, write_checksums=args.write_checksums, progress=progress
        )
        size = report.total_bytes / 1e6
        print(f"ok: {len(report.files)} files ({size:.1f} MB) match {report.checksum_source}")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """``sarlab data list|info|fetch|verify``."""
    parser = subparsers.add_parser("data", help="list, describe, fetch and verify datasets")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="the shipped manifests")
    for action, text in (
        ("info", "describe"),
        ("fetch", "download or generate"),
        ("verify", "recompute the sha256 of every file of"),
    ):
        sub = actions.add_parser(action, help=f"{text} a dataset")
        sub.add_argument("name", help="manifest name (see `sarlab data list`) or YAML path")
        if action != "info":
            sub.add_argument("--data-dir", help="default: $SARLAB_DATA_DIR or the user cache")
            sub.add_argument("--no-progress", action="store_true", help="no progress bars")
    actions.choices["verify"].add_argument(
        "--write-checksums",
        action="store_true",
        help="hash a manually downloaded copy into SHA256SUMS first",
    )
    parser.set_defaults(func=_cli)
