"""Evaluation: metric definitions on hand-built predictions, the inference path on frame-folder
and .mp4 datasets, and the shipped model's metrics file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sgclip_ros.core.concepts import load_concepts
from sgclip_ros.core.model import build_model
from sgclip_ros.core.model_config import load_model_config
from training import evaluate as E
from training.checkpoint import export_model_dir
from training.data import load_dataset
from training.eval_metrics import (
    METRIC_KEYS,
    MetricAccumulator,
    VideoScores,
    average_precision,
    r_precision,
    topk_hits,
)
from training.synth import generate_dataset

REPO = Path(__file__).resolve().parent.parent
SHAPES = REPO / "config" / "concepts" / "shapes.yaml"
SHIPPED = REPO / "models" / "shapes_default"


def test_topk_hits_counts_each_true_label():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5]])
    labels = torch.tensor([[1, 0, 0], [1, 0, 1]])
    assert topk_hits(scores, labels, 1) == (2, 3)  # row 1: only predicate 2 is in its top 1
    assert topk_hits(scores, labels, 2) == (2, 3)  # predicate 0 of row 1 is third
    assert topk_hits(scores, labels, 10) == (3, 3)  # K beyond the list counts every entry


def test_r_precision_multi_label_rows():
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.0],  # 2 true, both in top 2 -> 1
                           [0.9, 0.1, 0.8, 0.0],  # 2 true (0, 1): one in top 2 -> 0.5
                           [0.1, 0.2, 0.3, 0.4],  # 1 true (0): not top 1 -> 0
                           [0.5, 0.5, 0.5, 0.5]])  # no true label: not counted
    labels = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    total, rows = r_precision(scores, labels)
    assert rows == 3
    assert total == pytest.approx(1.5)


def test_average_precision_known_values_and_edge_cases():
    ap = average_precision(torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([1, 0, 1, 0]))
    assert ap == pytest.approx(0.5 * 1.0 + 0.5 * (2 / 3))
    assert average_precision(torch.tensor([0.2, 0.9]), torch.tensor([0, 1])) == 1.0
    # Tied scores are one threshold: precision 1/2 at recall 1.
    assert average_precision(torch.tensor([0.5, 0.5]), torch.tensor([1, 0])) == 0.5
    assert average_precision(torch.tensor([0.3, 0.1]), torch.tensor([0, 0])) is None


def test_accumulator_counts_tracks_frames_and_pairs():
    # 2 frames, 3 tracks (track 2 absent in frame 1), 2 categories, 2 unary, 3 binary.
    present = torch.tensor([[True, True, True], [True, True, False]])
    category = torch.tensor([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    cat_y = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # 1 hit of 3 tracks
    unary = torch.zeros(2, 3, 2)
    unary[..., 0] = 1.0
    unary_y = torch.zeros(2, 3, 2)
    unary_y[0, :, 0] = 1.0  # frame 0: 3 hits
    unary_y[1, :, 1] = 1.0  # frame 1: 2 present tracks, 2 misses; track 2 ignored
    binary = torch.zeros(2, 3, 3, 3)
    binary[..., 1] = 0.9
    binary[..., 2] = 0.5
    binary_y = torch.zeros(2, 3, 3, 3)
    binary_y[0, 0, 1] = torch.tensor([1.0, 1.0, 0.0])  # two true: top 1 and top 2 get 1 each
    binary_y[1, 1, 0, 1] = 1.0  # hit
    binary_y[1, 0, 2, 1] = 1.0  # track 2 absent in frame 1: ignored
    binary_y[0, 2, 2, 0] = 1.0  # diagonal: ignored
    acc = MetricAccumulator()
    acc.add(VideoScores(category, unary, binary, present),
            {"category": cat_y, "unary": unary_y, "binary": binary_y})
    out = acc.result()
    assert list(out) == list(METRIC_KEYS)
    assert out["category_r1"] == pytest.approx(1 / 3)
    assert out["category_r5"] == 1.0
    assert out["unary_r1"] == pytest.approx(3 / 5)
    assert out["binary_r1"] == pytest.approx(2 / 3)
    assert out["binary_r5"] == 1.0
    assert out["binary_rprec"] == pytest.approx((0.5 + 1.0) / 2)
    assert 0.0 < out["binary_map"] <= 1.0
    assert out["n_videos"] == 1 and out["n_frames"] == 2


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "tiny"
    model = build_model(load_model_config("sgclip-tiny"), seed=3)
    return export_model_dir(model, load_concepts(SHAPES), folder)


@pytest.mark.parametrize("fmt", ["png", "mp4"])
def test_evaluate_cli_on_frame_folders_and_mp4(tmp_path, tiny_model, fmt):
    data = tmp_path / "data"
    generate_dataset(data, videos=2, seed=5, frames=4, fmt=fmt)
    out = tmp_path / "metrics.json"
    argv = ["--data", str(data), "--checkpoint", str(tiny_model), "--concepts", str(SHAPES),
            "--out", str(out), "--threads", "1"]
    assert E.main(argv) == 0
    metrics = json.loads(out.read_text())
    assert list(metrics) == list(METRIC_KEYS)
    assert metrics["n_videos"] == 2 and metrics["n_frames"] == 8
    for key in METRIC_KEYS[:7]:
        assert 0.0 <= metrics[key] <= 1.0
    assert E.main([*argv, "--untrained"]) == 0


def test_evaluate_cli_rejects_a_missing_model(tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, videos=1, seed=6, frames=4)
    argv = ["--data", str(data), "--checkpoint", str(tmp_path / "nope"), "--concepts",
            str(SHAPES), "--out", str(tmp_path / "m.json")]
    assert E.main(argv) == 2


def test_shipped_model_metrics_file_has_exact_keys():
    metrics = json.loads((SHIPPED / "metrics.json").read_text())
    assert list(metrics) == list(METRIC_KEYS)
    assert metrics["n_videos"] > 0 and metrics["n_frames"] > 0
    assert (SHIPPED / "model.safetensors").stat().st_size <= 25 * 1024 * 1024
    rows = json.loads((SHIPPED / "metrics_rows.json").read_text())
    assert rows["weak"] == metrics and set(rows) == {"untrained", "weak", "supervised"}
    card = (SHIPPED / "MODEL_CARD.md").read_text()
    assert "python -m training.train --config training/configs/shapes.yaml" in card
    assert f"{metrics['binary_rprec']:.3f}" in card


def test_shipped_model_recognises_unseen_shapes_clips(tmp_path):
    """The shipped caption-only model, through the robot's verified loader, on clips of a seed
    it never saw: far above its untrained architecture."""
    data = tmp_path / "unseen"
    generate_dataset(data, videos=6, seed=4242, frames=8)
    videos = load_dataset(data)
    concepts = load_concepts(SHAPES)
    trained = E.evaluate_videos(E.load_eval_backend(SHIPPED, False), videos, concepts, 1.0, 8)
    chance = E.evaluate_videos(E.load_eval_backend(SHIPPED, True), videos, concepts, 1.0, 8)
    assert trained["category_r1"] >= 0.8 and trained["unary_r1"] >= 0.8
    assert trained["binary_rprec"] >= 0.7
    assert trained["binary_rprec"] > chance["binary_rprec"] + 0.2
    assert chance["category_r1"] < 0.6
