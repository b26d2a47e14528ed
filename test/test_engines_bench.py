"""bench.backends stays runnable and writes its figures under the issue's key names."""
from __future__ import annotations

import json

from bench import backends


def test_bench_backends_writes_every_key(tmp_path):
    out = tmp_path / "backends.json"
    argv = ["--model", "sgclip-tiny", "--formats", "onnx", "--windows", "2", "--rounds", "1",
            "--work", str(tmp_path / "work"), "--json", str(out)]
    assert backends.main(argv) == 0
    result = json.loads(out.read_text())
    rows = result["backends"]
    assert set(rows) == {"torch", "onnxruntime", "aoti", "tensorrt"}
    assert rows["torch"]["ratio_to_torch"] == 1.0 and rows["torch"]["windows_per_s"] > 0
    assert rows["onnxruntime"]["available"] and rows["onnxruntime"]["windows_per_s"] > 0
    assert result["best_compiled"] == "onnxruntime"
    assert result["best_compiled_ratio"] == rows["onnxruntime"]["ratio_to_torch"] > 0
    assert not rows["tensorrt"]["available"] and "CUDA" in rows["tensorrt"]["reason"]
    assert "no aoti_cpu/ folder" in rows["aoti"]["reason"]
    assert result["objects"] == 4 and result["window"] == 8 and result["stride"] == 1
