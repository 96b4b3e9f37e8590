"""The chip-store benchmark runs end to end in quick mode (numbers are reported, not judged)."""

from __future__ import annotations

import json

from sarlab.benchmarks import run_benchmark


def test_quick_benchmark_reports_positive_numbers(tmp_path):
    result = run_benchmark("chips", out_dir=tmp_path, quick=True)
    assert json.loads((tmp_path / "chips.json").read_text())["n_chips"] == result["n_chips"]
    assert result["dataloader"]["same_chips"] is True  # both loaders read identical chips
    keys = ("n_chips", "build_s", "store_mb", "geotiff_mb", "ratio", "peak_rss_build_mb")
    for key in (*keys, "peak_rss_loaders_mb"):
        assert result[key] > 0, key
    for workers in ("workers0", "workers2"):
        numbers = result["dataloader"][workers]
        for key in ("store_chips_per_s", "geotiff_chips_per_s", "ratio"):
            assert numbers[key] > 0, (workers, key)
    assert all(v > 0 for v in result["direct_random_reads"].values())
    assert set(result["compression"]) == {"lz4", "none", "zstd"}
    assert all(c["store_mb"] > 0 and c["chips_per_s"] > 0 for c in result["compression"].values())
    assert isinstance(result["meets_target"], bool)
