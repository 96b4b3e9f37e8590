"""Generate a small Sentinel-1 EW GRDM HH/HV SAFE product (folder and .zip), seeded.

A 1:100 thumbnail of an Arctic sea-ice scene: 64 lines x 96 samples at 4 km
pixels spanning the 400 km EW swath, in the real SAFE layout and XML schema
(manifest.safe with sizes and MD5s; product annotation with image timing and
a geolocation grid; calibration vectors; IPF >= 2.9 noise files with range
vectors whose pixel lists differ per line and one azimuth block per sub-swath;
uint16 GeoTIFF measurements with GCPs). It carries the subset of the annotation
schema that readers use, in schema order. Geometry is a spherical Earth with a
700 km orbit, so incidence runs from about 20 to 45 degrees across range.
DN values are speckled (4 looks) sigma0 plus thermal noise, converted with the
product's own LUTs, so calibrated values come out physically plausible
(HH about -12 dB, HV about -24 dB, with over-subtracted noise in HV) and tests
can check them by hand from the XML. Columns 0-1 are zero fill (nodata).
"""

from __future__ import annotations

import hashlib
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import rasterio
from rasterio.control import GroundControlPoint

SEED = 20210401
NAME = "S1B_EW_GRDM_1SDH_20210401T071530_20210401T071607_026270_0322A1_5E7B"
POLS = ("HH", "HV")
LINES, SAMPLES = 64, 96
START = datetime(2021, 4, 1, 7, 15, 30, 125000)
ANX = datetime(2021, 4, 1, 6, 20, 11, 480000)
AZ_SPACING = RG_SPACING = 4000.0  # m
AZ_INTERVAL = 0.5882  # s per line (4 km at 6.8 km/s ground speed)
EARTH_R, ORBIT_H, C = 6_371_000.0, 700_000.0, 299_792_458.0
NEAR_GROUND = 230_000.0  # m from nadir to the first sample
LAT0, LON0, HEADING = 80.2, -2.0, 195.0  # first line/sample; descending, right-looking
BETA = 474.0  # betaNought (constant, as in real products)
SUBSWATHS = ((0, 18), (19, 37), (38, 56), (57, 75), (76, 95))
GRID_LINES = (0, 16, 32, 48, 63)
GRID_PIXELS = (*range(0, 96, 12), 95)
CAL_LINES = (0, 24, 48, 72)
CAL_PIXELS = (*range(0, 96, 8), 95)
NOISE_LINES = (0, 24, 48, 72)
AZ_NOISE_LINES = (*range(0, 64, 8), 63)
NODATA_COLS = 2
SIGMA0_DB = {"HH": -12.0, "HV": -24.0}
LOOKS = 4
IPF = "003.31"


def _time(line: float) -> datetime:
    return START + timedelta(seconds=line * AZ_INTERVAL)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")


def geometry(lines: np.ndarray, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Incidence, elevation angle, slant range time, lat and lon on the grid lines x pixels."""
    ground = NEAR_GROUND + np.asarray(pixels, dtype=float) * RG_SPACING
    alpha = ground / EARTH_R
    rs = EARTH_R + ORBIT_H
    slant = np.sqrt(EARTH_R**2 + rs**2 - 2 * EARTH_R * rs * np.cos(alpha))
    incidence = np.degrees(np.arcsin(rs * np.sin(alpha) / slant))
    elevation = np.degrees(np.arcsin(EARTH_R * np.sin(np.radians(incidence)) / rs))
    along = np.asarray(lines, dtype=float)[:, None] * AZ_SPACING
    across = (np.asarray(pixels, dtype=float) * RG_SPACING)[None, :]
    h, right = np.radians(HEADING), np.radians(HEADING + 90.0)
    lat = LAT0 + (along * np.cos(h) + across * np.cos(right)) / 111_320.0
    lon = LON0 + (along * np.sin(h) + across * np.sin(right)) / (
        111_320.0 * np.cos(np.radians(lat))
    )
    shape = lat.shape
    return {
        "incidence": np.broadcast_to(incidence, shape),
        "elevation": np.broadcast_to(elevation, shape),
        "slant_time": np.broadcast_to(2 * slant / C, shape),
        "lat": lat,
        "lon": lon,
    }


def sigma_lut(lines: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """sigmaNought LUT: beta / sqrt(sin(theta)), so that sigma0 = beta0 * sin(theta)."""
    theta = np.radians(geometry(lines, pixels)["incidence"])
    return BETA / np.sqrt(np.sin(theta))


def nesz_db(pixels: np.ndarray, pol: str) -> np.ndarray:
    """Noise-equivalent sigma0: scalloped across each EW sub-swath, higher at its edges."""
    pixels = np.asarray(pixels, dtype=float)
    out = np.zeros_like(pixels)
    for first, last in SUBSWATHS:
        inside = (pixels >= first) & (pixels <= last + 1)
        rel = (pixels[inside] - first) / (last + 1 - first) * 2 - 1
        out[inside] = -27.0 + 5.0 * rel**2
    return out + (1.0 if pol == "HV" else 0.0)


def azimuth_factor(lines: np.ndarray, block: int) -> np.ndarray:
    return 1.0 + 0.08 * np.sin(2 * np.pi * np.asarray(lines, dtype=float) / 40.0 + block)


def _vector_pixels(index: int) -> np.ndarray:
    """Noise range vectors sample different pixels on each line, as GRD noise files do."""
    return np.array(sorted({*range(index % 3, SAMPLES, 6), SAMPLES - 1}))


def _fmt(values: np.ndarray, integer: bool = False) -> str:
    if integer:
        return " ".join(str(int(v)) for v in values)
    return " ".join(f"{v:.6e}" for v in values)


def _header(pol: str) -> str:
    return f"""  <adsHeader>
    <missionId>S1B</missionId>
    <productType>GRD</productType>
    <polarisation>{pol}</polarisation>
    <mode>EW</mode>
    <swath>EW</swath>
    <startTime>{_iso(_time(0))}</startTime>
    <stopTime>{_iso(_time(LINES - 1))}</stopTime>
    <absoluteOrbitNumber>26270</absoluteOrbitNumber>
    <missionDataTakeId>205473</missionDataTakeId>
    <imageNumber>00{POLS.index(pol) + 1}</imageNumber>
  </adsHeader>"""


def annotation_xml(pol: str) -> str:
    g = geometry(np.array(GRID_LINES), np.array(GRID_PIXELS))
    points = []
    for j, line in enumerate(GRID_LINES):
        for i, pixel in enumerate(GRID_PIXELS):
            points.append(f"""      <geolocationGridPoint>
        <azimuthTime>{_iso(_time(line))}</azimuthTime>
        <slantRangeTime>{g["slant_time"][j, i]:.15e}</slantRangeTime>
        <line>{line}</line>
        <pixel>{pixel}</pixel>
        <latitude>{g["lat"][j, i]:.15e}</latitude>
        <longitude>{g["lon"][j, i]:.15e}</longitude>
        <height>0.000000000000000e+00</height>
        <incidenceAngle>{g["incidence"][j, i]:.15e}</incidenceAngle>
        <elevationAngle>{g["elevation"][j, i]:.15e}</elevationAngle>
      </geolocationGridPoint>""")
    mid = geometry(np.array([0]), np.array([SAMPLES // 2]))["incidence"][0, 0]
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<product>
{_header(pol)}
  <generalAnnotation>
    <productInformation>
      <pass>Descending</pass>
      <timelinessCategory>Fast-24h</timelinessCategory>
      <platformHeading>{HEADING - 360:.15e}</platformHeading>
      <projection>Ground Range</projection>
      <rangeSamplingRate>2.503521291666667e+07</rangeSamplingRate>
      <radarFrequency>5.405000454334350e+09</radarFrequency>
      <azimuthSteeringRate>2.390895448000000e+00</azimuthSteeringRate>
    </productInformation>
  </generalAnnotation>
  <imageAnnotation>
    <imageInformation>
      <productFirstLineUtcTime>{_iso(_time(0))}</productFirstLineUtcTime>
      <productLastLineUtcTime>{_iso(_time(LINES - 1))}</productLastLineUtcTime>
      <ascendingNodeTime>{_iso(ANX)}</ascendingNodeTime>
      <anchorTime>{_iso(_time(0))}</anchorTime>
      <productComposition>Slice</productComposition>
      <sliceNumber>3</sliceNumber>
      <slantRangeTime>{g["slant_time"][0, 0]:.15e}</slantRangeTime>
      <pixelValue>Detected</pixelValue>
      <outputPixels>16 bit Unsigned Integer</outputPixels>
      <rangePixelSpacing>{RG_SPACING:.6e}</rangePixelSpacing>
      <azimuthPixelSpacing>{AZ_SPACING:.6e}</azimuthPixelSpacing>
      <azimuthTimeInterval>{AZ_INTERVAL:.15e}</azimuthTimeInterval>
      <azimuthFrequency>{1 / AZ_INTERVAL:.15e}</azimuthFrequency>
      <numberOfSamples>{SAMPLES}</numberOfSamples>
      <numberOfLines>{LINES}</numberOfLines>
      <zeroDopMinusAcqTime>1.505690820000000e+02</zeroDopMinusAcqTime>
      <incidenceAngleMidSwath>{mid:.15e}</incidenceAngleMidSwath>
    </imageInformation>
    <processingInformation>
      <thermalNoiseCorrectionPerformed>false</thermalNoiseCorrectionPerformed>
      <ellipsoidName>WGS84</ellipsoidName>
    </processingInformation>
  </imageAnnotation>
  <swathTiming>
    <linesPerBurst>0</linesPerBurst>
    <samplesPerBurst>0</samplesPerBurst>
    <burstList count="0"/>
  </swathTiming>
  <geolocationGrid>
    <geolocationGridPointList count="{len(points)}">
{chr(10).join(points)}
    </geolocationGridPointList>
  </geolocationGrid>
</product>
"""


def calibration_xml(pol: str) -> str:
    pixels = np.array(CAL_PIXELS)
    vectors = []
    for line in CAL_LINES:
        sigma = sigma_lut(np.array([line]), pixels)[0]
        theta = np.radians(geometry(np.array([line]), pixels)["incidence"][0])
        gamma = sigma * np.sqrt(np.cos(theta))
        beta = np.full(pixels.size, BETA)
        vectors.append(f"""    <calibrationVector>
      <azimuthTime>{_iso(_time(line))}</azimuthTime>
      <line>{line}</line>
      <pixel count="{pixels.size}">{_fmt(pixels, integer=True)}</pixel>
      <sigmaNought count="{pixels.size}">{_fmt(sigma)}</sigmaNought>
      <betaNought count="{pixels.size}">{_fmt(beta)}</betaNought>
      <gamma count="{pixels.size}">{_fmt(gamma)}</gamma>
      <dn count="{pixels.size}">{_fmt(beta)}</dn>
    </calibrationVector>""")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<calibration>
{_header(pol)}
  <calibrationInformation>
    <absoluteCalibrationConstant>1.000000e+00</absoluteCalibrationConstant>
  </calibrationInformation>
  <calibrationVectorList count="{len(vectors)}">
{chr(10).join(vectors)}
  </calibrationVectorList>
</calibration>
"""


def noise_xml(pol: str) -> str:
    ranges = []
    for k, line in enumerate(NOISE_LINES):
        pixels = _vector_pixels(k)
        eta = 10 ** (nesz_db(pixels, pol) / 10) * sigma_lut(np.array([line]), pixels)[0] ** 2
        eta *= 1.0 + 0.02 * k  # slow drift along azimuth
        ranges.append(f"""    <noiseRangeVector>
      <azimuthTime>{_iso(_time(line))}</azimuthTime>
      <line>{line}</line>
      <pixel count="{pixels.size}">{_fmt(pixels, integer=True)}</pixel>
      <noiseRangeLut count="{pixels.size}">{_fmt(eta)}</noiseRangeLut>
    </noiseRangeVector>""")
    azimuths = []
    lines = np.array(AZ_NOISE_LINES)
    for b, (first, last) in enumerate(SUBSWATHS):
        azimuths.append(f"""    <noiseAzimuthVector>
      <swath>EW{b + 1}</swath>
      <firstAzimuthLine>0</firstAzimuthLine>
      <firstRangeSample>{first}</firstRangeSample>
      <lastAzimuthLine>{LINES - 1}</lastAzimuthLine>
      <lastRangeSample>{last}</lastRangeSample>
      <line count="{lines.size}">{_fmt(lines, integer=True)}</line>
      <noiseAzimuthLut count="{lines.size}">{_fmt(azimuth_factor(lines, b))}</noiseAzimuthLut>
    </noiseAzimuthVector>""")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<noise>
{_header(pol)}
  <noiseRangeVectorList count="{len(ranges)}">
{chr(10).join(ranges)}
  </noiseRangeVectorList>
  <noiseAzimuthVectorList count="{len(azimuths)}">
{chr(10).join(azimuths)}
  </noiseAzimuthVectorList>
</noise>
"""


def _digital_numbers(pol: str, rng: np.random.Generator) -> np.ndarray:
    """Speckled DN: |DN|^2 ~ Gamma(L) * (sigma0 * A^2 + eta), quantised to uint16."""
    lines, pixels = np.arange(LINES), np.arange(SAMPLES)
    incidence = geometry(lines, pixels)["incidence"]
    texture = rng.normal(0.0, 1.5, (LINES // 8, SAMPLES // 8)).repeat(8, 0).repeat(8, 1)
    sigma0_db = SIGMA0_DB[pol] - 0.15 * (incidence - 30.0) + texture
    a2 = sigma_lut(lines, pixels) ** 2
    eta = 10 ** (nesz_db(pixels, pol) / 10)[None, :] * a2
    power = (10 ** (sigma0_db / 10) * a2 + eta) * rng.gamma(LOOKS, 1.0 / LOOKS, (LINES, SAMPLES))
    dn = np.clip(np.rint(np.sqrt(power)), 1, 65535).astype(np.uint16)
    dn[:, :NODATA_COLS] = 0
    return dn


def _write_tiff(path: Path, dn: np.ndarray) -> None:
    g = geometry(np.array(GRID_LINES), np.array(GRID_PIXELS))
    gcps = [
        GroundControlPoint(row=line, col=pixel, x=g["lon"][j, i], y=g["lat"][j, i], z=0.0)
        for j, line in enumerate(GRID_LINES)
        for i, pixel in enumerate(GRID_PIXELS)
    ]
    profile = {
        "driver": "GTiff",
        "dtype": "uint16",
        "count": 1,
        "height": LINES,
        "width": SAMPLES,
        "blockysize": 1,
        "gcps": gcps,
        "crs": "EPSG:4326",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dn, 1)
        dst.update_tags(TIFFTAG_SOFTWARE=f"Sentinel-1 IPF {IPF}")


def _file_stem(pol: str) -> str:
    number = POLS.index(pol) + 1
    return f"s1b-ew-grd-{pol.lower()}-20210401t071530-20210401t071607-026270-0322a1-00{number}"


def _data_object(kind: str, rep_id: str, href: str, root: Path) -> str:
    data = (root / href).read_bytes()
    oid = kind + href.rsplit("/", 1)[-1].split(".")[0].replace("-", "")
    mime = "text/xml" if href.endswith(".xml") else "application/octet-stream"
    return f"""    <dataObject ID="{oid}" repID="{rep_id}">
      <byteStream mimeType="{mime}" size="{len(data)}">
        <fileLocation locatorType="URL" href="./{href}"/>
        <checksum checksumName="MD5">{hashlib.md5(data).hexdigest()}</checksum>
      </byteStream>
    </dataObject>"""


def manifest_xml(root: Path) -> str:
    objects = []
    for pol in POLS:
        stem = _file_stem(pol)
        for kind, rep_id, href in (
            ("product", "s1Level1ProductSchema", f"annotation/{stem}.xml"),
            ("noise", "s1Level1NoiseSchema", f"annotation/calibration/noise-{stem}.xml"),
            (
                "calibration",
                "s1Level1CalibrationSchema",
                f"annotation/calibration/calibration-{stem}.xml",
            ),
            ("", "s1Level1MeasurementSchema", f"measurement/{stem}.tiff"),
        ):
            objects.append(_data_object(kind, rep_id, href, root))
    g = geometry(np.array([0, LINES - 1]), np.array([0, SAMPLES - 1]))
    corners = [(0, 0), (0, 1), (1, 1), (1, 0)]
    footprint = " ".join(f"{g['lat'][j, i]:.6f},{g['lon'][j, i]:.6f}" for j, i in corners)
    pols = "\n".join(
        f"            <s1sarl1:transmitterReceiverPolarisation>{p}"
        "</s1sarl1:transmitterReceiverPolarisation>"
        for p in POLS
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<xfdu:XFDU xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:gml="http://www.opengis.net/gml" xmlns:xfdu="urn:ccsds:schema:xfdu:1"
    xmlns:safe="http://www.esa.int/safe/sentinel-1.0"
    xmlns:s1="http://www.esa.int/safe/sentinel-1.0/sentinel-1"
    xmlns:s1sar="http://www.esa.int/safe/sentinel-1.0/sentinel-1/sar"
    xmlns:s1sarl1="http://www.esa.int/safe/sentinel-1.0/sentinel-1/sar/level-1"
    version="esa/safe/sentinel-1.0/sentinel-1/sar/level-1/grd/standard/ewdp">
  <metadataSection>
    <metadataObject ID="processing" classification="PROVENANCE" category="PDI">
      <metadataWrap mimeType="text/xml" vocabularyName="SAFE" textInfo="Processing">
        <xmlData>
          <safe:processing name="GRD Post Processing"
              start="2021-04-01T08:40:02.000000" stop="2021-04-01T08:46:31.000000">
            <safe:facility country="Germany" name="Copernicus S1 Core Ground Segment - DPA"
                organisation="ESA" site="DLR-Oberpfaffenhofen">
              <safe:software name="Sentinel-1 IPF" version="{IPF}"/>
            </safe:facility>
          </safe:processing>
        </xmlData>
      </metadataWrap>
    </metadataObject>
    <metadataObject ID="platform" classification="DESCRIPTION" category="DMD">
      <metadataWrap mimeType="text/xml" vocabularyName="SAFE" textInfo="Platform Description">
        <xmlData>
          <safe:platform>
            <safe:nssdcIdentifier>2016-025A</safe:nssdcIdentifier>
            <safe:familyName>SENTINEL-1</safe:familyName>
            <safe:number>B</safe:number>
            <safe:instrument>
              <safe:familyName abbreviation="SAR">Synthetic Aperture Radar</safe:familyName>
              <safe:extension>
                <s1sarl1:instrumentMode>
                  <s1sarl1:mode>EW</s1sarl1:mode>
                  <s1sarl1:swath>EW</s1sarl1:swath>
                </s1sarl1:instrumentMode>
              </safe:extension>
            </safe:instrument>
          </safe:platform>
        </xmlData>
      </metadataWrap>
    </metadataObject>
    <metadataObject ID="measurementOrbitReference" classification="DESCRIPTION" category="DMD">
      <metadataWrap mimeType="text/xml" vocabularyName="SAFE" textInfo="Orbit Reference">
        <xmlData>
          <safe:orbitReference>
            <safe:orbitNumber type="start">26270</safe:orbitNumber>
            <safe:orbitNumber type="stop">26270</safe:orbitNumber>
            <safe:relativeOrbitNumber type="start">169</safe:relativeOrbitNumber>
            <safe:relativeOrbitNumber type="stop">169</safe:relativeOrbitNumber>
            <safe:cycleNumber>156</safe:cycleNumber>
            <safe:phaseIdentifier>1</safe:phaseIdentifier>
            <safe:extension>
              <s1:orbitProperties>
                <s1:pass>DESCENDING</s1:pass>
                <s1:ascendingNodeTime>{_iso(ANX)}</s1:ascendingNodeTime>
              </s1:orbitProperties>
            </safe:extension>
          </safe:orbitReference>
        </xmlData>
      </metadataWrap>
    </metadataObject>
    <metadataObject ID="generalProductInformation" classification="DESCRIPTION" category="DMD">
      <metadataWrap mimeType="text/xml" vocabularyName="SAFE"
          textInfo="General Product Information">
        <xmlData>
          <s1sarl1:standAloneProductInformation>
            <s1sarl1:instrumentConfigurationID>1</s1sarl1:instrumentConfigurationID>
            <s1sarl1:missionDataTakeID>205473</s1sarl1:missionDataTakeID>
{pols}
            <s1sarl1:productClass>S</s1sarl1:productClass>
            <s1sarl1:productComposition>Slice</s1sarl1:productComposition>
            <s1sarl1:productType>GRD</s1sarl1:productType>
            <s1sarl1:productTimelinessCategory>Fast-24h</s1sarl1:productTimelinessCategory>
          </s1sarl1:standAloneProductInformation>
        </xmlData>
      </metadataWrap>
    </metadataObject>
    <metadataObject ID="acquisitionPeriod" classification="DESCRIPTION" category="DMD">
      <metadataWrap mimeType="text/xml" vocabularyName="SAFE" textInfo="Acquisition Period">
        <xmlData>
          <safe:acquisitionPeriod>
            <safe:startTime>{_iso(_time(0))}</safe:startTime>
            <safe:stopTime>{_iso(_time(LINES - 1))}</safe:stopTime>
          </safe:acquisitionPeriod>
        </xmlData>
      </metadataWrap>
    </metadataObject>
    <metadataObject ID="measurementFrameSet" classification="DESCRIPTION" category="DMD">
      <metadataWrap mimeType="text/xml" vocabularyName="SAFE" textInfo="Frame Set">
        <xmlData>
          <safe:frameSet>
            <safe:frame>
              <safe:footPrint srsName="http://www.opengis.net/gml/srs/epsg.xml#4326">
                <gml:coordinates>{footprint}</gml:coordinates>
              </safe:footPrint>
            </safe:frame>
          </safe:frameSet>
        </xmlData>
      </metadataWrap>
    </metadataObject>
  </metadataSection>
  <dataObjectSection>
{chr(10).join(objects)}
  </dataObjectSection>
</xfdu:XFDU>
"""


def make_safe(safe: Path, seed: int = SEED) -> Path:
    """Write the product folder ``safe`` (its name should end in .SAFE)."""
    rng = np.random.default_rng(seed)
    (safe / "annotation" / "calibration").mkdir(parents=True, exist_ok=True)
    (safe / "measurement").mkdir(parents=True, exist_ok=True)
    for pol in POLS:
        stem = _file_stem(pol)
        (safe / "annotation" / f"{stem}.xml").write_text(annotation_xml(pol))
        (safe / "annotation" / "calibration" / f"calibration-{stem}.xml").write_text(
            calibration_xml(pol)
        )
        (safe / "annotation" / "calibration" / f"noise-{stem}.xml").write_text(noise_xml(pol))
        _write_tiff(safe / "measurement" / f"{stem}.tiff", _digital_numbers(pol, rng))
    (safe / "manifest.safe").write_text(manifest_xml(safe))
    return safe


def make(out_dir: Path) -> Path:
    """Write ``<NAME>.SAFE`` and ``<NAME>.zip`` (the folder zipped, as ESA ships it)."""
    out_dir = Path(out_dir)
    safe = make_safe(out_dir / f"{NAME}.SAFE")
    with zipfile.ZipFile(out_dir / f"{NAME}.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in safe.rglob("*") if p.is_file()):
            archive.write(file, file.relative_to(out_dir).as_posix())
    return out_dir


if __name__ == "__main__":
    import sys

    print(make(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
