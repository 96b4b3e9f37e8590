"""The whole-scene embedding benchmark runs end to end in quick mode (numbers not judged)."""

from __future__ import annotations

import json

from sarlab.benchmarks import run_benchmark


def test_quick_embed_benchmark_reports_positive_numbers(tmp_path):
    result = run_benchmark("embed", out_dir=tmp_path, quick=True)
    assert json.loads((tmp_path / "embed.json").read_text())["ratio"] == result["ratio"]
    # 640 x 704 px in 64 px windows, all valid: every window is embedded
    assert result["n_windows"] == 10 * 11 == result["n_embedded"]
    for key in ("scene_chips_per_s", "forward_chips_per_s", "ratio", "peak_rss_mb"):
        assert result[key] > 0, key
    assert isinstance(result["meets_target"], bool) and isinstance(
        result["meets_memory_target"], bool
    )
