"""The shared real speckle sample loader."""

from __future__ import annotations

import numpy as np
import pytest

from sarlab.errors import InputError
from sarlab.io.samples import (
    SPECKLE_SAMPLE,
    find_shared_data,
    open_speckle_sample,
    speckle_example,
)


def test_real_speckle_sample_reads_as_linear_dual_pol_intensity(shared_data) -> None:
    ds = open_speckle_sample(shared_data / SPECKLE_SAMPLE)
    image = ds["backscatter"]
    assert image.shape == (2, 256, 256)
    assert list(image["band"].values) == ["VV", "VH"]
    assert image.attrs == {"quantity": "intensity", "units": "linear", "polarization": "VV,VH"}
    raw = np.load(shared_data / SPECKLE_SAMPLE)
    np.testing.assert_allclose(image.values[1, 10, 20], raw[10, 20, 1, 1].real, rtol=1e-6)
    # co-pol is brighter than cross-pol by several dB
    ratio_db = 10 * np.log10(np.nanmean(image.values[0]) / np.nanmean(image.values[1]))
    assert 4 < ratio_db < 12


def test_find_shared_data_follows_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SARLAB_SHARED_DATA", str(tmp_path))
    assert find_shared_data() == tmp_path
    monkeypatch.setenv("SARLAB_SHARED_DATA", str(tmp_path / "missing"))
    assert find_shared_data() is None


def test_speckle_sample_rejects_wrong_arrays_naming_the_file(tmp_path) -> None:
    wrong = tmp_path / "real_valued.npy"
    np.save(wrong, np.ones((4, 4, 2, 2), np.float32))
    with pytest.raises(InputError, match=r"real_valued\.npy.*complex"):
        open_speckle_sample(wrong)
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not numpy")
    with pytest.raises(InputError, match=r"garbage\.npy"):
        open_speckle_sample(garbage)


def test_speckle_example_simulated_is_linear_sigma0_with_its_looks() -> None:

    ds = speckle_example("simulated", seed=3, size=64)
    image = ds["backscatter"]
    assert image.attrs["units"] == "linear" and image.attrs["quantity"] == "sigma0"
    assert list(image["band"].values) == ["VV", "VH"] and image.shape == (2, 64, 64)
    assert ds.attrs["looks"] == 4.4 and float(image.min()) > 0
    again = speckle_example("simulated", seed=3, size=64)["backscatter"]
    assert np.array_equal(image.values, again.values, equal_nan=True)


def test_speckle_example_prefers_the_real_sample(shared_data, monkeypatch) -> None:

    monkeypatch.setenv("SARLAB_SHARED_DATA", str(shared_data))
    ds = speckle_example("auto", size=32)
    assert ds.attrs["product"] == "SLC" and ds["backscatter"].shape == (2, 32, 32)
    monkeypatch.setenv("SARLAB_SHARED_DATA", "/nonexistent")
    with pytest.raises(InputError, match="SARLAB_SHARED_DATA"):
        speckle_example("shared")
    assert speckle_example("auto", size=32).attrs["simulated"] == 1
    with pytest.raises(ValueError, match="source must be"):
        speckle_example("internet")
