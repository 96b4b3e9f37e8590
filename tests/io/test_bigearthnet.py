"""open_bigearthnet_s1 on the real samples in ../shared/data and on a generated patch."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyproj
import pytest
import rasterio

from sarlab.conventions import check_backscatter
from sarlab.errors import InputError
from sarlab.io.bigearthnet import (
    BIGEARTHNET_19,
    BIGEARTHNET_43,
    BIGEARTHNET_43_TO_19,
    bigearthnet_multi_hot,
    open_bigearthnet_s1,
)

NAME = "S1B_IW_GRDH_1SDV_20180504T181516_29UPU_12_34"


@pytest.fixture(scope="module")
def patch(make_fixture):
    return make_fixture("bigearthnet") / NAME


def _copy(patch, tmp_path):
    return shutil.copytree(patch, tmp_path / patch.name)


def _edit_json(folder, **changes):
    path = folder / f"{folder.name}_labels_metadata.json"
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))
    return meta


def test_real_samples_match_their_metadata(shared_data):
    patches = sorted((shared_data / "bigearthnet_s1").glob("S1*"))
    assert len(patches) == 6
    for folder in patches:
        meta = json.loads((folder / f"{folder.name}_labels_metadata.json").read_text())
        ds = open_bigearthnet_s1(folder)
        image = ds["backscatter"]
        check_backscatter(image)
        assert list(image["band"].values) == ["VV", "VH"]
        assert (image.attrs["quantity"], image.attrs["units"]) == ("sigma0", "dB")
        assert image.shape == (2, 120, 120)
        assert ds.rio.crs.to_epsg() == pyproj.CRS.from_wkt(meta["projection"]).to_epsg()
        box = meta["coordinates"]
        assert ds.rio.bounds() == (box["ulx"], box["lly"], box["lrx"], box["uly"])
        assert ds.rio.resolution() == (10.0, -10.0)
        for i, pol in enumerate(("VV", "VH")):
            with rasterio.open(folder / f"{folder.name}_{pol}.tif") as src:
                np.testing.assert_array_equal(image.values[i], src.read(1))
        assert not np.isnan(image.values).any()
        # real dB backscatter over land: values a physicist would believe
        assert -30 < float(image.sel(band="VV").median()) < -3
        assert float(image.sel(band="VH").median()) < float(image.sel(band="VV").median())
        assert ds.attrs["labels"] == meta["labels"]
        assert ds.attrs["acquisition_time"] == meta["acquisition_time"]
        assert ds.attrs["source_scene_id"] == meta["scene_source"]
        assert ds.attrs["scene_id"] == folder.name
        assert (ds.attrs["platform"], ds.attrs["mode"], ds.attrs["product"]) == (
            "Sentinel-1A",
            "IW",
            "GRD",
        )


def test_real_sample_multi_hot(shared_data):
    folder = shared_data / "bigearthnet_s1" / "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_61_40"
    labels = open_bigearthnet_s1(folder).attrs["labels"]
    # urban fabric, arable land, agriculture with natural vegetation, broad-leaved forest,
    # inland wetlands (inland marshes), inland waters (water courses)
    assert np.flatnonzero(bigearthnet_multi_hot(labels)).tolist() == [0, 2, 6, 8, 15, 17]
    assert np.flatnonzero(bigearthnet_multi_hot(labels, "43")).tolist() == [1, 11, 20, 22, 33, 38]


def test_generated_patch(patch):
    ds = open_bigearthnet_s1(patch)
    assert ds.rio.crs.to_epsg() == 32629
    assert ds.rio.bounds() == (604800.0, 5832840.0, 606000.0, 5834040.0)
    assert ds.attrs["platform"] == "Sentinel-1B" and ds.attrs["labels"][-1] == "Port areas"
    hot = bigearthnet_multi_hot(ds.attrs["labels"], scheme=19)
    assert hot.dtype == np.uint8 and hot.shape == (19,)
    assert np.flatnonzero(hot).tolist() == [4, 17]  # port areas have no 19-class label
    assert np.flatnonzero(bigearthnet_multi_hot(ds.attrs["labels"], "43")).tolist() == [4, 17, 39]


def test_nomenclature():
    assert len(BIGEARTHNET_43) == 43 and len(BIGEARTHNET_19) == 19
    assert len(BIGEARTHNET_43_TO_19) == 33 and set(BIGEARTHNET_43_TO_19.values()) == set(
        BIGEARTHNET_19
    )
    assert BIGEARTHNET_43_TO_19["Sea and ocean"] == "Marine waters"
    assert BIGEARTHNET_43_TO_19["Sparsely vegetated areas"] == (
        "Natural grassland and sparsely vegetated areas"
    )
    assert BIGEARTHNET_43_TO_19["Annual crops associated with permanent crops"] == "Permanent crops"
    assert "Burnt areas" not in BIGEARTHNET_43_TO_19
    assert bigearthnet_multi_hot(["Salines", "Intertidal flats", "Coastal wetlands"]).sum() == 1
    with pytest.raises(InputError, match="unknown BigEarthNet label"):
        bigearthnet_multi_hot(["Pasture"])
    with pytest.raises(ValueError, match="scheme"):
        bigearthnet_multi_hot(["Pastures"], scheme="10")


def test_metadata_that_disagrees_with_the_rasters(patch, tmp_path):
    wrong_zone = _copy(patch, tmp_path / "zone")
    _edit_json(wrong_zone, projection=pyproj.CRS.from_epsg(32630).to_wkt())
    with pytest.raises(InputError, match=r"labels_metadata\.json: projection EPSG:32630 differs"):
        open_bigearthnet_s1(wrong_zone)

    shifted = _copy(patch, tmp_path / "box")
    _edit_json(shifted, coordinates={"ulx": 0, "uly": 1200, "lrx": 1200, "lly": 0})
    with pytest.raises(InputError, match="bounding box"):
        open_bigearthnet_s1(shifted)

    mislabelled = _copy(patch, tmp_path / "label")
    _edit_json(mislabelled, labels=["Pastures", "Moon dust"])
    with pytest.raises(InputError, match=r"labels_metadata\.json: unknown BigEarthNet label.*Moon"):
        open_bigearthnet_s1(mislabelled)


def test_incomplete_patches(patch, tmp_path):
    no_vh = _copy(patch, tmp_path / "vh")
    (no_vh / f"{NAME}_VH.tif").unlink()
    with pytest.raises(InputError, match=rf"{NAME}: missing {NAME}_VH\.tif"):
        open_bigearthnet_s1(no_vh)

    broken = _copy(patch, tmp_path / "json")
    (broken / f"{NAME}_labels_metadata.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        open_bigearthnet_s1(broken)

    truncated = _copy(patch, tmp_path / "trunc")
    vv = truncated / f"{NAME}_VV.tif"
    vv.write_bytes(vv.read_bytes()[:20000])
    with pytest.raises(InputError, match=rf"{NAME}_VV\.tif: truncated"):
        open_bigearthnet_s1(truncated)

    renamed = shutil.copytree(patch, tmp_path / "renamed_folder")
    assert open_bigearthnet_s1(renamed).attrs["scene_id"] == NAME
