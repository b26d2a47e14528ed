"""Temporal predicates from scripted box trajectories, in real time units."""
from __future__ import annotations

import numpy as np
import pytest

from sgclip_ros.core.scene_graph import Box
from sgclip_ros.core.temporal import (
    TEMPORAL_BINARY,
    TEMPORAL_PREDICATES,
    TEMPORAL_UNARY,
    TemporalParams,
    temporal_scores,
)

SECOND = 1_000_000_000
EPOCH = 1_700_000_000 * SECOND  # realistic ROS stamps: float64 cannot hold them exactly


def trajectory(centres, stamps_ns, w: float = 30, h: float = 40, first_frame: int = 0):
    """Track observations of a w x h box whose centre follows ``centres``."""
    return [
        (first_frame + i, int(stamp), Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        for i, ((cx, cy), stamp) in enumerate(zip(centres, stamps_ns, strict=True))
    ]


def linear(start, velocity_px_s, stamps_ns):
    """Centres moving at constant velocity (px/s) sampled at ``stamps_ns``."""
    t = (np.asarray(stamps_ns, dtype=np.int64) - stamps_ns[0]) / SECOND
    return [(start[0] + velocity_px_s[0] * s, start[1] + velocity_px_s[1] * s) for s in t]


def regular_stamps(n: int, fps: float) -> list[int]:
    return [EPOCH + int(round(i * SECOND / fps)) for i in range(n)]


def test_predicate_tuples():
    assert TEMPORAL_UNARY == ("moving", "still")
    assert TEMPORAL_BINARY == ("approaching", "moving away from")
    assert TEMPORAL_PREDICATES == TEMPORAL_UNARY + TEMPORAL_BINARY


def test_stationary_box_is_still_and_moving_box_is_moving():
    stamps = regular_stamps(30, fps=10)
    tracks = {
        "rest": trajectory(linear((100, 100), (0, 0), stamps), stamps),
        # Diagonal 50 px; 50 px/s is one diagonal per second.
        "walk": trajectory(linear((300, 100), (30, 40), stamps), stamps),
    }
    unary, binary = temporal_scores(tracks, TEMPORAL_UNARY)
    assert binary == {}
    for frame in range(30):
        assert unary[("rest", "still")][frame] > 0.9
        assert unary[("rest", "moving")][frame] < 0.1
        assert unary[("walk", "moving")][frame] > 0.9
        assert unary[("walk", "still")][frame] == pytest.approx(
            1.0 - unary[("walk", "moving")][frame]
        )


def test_speed_is_normalised_by_the_box_diagonal():
    stamps = regular_stamps(20, fps=5)
    params = TemporalParams()
    # 30x40 box: diagonal 50 px; 15 px/s is exactly the 0.3 diagonals/s threshold.
    at_threshold = trajectory(linear((100, 100), (params.moving_speed * 50, 0), stamps), stamps)
    # The same pixel speed on a box ten times larger is slow.
    big = trajectory(linear((100, 100), (params.moving_speed * 50, 0), stamps), stamps, 300, 400)
    unary, _ = temporal_scores({"a": at_threshold, "big": big}, ["moving"], params)
    assert all(s == pytest.approx(0.5, abs=0.02) for s in unary[("a", "moving")].values())
    assert all(s < 0.1 for s in unary[("big", "moving")].values())


def test_rates_use_stamps_not_frame_counts():
    # The same 2 px per frame motion: fast at 30 fps (60 px/s), slow at 1 fps (2 px/s).
    centres = [(100 + 2 * i, 100) for i in range(12)]
    fast = trajectory(centres, regular_stamps(12, fps=30))
    slow = trajectory(centres, regular_stamps(12, fps=1))
    unary, _ = temporal_scores({"fast": fast, "slow": slow}, ["moving"])
    assert min(unary[("fast", "moving")].values()) > 0.9
    assert max(unary[("slow", "moving")].values()) < 0.1


def test_irregular_stamps_give_consistent_scores():
    rng = np.random.default_rng(11)
    stamps = list(EPOCH + np.cumsum(rng.integers(50, 400, size=25)) * 1_000_000)
    tracks = {
        "walk": trajectory(linear((0, 0), (40, 0), stamps), stamps),
        "rest": trajectory(linear((0, 300), (0, 0), stamps), stamps),
    }
    unary, _ = temporal_scores(tracks, ["moving"])
    assert min(unary[("walk", "moving")].values()) > 0.9
    assert max(unary[("rest", "moving")].values()) < 0.1


def test_box_jitter_at_high_frame_rate_is_still():
    rng = np.random.default_rng(5)
    stamps = regular_stamps(60, fps=30)
    centres = [(200 + rng.normal(0, 1.0), 150 + rng.normal(0, 1.0)) for _ in stamps]
    # Stamp jitter too: up to +-5 ms around the nominal frame times.
    jittered = [s + int(rng.integers(-5, 6)) * 1_000_000 for s in stamps]
    unary, _ = temporal_scores({"t": trajectory(centres, jittered)}, ["still"])
    assert min(unary[("t", "still")].values()) > 0.8


def test_first_frame_uses_the_next_observation_and_single_observations_get_no_score():
    stamps = [EPOCH, EPOCH + 2 * SECOND]
    two = trajectory([(100, 100), (200, 100)], stamps)  # 50 px/s = 1 diagonal/s
    one = trajectory([(100, 100)], [EPOCH])
    unary, binary = temporal_scores({"two": two, "one": one}, TEMPORAL_PREDICATES)
    scores = unary[("two", "moving")]
    assert set(scores) == {0, 1}
    assert scores[0] == pytest.approx(scores[1]) and scores[0] > 0.9
    assert ("one", "moving") not in unary and ("one", "still") not in unary
    assert binary == {}  # the tracks share only frame 0


def test_duplicate_stamps_do_not_divide_by_zero():
    stamps = [EPOCH, EPOCH, EPOCH + SECOND // 2, EPOCH + SECOND // 2, EPOCH + SECOND]
    centres = [(100, 100), (101, 100), (100, 100), (101, 101), (100, 100)]
    unary, _ = temporal_scores({"t": trajectory(centres, stamps)}, ["moving"])
    scores = unary[("t", "moving")]
    assert set(scores) == set(range(5))
    assert all(np.isfinite(s) and s < 0.2 for s in scores.values())


def test_all_identical_stamps_give_no_score():
    stamps = [EPOCH] * 4
    centres = [(100, 100), (140, 100), (180, 100), (220, 100)]
    unary, _ = temporal_scores({"t": trajectory(centres, stamps)}, ["moving", "still"])
    assert unary == {}


def test_converging_boxes_approach_each_other_both_ways():
    stamps = regular_stamps(20, fps=4)
    tracks = {
        "a": trajectory(linear((100, 200), (40, 0), stamps), stamps),
        "b": trajectory(linear((600, 200), (-40, 0), stamps), stamps),
    }
    _, binary = temporal_scores(tracks, TEMPORAL_BINARY)
    for subject, obj in (("a", "b"), ("b", "a")):
        assert min(binary[(subject, obj, "approaching")].values()) > 0.9
        assert max(binary[(subject, obj, "moving away from")].values()) < 0.1
    assert not any(key[0] == key[1] for key in binary)


def test_diverging_boxes_move_away_from_each_other():
    stamps = regular_stamps(20, fps=4)
    tracks = {
        "a": trajectory(linear((300, 200), (-30, -10), stamps), stamps),
        "b": trajectory(linear((340, 200), (30, 10), stamps), stamps),
    }
    _, binary = temporal_scores(tracks, ["approaching", "moving away from"])
    for subject, obj in (("a", "b"), ("b", "a")):
        assert min(binary[(subject, obj, "moving away from")].values()) > 0.9
        assert max(binary[(subject, obj, "approaching")].values()) < 0.1


def test_one_box_walking_towards_a_static_one_is_approaching():
    stamps = regular_stamps(10, fps=2)
    tracks = {
        "walker": trajectory(linear((0, 0), (30, 30), stamps), stamps),
        "post": trajectory(linear((400, 400), (0, 0), stamps), stamps),
    }
    unary, binary = temporal_scores(tracks, TEMPORAL_PREDICATES)
    assert min(binary[("walker", "post", "approaching")].values()) > 0.9
    assert min(binary[("post", "walker", "approaching")].values()) > 0.9
    assert max(unary[("post", "moving")].values()) < 0.1


def test_boxes_moving_together_neither_approach_nor_separate():
    stamps = regular_stamps(16, fps=8)
    tracks = {
        "a": trajectory(linear((0, 0), (60, 0), stamps), stamps),
        "b": trajectory(linear((0, 100), (60, 0), stamps), stamps),
    }
    unary, binary = temporal_scores(tracks, TEMPORAL_PREDICATES)
    assert min(unary[("a", "moving")].values()) > 0.9
    for predicate in TEMPORAL_BINARY:
        assert max(binary[("a", "b", predicate)].values()) < 0.1


def test_approach_threshold_is_in_mean_diagonals_per_second():
    params = TemporalParams()
    stamps = regular_stamps(12, fps=4)
    speed = params.approach_rate * 50  # both boxes 30x40: mean diagonal 50 px
    tracks = {
        "a": trajectory(linear((0, 0), (speed, 0), stamps), stamps),
        "b": trajectory(linear((500, 0), (0, 0), stamps), stamps),
    }
    _, binary = temporal_scores(tracks, ["approaching"], params)
    scores = binary[("a", "b", "approaching")].values()
    assert all(s == pytest.approx(0.5, abs=0.02) for s in scores)


def test_pairs_are_scored_on_common_frames_only():
    stamps = regular_stamps(10, fps=2)
    a = trajectory(linear((0, 0), (50, 0), stamps), stamps)
    b = trajectory(linear((600, 0), (-50, 0), stamps[4:]), stamps[4:], first_frame=4)
    c = trajectory(linear((0, 300), (0, 0), stamps[:3]), stamps[:3])
    _, binary = temporal_scores({"a": a, "b": b, "c": c}, ["approaching"])
    assert set(binary[("a", "b", "approaching")]) == set(range(4, 10))
    assert set(binary[("c", "a", "approaching")]) == {0, 1, 2}
    assert ("b", "c", "approaching") not in binary  # no frame in common
    assert ("c", "b", "approaching") not in binary


def test_only_requested_predicates_are_returned_and_scores_are_probabilities():
    rng = np.random.default_rng(2)
    stamps = regular_stamps(15, fps=3)
    tracks = {
        f"t{i}": trajectory([tuple(p) for p in rng.uniform(0, 500, size=(15, 2))], stamps)
        for i in range(4)
    }
    unary, binary = temporal_scores(tracks, ["still", "moving away from"])
    assert {key[1] for key in unary} == {"still"}
    assert {key[2] for key in binary} == {"moving away from"}
    assert len(binary) == 4 * 3  # every ordered pair of distinct tracks
    values = [s for d in (*unary.values(), *binary.values()) for s in d.values()]
    assert all(0.0 <= s <= 1.0 for s in values)
    assert temporal_scores(tracks, []) == ({}, {})


def test_unknown_predicate_and_bad_params_are_rejected():
    with pytest.raises(ValueError, match="unknown temporal predicates"):
        temporal_scores({}, ["flying"])
    with pytest.raises(ValueError, match="moving_softness"):
        TemporalParams(moving_softness=0)
