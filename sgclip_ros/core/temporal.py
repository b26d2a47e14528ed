"""Symbolic temporal predicates of tracks ("moving", "approaching", ...) from box trajectories.

SGClip scores every frame alone; motion is not something CLIP sees. These predicates are
computed from the tracked boxes instead, in image space and in real time units (stamps, not
frame counts), so they mean the same at 1 fps and at 30 fps:

* ``moving`` / ``still``: speed of the box centre in box diagonals per second
  (``still = 1 - moving``);
* ``approaching`` / ``moving away from``: rate of change of the distance between two box
  centres in units of the pair's mean diagonal per second. Distance is symmetric, so
  "A approaching B" and "B approaching A" get the same score.

Rates are least-squares slopes over a window of ``TemporalParams.window_s`` seconds centred on
each observation, which averages out box jitter and irregular stamps. When the samples in the
window span less than a quarter of it (sparse sampling), the nearest earlier and later
observations (at least ``min_dt_s`` away; closer stamps count as one instant) are used; the
first observation of a track therefore uses the next one, and a single observation gets no
score. Scores are logistic in the rate, centred on the thresholds of :class:`TemporalParams`.
The camera's own motion also moves boxes: on a moving robot these are image-space predicates.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.special import expit

from sgclip_ros.core.scene_graph import Box

TEMPORAL_UNARY = ("moving", "still")
TEMPORAL_BINARY = ("approaching", "moving away from")
TEMPORAL_PREDICATES = TEMPORAL_UNARY + TEMPORAL_BINARY

Track = list[tuple[int, int, Box]]
UnaryScores = dict[tuple[str, str], dict[int, float]]
BinaryScores = dict[tuple[str, str, str], dict[int, float]]


@dataclass(frozen=True)
class TemporalParams:
    """Thresholds (score 0.5) and logistic softness of the temporal predicates.

    Defaults: a box moving 0.3 of its diagonal per second is half "moving" (0.05 at rest,
    0.95 at 0.6 diagonals/s); a distance shrinking by 0.2 mean diagonals per second is half
    "approaching".
    """

    moving_speed: float = 0.3  # box diagonals per second
    moving_softness: float = 0.1  # logistic scale, diagonals per second
    approach_rate: float = 0.2  # pair mean diagonals per second
    approach_softness: float = 0.07  # logistic scale, mean diagonals per second
    window_s: float = 1.0  # width of the centred regression window
    min_dt_s: float = 0.02  # stamps closer than this count as the same instant (jitter)
    min_diagonal_px: float = 8.0  # floor on the normaliser so tiny boxes do not blow up

    def __post_init__(self) -> None:
        for name in ("moving_softness", "approach_softness", "min_dt_s", "min_diagonal_px"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TemporalParams.{name} must be > 0, got {getattr(self, name)}")
        if not self.window_s >= 0:
            raise ValueError(f"TemporalParams.window_s must be >= 0, got {self.window_s}")


@dataclass
class _Series:
    """Per-frame samples of one track or pair, sorted by time."""

    frames: np.ndarray  # (N,) int frame indices
    times_s: np.ndarray  # (N,) seconds since the first sample
    values: np.ndarray  # (N, D) quantity whose rate is wanted
    diagonals: np.ndarray  # (N,) normaliser in pixels


def temporal_scores(
    tracks: dict[str, Track],
    predicates: Sequence[str],
    params: TemporalParams = TemporalParams(),
) -> tuple[UnaryScores, BinaryScores]:
    """Score the requested temporal predicates for every track and ordered pair of tracks.

    ``tracks`` maps a track id to its observations ``(frame_index, stamp_ns, box)``, oldest
    first. Returns ``({(track, predicate): {frame: score}}, {(subject, object, predicate):
    {frame: score}})`` with scores in [0, 1]; binary scores cover the frames both tracks share.
    """
    unknown = [p for p in predicates if p not in TEMPORAL_PREDICATES]
    if unknown:
        raise ValueError(f"unknown temporal predicates {unknown}; known: {TEMPORAL_PREDICATES}")
    unary_wanted = [p for p in TEMPORAL_UNARY if p in predicates]
    binary_wanted = [p for p in TEMPORAL_BINARY if p in predicates]
    by_frame = {tid: _observations_by_frame(obs) for tid, obs in tracks.items()}
    unary: UnaryScores = {}
    binary: BinaryScores = {}
    if unary_wanted:
        for tid, observations in by_frame.items():
            unary.update(_unary_for_track(tid, observations, unary_wanted, params))
    if binary_wanted:
        for a, b in combinations(sorted(by_frame), 2):
            binary.update(_binary_for_pair(a, b, by_frame, binary_wanted, params))
    return unary, binary


def _observations_by_frame(track: Track) -> dict[int, tuple[int, Box]]:
    # A repeated frame index keeps its last observation, like a dict update would.
    return {int(frame): (int(stamp), box) for frame, stamp, box in track}


def _centre(box: Box) -> tuple[float, float]:
    return (box.x1 + box.x2) / 2.0, (box.y1 + box.y2) / 2.0


def _diagonal(box: Box) -> float:
    return float(np.hypot(box.width, box.height))


def _make_series(
    frames: list[int], stamps_ns: list[int], values: list, diagonals: list[float]
) -> _Series:
    order = np.argsort(np.asarray(stamps_ns, dtype=np.int64), kind="stable")
    stamps = np.asarray(stamps_ns, dtype=np.int64)[order]
    # Subtract in integers first: float64 cannot hold epoch nanoseconds exactly.
    times_s = (stamps - stamps[0]).astype(np.float64) * 1e-9
    return _Series(
        frames=np.asarray(frames, dtype=np.int64)[order],
        times_s=times_s,
        values=np.asarray(values, dtype=np.float64).reshape(len(frames), -1)[order],
        diagonals=np.asarray(diagonals, dtype=np.float64)[order],
    )


def _support(times_s: np.ndarray, i: int, params: TemporalParams) -> np.ndarray | None:
    """Indices whose samples estimate the rate at sample ``i``; None when no time elapses."""
    t = times_s[i]
    lo = int(np.searchsorted(times_s, t - params.window_s / 2, side="left"))
    hi = int(np.searchsorted(times_s, t + params.window_s / 2, side="right"))
    # A slope over a tiny time span is mostly jitter, so the window must span a real interval.
    if times_s[hi - 1] - times_s[lo] >= max(params.min_dt_s, params.window_s / 4):
        return np.arange(lo, hi)
    # Window too narrow for the sampling rate: use the nearest neighbours in time instead.
    same_lo = int(np.searchsorted(times_s, t - params.min_dt_s, side="right"))
    same_hi = int(np.searchsorted(times_s, t + params.min_dt_s, side="left"))
    indices = list(range(same_lo, same_hi))
    if same_lo > 0:
        indices.append(same_lo - 1)
    if same_hi < len(times_s):
        indices.append(same_hi)
    if len(indices) == same_hi - same_lo:
        return None
    return np.asarray(sorted(indices))


def _slope(times_s: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Least-squares d(values)/dt; the caller guarantees distinct times."""
    tc = times_s - times_s.mean()
    return (tc[:, None] * (values - values.mean(axis=0))).sum(axis=0) / float(tc @ tc)


def _normalised_rates(series: _Series, params: TemporalParams) -> dict[int, np.ndarray]:
    """Frame index -> rate of ``values`` per second in units of the mean support diagonal."""
    rates: dict[int, np.ndarray] = {}
    for i, frame in enumerate(series.frames):
        idx = _support(series.times_s, i, params)
        if idx is None:
            continue
        scale = max(float(series.diagonals[idx].mean()), params.min_diagonal_px)
        rates[int(frame)] = _slope(series.times_s[idx], series.values[idx]) / scale
    return rates


def _unary_for_track(
    tid: str, observations: dict[int, tuple[int, Box]], wanted: list[str], params: TemporalParams
) -> UnaryScores:
    frames = list(observations)
    series = _make_series(
        frames,
        [observations[f][0] for f in frames],
        [_centre(observations[f][1]) for f in frames],
        [_diagonal(observations[f][1]) for f in frames],
    )
    moving: dict[int, float] = {}
    for frame, velocity in _normalised_rates(series, params).items():
        speed = float(np.linalg.norm(velocity))
        moving[frame] = float(expit((speed - params.moving_speed) / params.moving_softness))
    out: UnaryScores = {}
    if not moving:
        return out  # a single instant: no motion can be measured
    if "moving" in wanted:
        out[(tid, "moving")] = moving
    if "still" in wanted:
        out[(tid, "still")] = {frame: 1.0 - score for frame, score in moving.items()}
    return out


def _binary_for_pair(
    a: str,
    b: str,
    by_frame: dict[str, dict[int, tuple[int, Box]]],
    wanted: list[str],
    params: TemporalParams,
) -> BinaryScores:
    obs_a, obs_b = by_frame[a], by_frame[b]
    common = sorted(set(obs_a) & set(obs_b))
    if len(common) < 2:
        return {}
    distances, diagonals, stamps = [], [], []
    for frame in common:
        (stamp_a, box_a), (stamp_b, box_b) = obs_a[frame], obs_b[frame]
        (xa, ya), (xb, yb) = _centre(box_a), _centre(box_b)
        distances.append(float(np.hypot(xa - xb, ya - yb)))
        diagonals.append((_diagonal(box_a) + _diagonal(box_b)) / 2.0)
        stamps.append((stamp_a + stamp_b) // 2)
    series = _make_series(common, stamps, distances, diagonals)
    approaching: dict[int, float] = {}
    away: dict[int, float] = {}
    for frame, rate in _normalised_rates(series, params).items():
        r = float(rate[0])
        approaching[frame] = float(expit((-r - params.approach_rate) / params.approach_softness))
        away[frame] = float(expit((r - params.approach_rate) / params.approach_softness))
    per_predicate = {"approaching": approaching, "moving away from": away}
    out: BinaryScores = {}
    if not approaching:
        return out
    for predicate in wanted:
        # Distance is symmetric, so both orders share one score series (copied, not aliased).
        out[(a, b, predicate)] = dict(per_predicate[predicate])
        out[(b, a, predicate)] = dict(per_predicate[predicate])
    return out
