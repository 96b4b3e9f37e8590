"""Data manifests: the shipped YAMLs, validation, fetch over real HTTP, verify and the CLI."""

from __future__ import annotations

import copy
import functools
import hashlib
import http.server
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

import sarlab.io.manifest as manifest_mod
from sarlab.cli import main
from sarlab.errors import ManifestError
from sarlab.io.manifest import (
    CHECKSUM_FILE,
    data_dir,
    fetch,
    list_manifests,
    load_manifest,
    manifest_checksum,
    resolve_generator,
    validate_manifest,
    verify,
)

SHIPPED = [
    "ai4arctic-rtt",
    "bigearthnet-s1",
    "demo-arctic-sim",
    "major-tom-core-s1rtc",
    "sen1floods11",
    "ssl4eo-s12-s1",
]
PAYLOAD = np.random.default_rng(7).standard_normal(4096).astype("<f4").tobytes()
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def base_manifest(name: str = "tiny", **changes) -> dict:
    """A valid download-only manifest; ``changes`` replace top-level keys."""
    data = {
        "name": name,
        "description": "A tiny test dataset.",
        "licence": {"id": "CC0-1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"},
        "citation": "Nobody (2024). Tiny.",
        "homepage": "https://example.org/tiny",
        "doi": None,
        "sensor": "Sentinel-1",
        "mode": "IW",
        "product": "GRD",
        "quantity": "sigma0",
        "units": "dB",
        "polarizations": ["VV", "VH"],
        "pixel_spacing_m": 10,
        "layout": "geotiff",
        "splits": {},
        "normalization": None,
        "download": {"instructions": "Ask the authors."},
        "items": [],
    }
    data.update(changes)
    return data


def write_manifest(folder: Path, data: dict) -> Path:
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def pinned(url: str, sha: str = PAYLOAD_SHA, **changes) -> dict:
    item = {"path": "chips/a.bin", "url": url, "sha256": sha, "size": len(PAYLOAD)}
    return base_manifest(items=[item], **changes)


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(base URL, served folder, list of requested paths): http.server on 127.0.0.1."""
    served = tmp_path / "served"
    served.mkdir()
    seen: list[str] = []
    handler = functools.partial(type("H", (_Handler,), {"requests": seen}), directory=served)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served, seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# --- the shipped manifests ------------------------------------------------------------


def test_every_shipped_manifest_is_listed():
    assert set(SHIPPED) <= set(list_manifests())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_manifest_validates(name):
    m = load_manifest(name)
    raw = m.raw
    assert m.name == name and raw["licence"]["id"] and raw["citation"].strip()
    assert re.fullmatch(r"[0-9a-f]{64}", manifest_checksum(m))
    # each says how to get its bytes: pinned sha256 items, a generator, or instructions
    assert m.items or m.generator or raw["download"]["instructions"].strip()
    if m.generator is None:
        assert raw["homepage"].startswith("https://")


def test_shipped_manifests_state_units_per_dataset():
    kinds = {n: (load_manifest(n).quantity, load_manifest(n).units) for n in SHIPPED}
    assert kinds["major-tom-core-s1rtc"] == ("gamma0", "linear")
    assert kinds["sen1floods11"] == ("sigma0", "dB")
    demo = load_manifest("demo-arctic-sim")
    assert demo.generator == "sarlab.simulate.demo:generate_demo" and demo.seed == 0
    parts = demo.raw["parts"]
    assert parts["sea_ice"]["polarizations"] == ["HH", "HV"]
    assert parts["flood"]["polarizations"] == ["VV", "VH"]
    stats = load_manifest("ssl4eo-s12-s1").raw["normalization"]
    assert stats["bands"] == ["VV", "VH"] and stats["mean"][0] == pytest.approx(-12.54847273)


def test_checksum_ignores_comments_but_not_content(tmp_path):
    path = write_manifest(tmp_path, base_manifest())
    first = manifest_checksum(path)
    path.write_text("# a comment\n" + path.read_text(), encoding="utf-8")
    assert manifest_checksum(path) == first
    write_manifest(tmp_path, base_manifest(description="Changed."))
    assert manifest_checksum(path) != first


# --- validation: each rejection names the manifest file -----------------------------


def _rejected(tmp_path: Path, data: dict, match: str) -> None:
    path = write_manifest(tmp_path, data)
    with pytest.raises(ManifestError, match=match) as info:
        load_manifest(path)
    assert str(path) in str(info.value)


def test_rejects_missing_licence(tmp_path):
    data = base_manifest()
    del data["licence"]
    _rejected(tmp_path, data, "missing licence")


def test_rejects_licence_without_url_or_text_and_us_spelling(tmp_path):
    _rejected(tmp_path, base_manifest(licence={"id": "MIT"}), "missing licence")
    data = base_manifest()
    data["license"] = data.pop("licence")
    _rejected(tmp_path, data, "spell it 'licence'")


def test_rejects_mixed_units_in_items(tmp_path):
    data = pinned("https://example.org/a.bin")
    data["items"][0]["units"] = "linear"
    _rejected(tmp_path, data, "mixed units: item 0 .*'linear'.*'dB'")


def test_rejects_mixed_quantity_in_parts_and_units_in_statistics(tmp_path):
    parts = {"a": {"path": "a", "layout": "geotiff", "quantity": "gamma0"}}
    _rejected(tmp_path, base_manifest(parts=parts), "mixed quantity: part 'a'")
    stats = {"bands": ["VV"], "units": "linear", "mean": [0.1], "std": [0.2]}
    _rejected(tmp_path, base_manifest(normalization=stats), "mixed units: normalization")


@pytest.mark.parametrize("bad", ["../outside.bin", "/etc/passwd", "a/../../b", "C:/x", "a\\b"])
def test_rejects_paths_outside_the_data_dir(tmp_path, bad):
    data = pinned("https://example.org/a.bin")
    data["items"][0]["path"] = bad
    _rejected(tmp_path, data, "escapes the data folder")


def test_rejects_malformed_sha256_and_unknown_layout(tmp_path):
    _rejected(tmp_path, pinned("https://x.org/a", sha="abc123"), "not 64 hex digits")
    _rejected(tmp_path, base_manifest(layout="netcdf"), "unknown layout 'netcdf'")
    _rejected(tmp_path, base_manifest(quantity="brightness"), "unknown quantity")


def test_rejects_malformed_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nlicence: {id: [unclosed\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="not valid YAML at line") as info:
        load_manifest(path)
    assert str(path) in str(info.value)


def test_rejects_name_that_differs_from_file_and_unknown_keys(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(base_manifest()), encoding="utf-8")
    with pytest.raises(ManifestError, match="differs from the file name"):
        load_manifest(path)
    _rejected(tmp_path, base_manifest(licnese="typo"), r"unknown keys \['licnese'\]")


def test_rejects_foreign_generator(tmp_path):
    data = base_manifest(generator="os:system", seed=0)
    _rejected(tmp_path, data, r"must be 'sarlab\.module:function'")
    with pytest.raises(ManifestError, match=r"must be 'sarlab\.module:function'"):
        resolve_generator("subprocess:run")


def test_validate_manifest_accepts_a_mapping_in_memory():
    m = validate_manifest(base_manifest())
    assert m.source == Path("<manifest>")
    assert m.layout == "geotiff" and m.polarizations == ("VV", "VH") and m.items == ()


# --- fetch over a real HTTP server, verify ------------------------------------------


def test_fetch_downloads_verifies_and_skips_when_present(tmp_path, server):
    url, served, seen = server
    (served / "a.bin").write_bytes(PAYLOAD)
    path = write_manifest(tmp_path, pinned(f"{url}/a.bin"))
    root = tmp_path / "data"
    [got] = fetch(path, root, progress=False)
    assert got == root / "tiny" / "chips" / "a.bin" and got.read_bytes() == PAYLOAD
    assert seen == ["/a.bin"]
    report = verify(path, root)
    assert report.files == {"chips/a.bin": PAYLOAD_SHA} and report.total_bytes == len(PAYLOAD)
    fetch(path, root, progress=False)
    assert seen == ["/a.bin"]  # present and valid: not downloaded again


def test_fetch_rejects_a_corrupted_download(tmp_path, server):
    url, served, _ = server
    (served / "a.bin").write_bytes(PAYLOAD[:-4] + b"XXXX")
    path = write_manifest(tmp_path, pinned(f"{url}/a.bin"))
    with pytest.raises(ManifestError, match="download rejected") as info:
        fetch(path, tmp_path / "data", progress=False)
    assert "a.bin" in str(info.value) and PAYLOAD_SHA in str(info.value).lower()
    assert not (tmp_path / "data" / "tiny" / "chips" / "a.bin").exists()


def test_verify_names_file_and_both_hashes_then_fetch_repairs(tmp_path, server):
    url, served, seen = server
    (served / "a.bin").write_bytes(PAYLOAD)
    path = write_manifest(tmp_path, pinned(f"{url}/a.bin"))
    root = tmp_path / "data"
    target = fetch(path, root, progress=False)[0]
    bad = PAYLOAD[::-1]
    target.write_bytes(bad)
    with pytest.raises(ManifestError) as info:
        verify(path, root)
    message = str(info.value)
    assert str(target) in message and str(path) in message
    assert PAYLOAD_SHA in message and hashlib.sha256(bad).hexdigest() in message
    fetch(path, root, progress=False)
    assert len(seen) == 2 and verify(path, root).files["chips/a.bin"] == PAYLOAD_SHA


def test_mirror_in_sarlab_data_dir_needs_no_network(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    (mirror / "tiny" / "chips").mkdir(parents=True)
    (mirror / "tiny" / "chips" / "a.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv("SARLAB_DATA_DIR", str(mirror))
    path = write_manifest(tmp_path, pinned("http://127.0.0.1:9/unreachable/a.bin"))
    assert data_dir() == mirror
    assert fetch(path, progress=False) == [mirror / "tiny" / "chips" / "a.bin"]
    (mirror / "tiny" / "chips" / "a.bin").unlink()
    with pytest.raises(ManifestError, match="cannot download"):
        fetch(path, progress=False)


def test_verify_rejects_missing_file_and_symlink_escape(tmp_path):
    path = write_manifest(tmp_path, pinned("https://example.org/a.bin"))
    root = tmp_path / "data"
    with pytest.raises(ManifestError, match="missing"):
        verify(path, root)
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(PAYLOAD)
    (root / "tiny" / "chips").mkdir(parents=True)
    (root / "tiny" / "chips" / "a.bin").symlink_to(outside)
    with pytest.raises(ManifestError, match="outside the data folder"):
        verify(path, root)


def test_manual_download_needs_written_checksums(tmp_path):
    path = write_manifest(tmp_path, base_manifest())
    root = tmp_path / "data"
    with pytest.raises(ManifestError, match="Ask the authors"):
        fetch(path, root, progress=False)
    (root / "tiny" / "scenes").mkdir(parents=True)
    (root / "tiny" / "scenes" / "s1.tif").write_bytes(PAYLOAD)
    with pytest.raises(ManifestError, match="--write-checksums"):
        verify(path, root)
    report = verify(path, root, write_checksums=True)
    assert report.files == {"scenes/s1.tif": PAYLOAD_SHA}
    assert f"{PAYLOAD_SHA}  scenes/s1.tif" in (root / "tiny" / CHECKSUM_FILE).read_text()
    (root / "tiny" / "scenes" / "s1.tif").write_bytes(b"changed")
    with pytest.raises(ManifestError, match="does not match"):
        verify(path, root)


# --- generated datasets ---------------------------------------------------------------


def _fake_generator(calls: list[int]):
    def generate(out_dir: Path, seed: int) -> list[Path]:
        calls.append(seed)
        rng = np.random.default_rng(seed)
        paths = []
        for split in ("train", "test"):
            path = out_dir / "flood" / split / f"chip_{split}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rng.standard_normal(64).astype("<f4").tobytes())
            paths.append(path)
        return paths

    return generate


def _generated_manifest(tmp_path: Path) -> Path:
    data = base_manifest(name="gen", generator="sarlab.simulate.fake:make", seed=3)
    del data["download"]
    return write_manifest(tmp_path, data)


def test_generated_dataset_is_written_once_and_verified(tmp_path, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(manifest_mod, "resolve_generator", lambda spec: _fake_generator(calls))
    path, root = _generated_manifest(tmp_path), tmp_path / "data"
    files = fetch(path, root, progress=False)
    assert calls == [3] and [f.relative_to(root / "gen").as_posix() for f in files] == [
        "flood/train/chip_train.bin",
        "flood/test/chip_test.bin",
    ]
    sums = (root / "gen" / CHECKSUM_FILE).read_text()
    assert manifest_checksum(path) in sums
    assert set(verify(path, root).files) == {
        "flood/train/chip_train.bin",
        "flood/test/chip_test.bin",
    }
    fetch(path, root, progress=False)
    assert calls == [3]  # intact: not generated again
    files[0].write_bytes(b"tampered")
    with pytest.raises(ManifestError, match="does not match"):
        verify(path, root)
    fetch(path, root, progress=False)
    assert calls == [3, 3] and verify(path, root).total_bytes == 2 * 64 * 4


def test_failed_generator_leaves_no_dataset(tmp_path, monkeypatch):
    def broken(out_dir: Path, seed: int) -> list[Path]:
        (out_dir / "half.bin").write_bytes(b"half")
        raise RuntimeError("simulator crashed")

    monkeypatch.setattr(manifest_mod, "resolve_generator", lambda spec: broken)
    path = _generated_manifest(tmp_path)
    with pytest.raises(RuntimeError, match="crashed"):
        fetch(path, tmp_path / "data", progress=False)
    assert not (tmp_path / "data" / "gen").exists()
    assert list((tmp_path / "data").iterdir()) == []


def test_real_demo_generator(demo_data):
    """The shipped generator runs through fetch; a second fetch verifies and reuses it."""
    root = demo_data.parent
    report = verify("demo-arctic-sim", root)
    assert report.files and all((demo_data / rel).is_file() for rel in report.files)
    before = (demo_data / "SHA256SUMS").stat().st_mtime_ns
    files = fetch("demo-arctic-sim", root, progress=False)
    assert files and all(f.is_file() for f in files)
    assert (demo_data / "SHA256SUMS").stat().st_mtime_ns == before  # not generated again


# --- command line ---------------------------------------------------------------------


def test_cli_list_and_info(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out
    assert main(["data", "info", "bigearthnet-s1"]) == 0
    out = capsys.readouterr().out
    assert "CDLA-Permissive-1.0" in out and "10.1109/MGRS.2021.3089174" in out
    assert manifest_checksum("bigearthnet-s1") in out


def test_cli_verify_ok_and_errors_exit_2(tmp_path, capsys):
    path = write_manifest(tmp_path, pinned("https://example.org/a.bin"))
    root = tmp_path / "data"
    (root / "tiny" / "chips").mkdir(parents=True)
    (root / "tiny" / "chips" / "a.bin").write_bytes(PAYLOAD)
    assert main(["data", "verify", str(path), "--data-dir", str(root), "--no-progress"]) == 0
    assert "ok: 1 files" in capsys.readouterr().out
    (root / "tiny" / "chips" / "a.bin").write_bytes(b"x")
    assert main(["data", "verify", str(path), "--data-dir", str(root), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "size 1 bytes" in err
    assert main(["data", "info", "no-such-dataset"]) == 2
    assert "no manifest named 'no-such-dataset'" in capsys.readouterr().err


def test_manifest_dir_override(tmp_path, monkeypatch):
    write_manifest(tmp_path, base_manifest(name="only-one"))
    monkeypatch.setenv("SARLAB_MANIFEST_DIR", str(tmp_path))
    assert list_manifests() == ["only-one"]
    data = copy.deepcopy(load_manifest("only-one").raw)
    assert data["name"] == "only-one"
