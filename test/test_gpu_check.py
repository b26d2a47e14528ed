"""scripts/gpu_check.sh --dry-run on the CPU: the script a GPU session runs, end to end with the
tiny model (the fp16 ONNX export, parity against torch eager fp32, the provider table, the
throughput table and the reasons for what this machine cannot run)."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_dry_run_exports_fp16_onnx_checks_parity_and_says_what_is_missing(tmp_path):
    out = tmp_path / "gc"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), str(out), "--dry-run"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=470,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "gpu_check: ok" in proc.stdout
    result = json.loads(out.with_suffix(".json").read_text())
    assert set(result["stages"]) >= {"onnx export", "onnx fp16 export"}, result["stages"]

    fp16 = [v for k, v in result["parity"].items() if "fp16 ONNX" in k]
    assert fp16 and fp16[0]["precision"] == "fp16" and fp16[0]["ok"], result["parity"]
    assert fp16[0]["min_cos"] >= 0.999 and 0 < fp16[0]["max_abs"] < 1e-2  # fp16, not fp32
    assert all(v["ok"] for v in result["parity"].values()), result["parity"]
    assert result["ort_fp16_providers"]["CPUExecutionProvider"]["ok"]

    # What a CPU machine cannot run is named with the reason, not left out.
    tensorrt = [v for k, v in result["unavailable"].items() if k.startswith("tensorrt")]
    assert tensorrt and "CUDA device" in tensorrt[0], result["unavailable"]
    assert "tensorrt" in result["environment"]

    labels = {row["backend"] for row in result["throughput"]}
    assert labels >= set(result["parity"]), labels
    for row in result["throughput"]:
        rates = [v for k, v in row.items() if k.isdigit()]
        assert rates and all(r > 0 for r in rates), row
    table = out.with_suffix(".md").read_text()
    assert "Parity with torch eager fp32" in table and "CPUExecutionProvider" in table
