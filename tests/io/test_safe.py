"""open_safe on a generated EW GRD SAFE (folder and zip) and on the real IW samples.

Expected values are computed by hand from the fixture's XML and GeoTIFFs with
ElementTree, numpy and rasterio, not with sarlab's LUT code.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from xml.etree import ElementTree

import dask.array
import numpy as np
import pytest
import rasterio
import xarray as xr

from sarlab.conventions import check_backscatter
from sarlab.errors import InputError
from sarlab.io.safe import open_safe
from sarlab.io.safe_luts import parse_azimuth_noise, parse_vectors

# (line, pixel): on the calibration and noise grids, between both, near the far edge
POINTS = [(24, 16), (30, 21), (48, 95), (5, 60), (63, 2)]


@pytest.fixture(scope="module")
def fixture_dir(make_fixture) -> Path:
    return make_fixture("safe")


@pytest.fixture(scope="module")
def safe(fixture_dir) -> Path:
    return next(fixture_dir.glob("*.SAFE"))


@pytest.fixture(scope="module", params=["folder", "zip"])
def product(request, fixture_dir) -> Path:
    return next(fixture_dir.glob("*.SAFE" if request.param == "folder" else "*.zip"))


@pytest.fixture(scope="module")
def opened(product) -> xr.Dataset:
    return open_safe(product).compute()


def _copy(safe: Path, tmp_path: Path) -> Path:
    return shutil.copytree(safe, tmp_path / safe.name)


def _file(safe: Path, pattern: str) -> Path:
    (path,) = safe.glob(pattern)
    return path


def _vectors(path: Path, tag: str, value: str) -> list[tuple[int, np.ndarray, np.ndarray]]:
    root = ElementTree.parse(path).getroot()
    return [
        (
            int(v.findtext("line")),
            np.array(v.findtext("pixel").split(), dtype=float),
            np.array(v.findtext(value).split(), dtype=float),
        )
        for v in root.iter(tag)
    ]


def _between(vectors, line: int, pixel: int) -> float:
    """Linear in pixel along each vector, then linear in line between the two around ``line``."""
    lines = [v[0] for v in vectors]
    k = max(i for i, v in enumerate(lines) if v <= line)
    k = min(k, len(lines) - 2)
    w = (line - lines[k]) / (lines[k + 1] - lines[k])
    lo = np.interp(pixel, vectors[k][1], vectors[k][2])
    hi = np.interp(pixel, vectors[k + 1][1], vectors[k + 1][2])
    return (1 - w) * lo + w * hi


def _azimuth_noise(path: Path, line: int, pixel: int) -> float:
    for v in ElementTree.parse(path).getroot().iter("noiseAzimuthVector"):
        if int(v.findtext("firstRangeSample")) <= pixel <= int(v.findtext("lastRangeSample")):
            lines = np.array(v.findtext("line").split(), dtype=float)
            lut = np.array(v.findtext("noiseAzimuthLut").split(), dtype=float)
            return float(np.interp(line, lines, lut))
    raise AssertionError(f"no azimuth block covers pixel {pixel}")


def _hand(safe: Path, pol: str, line: int, pixel: int, lut: str, noise: bool) -> float:
    p = pol.lower()
    with rasterio.open(_file(safe, f"measurement/*-{p}-*.tiff")) as src:
        dn = float(src.read(1)[line, pixel])
    if dn == 0:
        return np.nan
    cal = _file(safe, f"annotation/calibration/calibration-*-{p}-*.xml")
    a = _between(_vectors(cal, "calibrationVector", lut), line, pixel)
    power = dn**2
    if noise:
        nfile = _file(safe, f"annotation/calibration/noise-*-{p}-*.xml")
        eta = _between(_vectors(nfile, "noiseRangeVector", "noiseRangeLut"), line, pixel)
        power = max(power - eta * _azimuth_noise(nfile, line, pixel), 0.0)
    return power / a**2


# --- generated EW GRD --------------------------------------------------------------------


@pytest.mark.parametrize("pol", ["HH", "HV"])
def test_sigma0_equals_hand_calibration_with_noise_removal(opened, safe, pol):
    for line, pixel in POINTS:
        expected = _hand(safe, pol, line, pixel, "sigmaNought", noise=True)
        got = float(opened["backscatter"].sel(band=pol)[line, pixel])
        np.testing.assert_allclose(got, expected, rtol=2e-6, err_msg=f"{pol} {line},{pixel}")


@pytest.mark.parametrize(("quantity", "lut"), [("beta0", "betaNought"), ("gamma0", "gamma")])
def test_other_quantities_without_noise_removal(safe, quantity, lut):
    ds = open_safe(safe, "HV", quantity, remove_noise=False).compute()
    assert ds["backscatter"].attrs["quantity"] == quantity
    assert ds["backscatter"].attrs["thermal_noise"] == "not removed"
    for line, pixel in POINTS:
        expected = _hand(safe, "HV", line, pixel, lut, noise=False)
        np.testing.assert_allclose(float(ds["backscatter"][0, line, pixel]), expected, rtol=2e-6)


def test_quantities_follow_the_incidence_angle(safe):
    """The LUTs encode sigma0 = beta0 sin(theta) and gamma0 = sigma0 / cos(theta)."""
    kw = {"polarizations": "HH", "remove_noise": False}
    s, b, g = (open_safe(safe, quantity=q, **kw).compute() for q in ("sigma0", "beta0", "gamma0"))
    theta = np.radians(s["incidence_angle"].values[:, 2:])
    sigma, beta, gamma = (d["backscatter"].values[0][:, 2:] for d in (s, b, g))
    # LUT nodes every 8 pixels and tie points every 12 of a 4 km-pixel thumbnail: linear
    # interpolation of sin/cos between them is good to ~0.3 %
    np.testing.assert_allclose(sigma / beta, np.sin(theta), rtol=5e-3)
    np.testing.assert_allclose(gamma * np.cos(theta), sigma, rtol=5e-3)


def test_noise_is_removed_and_clipped_at_zero(opened, safe):
    raw = open_safe(safe, remove_noise=False).compute()
    clean, noisy = opened["backscatter"].values, raw["backscatter"].values
    valid = np.isfinite(noisy)
    assert np.all(clean[valid] <= noisy[valid])
    hv = clean[1][valid[1]]
    assert hv.min() == 0.0 and 0.05 < np.mean(hv == 0.0) < 0.5  # over-subtracted HV clipped
    assert 10 * np.log10(np.mean(clean[0][valid[0]])) == pytest.approx(-12.0, abs=1.0)
    assert 10 * np.log10(np.mean(hv)) == pytest.approx(-24.0, abs=1.5)
    assert opened["backscatter"].attrs["thermal_noise"] == "removed (range and azimuth vectors)"


def test_zero_fill_is_nan(opened):
    bs = opened["backscatter"].values
    assert np.isnan(bs[:, :, :2]).all()
    assert np.isfinite(bs[:, :, 2:]).all()


def test_intensity_is_detected_dn_squared(safe):
    ds = open_safe(safe, quantity="intensity", remove_noise=False).compute()
    with rasterio.open(_file(safe, "measurement/*-hv-*.tiff")) as src:
        dn = src.read(1).astype(float)
    expected = np.where(dn == 0, np.nan, dn**2)
    np.testing.assert_array_equal(ds["backscatter"].sel(band="HV").values, expected)


def test_band_order_attrs_and_coords(product):
    ds = open_safe(product, ["hv", "HH"])
    assert list(ds["band"].values) == ["HV", "HH"]
    assert ds["backscatter"].dims == ("band", "y", "x")
    assert ds["backscatter"].dtype == np.float32
    check_backscatter(ds["backscatter"])
    assert ds["backscatter"].attrs["polarization"] == "HV,HH"
    assert ds["backscatter"].attrs["units"] == "linear"
    assert ds["backscatter"].attrs["quantity"] == "sigma0"
    name = product.name.removesuffix(".zip").removesuffix(".SAFE")
    assert ds.attrs["platform"] == "Sentinel-1B"
    assert (ds.attrs["mode"], ds.attrs["product"], ds.attrs["swath"]) == ("EW", "GRD", "EW")
    assert ds.attrs["scene_id"] == name
    assert ds.attrs["source"] == str(product)
    assert ds.attrs["pass"] == "DESCENDING"
    assert ds["ground_range"].values[[0, 1, -1]].tolist() == [0.0, 4000.0, 95 * 4000.0]
    times = ds["azimuth_time"].values
    assert times[0] == np.datetime64("2021-04-01T07:15:30.125")
    assert np.allclose(np.diff(times) / np.timedelta64(1, "s"), 0.5882)
    swapped = open_safe(product, "HH,HV").compute()["backscatter"].values
    np.testing.assert_array_equal(ds["backscatter"].values, swapped[::-1])


def test_incidence_angle_grows_across_range(opened):
    angle = opened["incidence_angle"]
    assert angle.dims == ("y", "x") and angle.dtype == np.float32
    assert angle.attrs["units"] == "degrees"
    values = angle.values
    assert 19.0 < values.min() < 21.0 and 44.0 < values.max() < 46.0
    assert np.all(np.diff(values, axis=1) > 0)


def test_lat_lon_incidence_at_grid_points_equal_annotation(opened, safe):
    root = ElementTree.parse(_file(safe, "annotation/s1b-*-hh-*.xml")).getroot()
    points = list(root.iter("geolocationGridPoint"))
    assert len(points) == 45
    for point in points:
        line, pixel = int(point.findtext("line")), int(point.findtext("pixel"))
        at = opened.isel(y=line, x=pixel)
        assert float(at["latitude"]) == pytest.approx(float(point.findtext("latitude")), abs=1e-9)
        assert float(at["longitude"]) == pytest.approx(float(point.findtext("longitude")), abs=1e-9)
        angle = float(point.findtext("incidenceAngle"))
        assert float(at["incidence_angle"]) == pytest.approx(angle, abs=1e-4)


def test_reads_are_lazy_and_chunked_as_asked(safe):
    ds = open_safe(safe, chunks={"y": 16, "x": -1})
    for name in ("backscatter", "incidence_angle", "latitude"):
        assert isinstance(ds[name].data, dask.array.Array)
    assert ds["backscatter"].data.chunks[1:] == ((16, 16, 16, 16), (96,))
    whole = open_safe(safe, chunks=None)
    assert whole["backscatter"].data.chunks[1:] == ((64,), (96,))
    np.testing.assert_array_equal(ds["backscatter"].values, whole["backscatter"].values)


def test_zip_and_folder_agree(fixture_dir, safe):
    folder = open_safe(safe).compute()
    zipped = open_safe(next(fixture_dir.glob("*.zip"))).compute()
    xr.testing.assert_identical(folder.drop_attrs(), zipped.drop_attrs())


# --- errors --------------------------------------------------------------------------------


def test_missing_measurement_is_named(safe, tmp_path):
    copy = _copy(safe, tmp_path)
    shutil.rmtree(copy / "measurement")
    with pytest.raises(InputError, match="no measurement files") as info:
        open_safe(copy)
    assert info.value.path == str(copy)
    assert "measurement/s1b-ew-grd-" in str(info.value)


def test_missing_calibration_is_named(safe, tmp_path):
    copy = _copy(safe, tmp_path)
    shutil.rmtree(copy / "annotation" / "calibration")
    with pytest.raises(InputError, match="no calibration file for EW HH") as info:
        open_safe(copy)
    assert str(copy) in str(info.value) and "calibration-s1b-ew-grd-hh" in str(info.value)
    with pytest.raises(InputError, match=r"no noise file for EW HH.*remove_noise=False"):
        open_safe(copy, quantity="intensity")
    assert open_safe(copy, quantity="intensity", remove_noise=False).sizes["band"] == 2


@pytest.mark.parametrize(
    ("pols", "message"),
    [
        (["XX"], "unknown polarisation 'XX'"),
        ("HH,VX", "unknown polarisation 'VX'"),
        (["VV"], r"holds no VV measurement \(swath EW has HH, HV\)"),
        (["HH", "VH"], "holds no VH measurement"),
        (["HH", "hh"], "distinct"),
    ],
)
def test_unknown_or_absent_polarisation(safe, pols, message):
    with pytest.raises(InputError, match=message) as info:
        open_safe(safe, pols)
    assert info.value.path == str(safe)


def test_old_ipf_noise_vectors_without_azimuth_lut(safe, tmp_path):
    """IPF < 2.9 noise files: <noiseVector>/<noiseLut>, range only (azimuth factor 1)."""
    copy = _copy(safe, tmp_path)
    for noise in copy.glob("annotation/calibration/noise-*.xml"):
        text = noise.read_text()
        text = text[: text.index("  <noiseAzimuthVectorList")] + "</noise>\n"
        noise.write_text(
            text.replace("noiseRangeVector", "noiseVector").replace("noiseRangeLut", "noiseLut")
        )
    ds = open_safe(copy / "manifest.safe", "HV").compute()
    assert ds["backscatter"].attrs["thermal_noise"] == "removed (range vectors)"
    nfile = _file(copy, "annotation/calibration/noise-*-hv-*.xml")
    cal = _file(copy, "annotation/calibration/calibration-*-hv-*.xml")
    with rasterio.open(_file(copy, "measurement/*-hv-*.tiff")) as src:
        dn = src.read(1).astype(float)
    for line, pixel in POINTS[:4]:
        eta = _between(_vectors(nfile, "noiseVector", "noiseLut"), line, pixel)
        a = _between(_vectors(cal, "calibrationVector", "sigmaNought"), line, pixel)
        expected = max(dn[line, pixel] ** 2 - eta, 0.0) / a**2
        np.testing.assert_allclose(float(ds["backscatter"][0, line, pixel]), expected, rtol=2e-6)


def test_unknown_swath_and_quantity(safe):
    with pytest.raises(InputError, match=r"swath 'IW1'.*EW"):
        open_safe(safe, swath="IW1")
    with pytest.raises(ValueError, match="quantity"):
        open_safe(safe, quantity="sigma0_db")


def test_truncated_measurement_is_named(safe, tmp_path):
    copy = _copy(safe, tmp_path)
    tiff = _file(copy, "measurement/*-hv-*.tiff")
    data = tiff.read_bytes()
    tiff.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match="truncated") as info:
        open_safe(copy)
    assert info.value.path == str(tiff)
    assert open_safe(copy, "HH").sizes["band"] == 1


def test_not_a_safe(tmp_path):
    with pytest.raises(InputError, match="no such SAFE"):
        open_safe(tmp_path / "absent.SAFE")
    with pytest.raises(InputError, match=r"no manifest\.safe"):
        open_safe(tmp_path)
    bad_zip = tmp_path / "x.zip"
    bad_zip.write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"neither a SAFE folder nor a \.zip"):
        open_safe(bad_zip)


# --- real samples (metadata real, pixels DUMMY constants) ----------------------------------


@pytest.fixture(scope="module")
def real(shared_data) -> dict[str, Path]:
    folder = shared_data / "s1_safe"
    return {
        "grd": next(folder.glob("S1B_IW_GRDH_*.SAFE")),
        "slc": next(folder.glob("S1B_IW_SLC_*.SAFE")),
    }


def test_real_grd_vv_opens_and_vh_is_missing(real):
    grd = real["grd"]
    ds = open_safe(grd, quantity="intensity", remove_noise=False)
    assert ds.sizes == {"band": 1, "y": 16685, "x": 25788}
    assert ds.attrs["platform"] == "Sentinel-1B"
    assert (ds.attrs["mode"], ds.attrs["product"]) == ("IW", "GRD")
    window = ds.isel(y=slice(2000, 2004), x=slice(1290, 1294)).compute()
    np.testing.assert_array_equal(window["backscatter"].values, 1.0)  # DUMMY DN = 1
    assert 30.0 < float(window["incidence_angle"].mean()) < 46.0
    lat, lon, angle = _gcp(grd, "vv", 2003, 1290)
    at = window.isel(y=3, x=0)
    assert float(at["latitude"]) == pytest.approx(lat, abs=1e-9)
    assert float(at["longitude"]) == pytest.approx(lon, abs=1e-9)
    assert float(at["incidence_angle"]) == pytest.approx(angle, abs=1e-4)
    with pytest.raises(
        InputError, match=r"VH measurement file .* listed in manifest\.safe but missing"
    ):
        open_safe(grd, ["VV", "VH"], quantity="intensity", remove_noise=False)
    with pytest.raises(InputError, match="no calibration file for IW VV"):
        open_safe(grd)


def _gcp(safe: Path, pol: str, line: int, pixel: int) -> tuple[float, float, float]:
    root = ElementTree.parse(_file(safe, f"annotation/s1b-*-{pol}-*.xml")).getroot()
    for p in root.iter("geolocationGridPoint"):
        if int(p.findtext("line")) == line and int(p.findtext("pixel")) == pixel:
            return tuple(float(p.findtext(k)) for k in ("latitude", "longitude", "incidenceAngle"))
    raise AssertionError(f"no tie point at {line},{pixel}")


@pytest.fixture(scope="module")
def slc_tree(real) -> xr.DataTree:
    return open_safe(real["slc"], remove_noise=False, chunks={"y": 128, "x": -1})


def test_real_slc_opens_every_swath(slc_tree):
    assert isinstance(slc_tree, xr.DataTree)
    assert sorted(slc_tree.children) == ["IW1", "IW2"]
    assert slc_tree.attrs["product"] == "SLC"
    iw1, iw2 = slc_tree["IW1"].to_dataset(), slc_tree["IW2"].to_dataset()
    assert list(iw1["band"].values) == ["VV", "VH"] and list(iw2["band"].values) == ["VH"]
    assert iw1.sizes["y"] == 13509 and iw1.sizes["x"] == 21632
    assert np.unique(iw1["burst"].values).tolist() == list(range(9))
    assert "slant_range_time" in iw1.coords
    for ds in (iw1, iw2):
        corners = ds.isel(y=[0, -1], x=[0, -1])["incidence_angle"].values
        assert corners.min() > 30.0 and corners.max() < 46.0
        assert np.all(corners[:, 1] > corners[:, 0])
    lat, lon, _ = _gcp(Path(slc_tree.attrs["source"]), "vv", 6004, 10820)
    point = iw1.isel(y=6004, x=10820)
    assert float(point["latitude"]) == pytest.approx(lat, abs=1e-7)
    assert float(point["longitude"]) == pytest.approx(lon, abs=1e-7)


def test_real_slc_calibration_matches_the_xml(real):
    """At a calibration node beta0 = |DN|^2 / betaNought^2 with the node's own LUT value."""
    cal = _file(real["slc"], "annotation/calibration/calibration-s1b-iw1-slc-vv-*.xml")
    line, pixels, betas = _vectors(cal, "calibrationVector", "betaNought")[4]
    pixel = int(pixels[7])
    with rasterio.open(_file(real["slc"], "measurement/s1b-iw1-slc-vv-*.tiff")) as src:
        dn = complex(src.read(1, window=((line, line + 1), (pixel, pixel + 1)))[0, 0])
    assert abs(dn) > 0  # DUMMY but non-zero
    ds = open_safe(real["slc"], "VV", "beta0", swath="iw1", remove_noise=False)
    assert isinstance(ds, xr.Dataset) and ds.attrs["swath"] == "IW1"
    value = float(ds["backscatter"][0, line, pixel])
    assert value == pytest.approx(abs(dn) ** 2 / betas[7] ** 2, rel=1e-6)


def test_real_slc_quantities_follow_the_incidence_angle(real):
    window = {"y": slice(6000, 6004), "x": slice(0, 21632, 2000)}
    out = {}
    for q in ("sigma0", "beta0", "gamma0"):
        ds = open_safe(real["slc"], "VH", q, swath="IW2", remove_noise=False)
        out[q] = ds.isel(window).compute()
    theta = np.radians(out["sigma0"]["incidence_angle"].values)
    sigma, beta, gamma = (out[q]["backscatter"].values[0] for q in ("sigma0", "beta0", "gamma0"))
    np.testing.assert_allclose(sigma / beta, np.sin(theta), rtol=5e-3)
    np.testing.assert_allclose(gamma * np.cos(theta), sigma, rtol=5e-3)


def test_real_slc_absent_polarisation_names_the_swath(real):
    with pytest.raises(InputError, match=r"VV measurement.*missing.*swath IW2 has VH"):
        open_safe(real["slc"], "VV", remove_noise=False)


def test_real_slc_noise_vectors_are_read_as_annotated(real):
    """Noise removal uses the XML's own range and azimuth vectors (real IPF 3.31 schema)."""
    nfile = _file(real["slc"], "annotation/calibration/noise-s1b-iw1-slc-vh-*.xml")
    root = ElementTree.parse(nfile).getroot()
    rng = parse_vectors(root, "noiseRangeVector", "noiseRangeLut")
    azimuth = parse_azimuth_noise(root)
    line, pixels, values = _vectors(nfile, "noiseRangeVector", "noiseRangeLut")[2]
    np.testing.assert_allclose(rng(np.array([line]), pixels)[0], values)
    lines = [1501, 1600, 13508]
    expected = [_azimuth_noise(nfile, li, 40) for li in lines]
    np.testing.assert_allclose(azimuth(np.array(lines), np.array([40]))[:, 0], expected)
    ds = open_safe(real["slc"], "VH", "intensity", swath="IW1")
    assert ds["backscatter"].attrs["thermal_noise"] == "removed (range and azimuth vectors)"
    # DUMMY |DN|^2 = 1 is far below the annotated noise power (~500): all clipped to 0
    window = ds["backscatter"].isel(y=slice(line, line + 2), x=slice(0, 4)).values
    assert values.min() > 1 and np.all(window == 0.0)


def test_longitude_across_the_antimeridian(safe, tmp_path):
    """Tie points at 179.x and -179.x: pixels between them stay near 180, never near 0."""
    copy = _copy(safe, tmp_path)
    shift = 179.0 + 12.0  # the fixture spans -2 .. -23 degrees east: now 168 .. 189 -> wraps
    for annotation in copy.glob("annotation/s1b-*.xml"):
        tree = ElementTree.parse(annotation)
        for lon in tree.getroot().iter("longitude"):
            lon.text = f"{(float(lon.text) + shift + 180.0) % 360.0 - 180.0:.15e}"
        tree.write(annotation, encoding="UTF-8", xml_declaration=True)
    original = open_safe(safe, "HH").compute()
    moved = open_safe(copy, "HH").compute()
    lon = moved["longitude"].values
    assert lon.min() < -170.0 and lon.max() > 170.0  # it does cross
    assert np.all(np.abs(lon) <= 180.0)
    unwrapped = np.where(lon < 0, lon + 360.0, lon)
    np.testing.assert_allclose(unwrapped, original["longitude"].values + shift, atol=1e-9)
