"""The trainer and the evaluator run end to end on the tiny config (smoke level).

A short weak-mode run writes per-epoch metrics, a plot and a checkpoint that loads through the
node's verified loader; the evaluator writes exactly the issue's metric keys.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sgclip_ros.core.backend_select import load_backend

KEYS = {"category_r1", "category_r5", "unary_r1", "binary_r1", "binary_r5", "binary_rprec",
        "binary_map", "n_videos", "n_frames"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_run")
    run = subprocess.run([sys.executable, "-m", "training.train", "--config",
                          "training/configs/tiny.yaml", "--out", str(out)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return out


def test_training_writes_metrics_plot_and_a_loadable_checkpoint(tiny_run):
    epochs = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(KEYS <= set(e["val"]) and e["train"]["loss"] > 0 for e in epochs)
    assert (tiny_run / "curves.png").stat().st_size > 1000
    choice = load_backend("torch", str(tiny_run), "model", "cpu")
    assert choice.backend.name == "torch" and not choice.untrained


def test_evaluation_writes_exactly_the_metric_keys(tiny_run, tmp_path):
    data = tmp_path / "heldout"
    subprocess.run([sys.executable, "-m", "training.synth", "--out", str(data), "--videos", "2",
                    "--seed", "99", "--frames", "6"], check=True, capture_output=True, timeout=300)
    out = tmp_path / "metrics.json"
    subprocess.run([sys.executable, "-m", "training.evaluate", "--data", str(data),
                    "--checkpoint", str(tiny_run / "model"), "--concepts",
                    "config/concepts/shapes.yaml", "--out", str(out)],
                   check=True, capture_output=True, timeout=300)
    metrics = json.loads(out.read_text())
    assert set(metrics) == KEYS
    assert metrics["n_videos"] == 2 and metrics["n_frames"] == 12
    assert all(0.0 <= metrics[k] <= 1.0 for k in KEYS - {"n_videos", "n_frames"})
