"""Benchmarks stay runnable: each writes its figures, under the issue's key names, to --json."""
from __future__ import annotations

import json

from bench import core


def test_bench_core_writes_every_figure(tmp_path):
    out = tmp_path / "core.json"
    assert core.main(["--model", "sgclip-tiny", "--ref-windows", "1", "--windows", "2",
                      "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["ratio"] == result["reference_window_s"] / result["streaming_window_s"]
    assert result["floor_ratio"] > 0 and result["streaming_crop_encodes_per_window"] == 20
    assert result["reference_crop_encodes_per_window"] == 160
