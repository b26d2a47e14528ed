"""bench.crop_memory stays runnable and writes its figures under the issue's key names."""

from __future__ import annotations

import json

from bench import crop_memory

KEYS = {
    "peak_rss_mb",
    "baseline_peak_rss_mb",
    "pair_crops",
    "pairs_capped",
    "max_objects",
    "max_crops_per_frame",
    "peak_rss_ratio",
}


def test_bench_crop_memory_writes_every_figure(tmp_path):
    out = tmp_path / "crop_memory.json"
    argv = ["--max-objects", "8", "--max-crops", "10", "--json", str(out)]
    assert crop_memory.main(argv) == 0
    result = json.loads(out.read_text())
    assert KEYS <= result.keys()
    assert result["pair_crops"] == 10 and result["pairs_capped"] == 8 * 7 - 10
    assert result["baseline_pair_crops"] == 1
    assert (result["max_objects"], result["max_crops_per_frame"]) == (8, 10)
