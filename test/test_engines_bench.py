"""bench.backends stays runnable and writes its figures under the issue's key names."""
from __future__ import annotations

import json

from bench import backends


def test_bench_backends_writes_every_key(tmp_path):
    out = tmp_path / "backends.json"
    argv = ["--model", "sgclip-tiny", "--formats", "onnx,onnx-int8", "--windows", "2",
            "--rounds", "1", "--work", str(tmp_path / "work"), "--json", str(out)]
    assert backends.main(argv) == 0
    result = json.loads(out.read_text())
    rows = result["backends"]
    assert set(rows) == {"torch", "onnxruntime", "onnxruntime-int8", "aoti", "tensorrt"}
    assert rows["torch"]["ratio_to_torch"] == 1.0 and rows["torch"]["windows_per_s"] > 0
    assert rows["onnxruntime"]["available"] and rows["onnxruntime"]["windows_per_s"] > 0
    assert result["best_compiled"] == "onnxruntime"  # int8 is reported on its own
    assert result["best_compiled_ratio"] == rows["onnxruntime"]["ratio_to_torch"] > 0
    assert not rows["tensorrt"]["available"] and "CUDA" in rows["tensorrt"]["reason"]
    assert "no aoti_cpu/ folder" in rows["aoti"]["reason"]
    assert result["objects"] == 4 and result["window"] == 8 and result["stride"] == 1
    # Reduced precision, on the random model and on the shipped trained one.
    for figures in (result, result["shipped"]):
        assert figures["int8_ratio_to_onnxruntime"] > 0
        assert figures["int8_encoder_ratio_to_onnxruntime"] > 0
        assert figures["int8_ratio_to_onnxruntime_best"] > 0
        assert figures["int8_min_cos"] >= 0.99 and figures["fp16_min_cos"] >= 0.999
        assert figures["int8_unavailable"] is None
        assert figures["cosines"]["int8"]["crops"] > 20
    assert result["shipped"]["model_dir"] == "models/shapes_default"
    assert result["int8_goal_ratio"] == 1.8


def test_bench_core_reports_the_best_cpu_window(tmp_path):
    from bench import core

    out = tmp_path / "core.json"
    assert core.main(["--model", "sgclip-tiny", "--ref-windows", "1", "--windows", "2",
                      "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["cpu_fast_window_s"]) == {"torch", "onnxruntime", "onnxruntime-int8"}
    assert result["best_cpu_window_s"] == min(result["cpu_fast_window_s"].values())
    assert result["best_cpu_window_s"] == result["cpu_fast_window_s"][result["best_cpu_backend"]]
    assert result["best_cpu_fp32_backend"] in ("torch", "onnxruntime")
    assert result["best_cpu_ratio_to_reference"] == (
        result["reference_window_s"] / result["best_cpu_window_s"])
    assert result["best_cpu_goal_s"] == 0.45 and result["cpu_backends_skipped"] == {}
