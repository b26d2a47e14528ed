"""bench.geometry stays runnable, writes its figures under the issue's key names, and the
figures of a small run are plausible: small centroid errors, relations mostly right."""

from __future__ import annotations

import json
import math

from bench import geometry

KEYS = {
    "centroid_err_median",
    "centroid_err_p95",
    "centroid_err_solid_median",
    "centroid_err_mask_median",
    "objects_evaluated",
    "distance_range_m",
    "relation_precision",
    "relation_recall",
    "relation_precision_mask",
    "relation_recall_mask",
    "proposer_recall",
    "proposer_precision",
    "geometry_ms_per_frame_10_objects",
    "proposer_ms_per_frame",
    "relations_by_predicate",
    "failed_goals",
    "goal_met",
}


def test_bench_geometry_writes_plausible_figures(tmp_path):
    out = tmp_path / "geometry.json"
    # Seeds 1 and 2: a stack among them, so `on top of` is part of the truth.
    argv = ["--clips", "2", "--frames", "2", "--seed", "1", "--json", str(out), "--check"]
    code = geometry.main(argv)
    result = json.loads(out.read_text())
    assert KEYS <= result.keys()
    assert code == (1 if result["failed_goals"] else 0)
    assert result["goal_met"] == (not result["failed_goals"])
    assert result["objects_evaluated"] >= 20 and result["objects_without_estimate"] == 0
    low, high = result["distance_range_m"]
    assert 0.5 <= low < 1.5 and 3.0 < high <= 5.0
    assert 0.0 < result["centroid_err_median"] < 0.02 and result["centroid_err_p95"] < 0.08
    assert 0.0 < result["centroid_err_mask_median"] < 0.01
    # The visible surface lies before the solid's centre: against the centre the error grows.
    assert result["centroid_err_solid_median"] > result["centroid_err_median"]
    by_predicate = result["relations_by_predicate"]
    assert result["relation_facts_true"] > 100 and by_predicate["on top of"]["true"] > 0
    assert result["relation_precision"] > 0.8 and result["relation_recall"] > 0.8
    assert result["relation_precision_mask"] > 0.95 and result["relation_recall_mask"] > 0.95
    for counts in by_predicate.values():
        assert counts["tp"] + counts["fn"] == counts["true"]
    assert 0.0 < result["proposer_recall"] <= 1.0 and 0.0 < result["proposer_precision"] <= 1.0
    assert result["proposer_recall_not_stacked"] > 0.9
    assert result["geometry_ms_per_frame_10_objects"] > 0 and result["proposer_ms_per_frame"] > 0


def test_failed_goals_names_each_goal_missed():
    good = {"centroid_err_median": 0.01, "centroid_err_p95": 0.05, "relation_precision": 0.97,
            "relation_recall": 0.99, "proposer_recall": 0.95, "depth_added_ms_per_frame": 3.0}
    assert geometry.failed_goals(good) == []
    bad = {**good, "centroid_err_p95": 0.09, "proposer_recall": math.nan}
    failed = geometry.failed_goals(bad)
    assert len(failed) == 2
    assert failed[0].startswith("centroid_err_p95") and failed[1].startswith("proposer_recall")
