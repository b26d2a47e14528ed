"""A small IoU + Hungarian multi-object tracker giving regions stable string ids.

Used when the region source (detector, proposer) provides boxes without track ids. It only
associates boxes between consecutive updates; it has no appearance model, so crossing objects
of the same label can swap ids when their boxes overlap more than they move (the optional
constant-velocity prediction helps there).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

# Cost of a forbidden pairing; finite so the assignment solver always has a solution.
_FORBIDDEN_COST = 1e6
# Extra cost per missed update: on (near) ties, a track seen recently wins over a coasting one.
_STALENESS_COST = 1e-3


@dataclass
class _Track:
    id: str
    box: np.ndarray  # (4,) last observed x1, y1, x2, y2
    velocity: np.ndarray  # (4,) box change per update
    label: str | None
    missed: int = 0

    def predicted_box(self, constant_velocity: bool) -> np.ndarray:
        """Where the box should be at the coming update."""
        if not constant_velocity:
            return self.box
        return self.box + self.velocity * (self.missed + 1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` (N,4) and ``b`` (M,4), x1,y1,x2,y2; degenerate boxes give 0."""
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


class IoUTracker:
    """Associates boxes across updates by IoU with Hungarian matching; ids are never reused.

    ``iou_threshold``: pairs with a lower IoU are never matched. ``max_missed``: a track with
    no match is kept (at its predicted box) for this many consecutive updates, then dropped.
    ``id_prefix`` is put before the counter ("cam0/1"). ``constant_velocity`` predicts a kept
    track's box from its last per-update motion instead of its last box.
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        max_missed: int = 5,
        id_prefix: str = "",
        constant_velocity: bool = False,
    ) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {max_missed}")
        self.iou_threshold = float(iou_threshold)
        self.max_missed = int(max_missed)
        self.id_prefix = id_prefix
        self.constant_velocity = constant_velocity
        self._tracks: list[_Track] = []
        self._next_number = 1

    def reset(self) -> None:
        """Forget all tracks. Numbering continues, so an old id never names a new object."""
        self._tracks = []

    def active_ids(self) -> list[str]:
        """Ids of the tracks kept now (matched or coasting), oldest first."""
        return [track.id for track in self._tracks]

    def update(
        self, boxes: np.ndarray, labels: Sequence[str | None] | None = None
    ) -> list[str]:
        """Associate this update's boxes (N,4 x1,y1,x2,y2) with tracks; ids in input order.

        ``labels`` are detector class names (None: unknown); two different known labels are
        never matched.
        """
        boxes = _as_boxes(boxes)
        labels = [None] * len(boxes) if labels is None else list(labels)
        if len(labels) != len(boxes):
            raise ValueError(f"{len(labels)} labels for {len(boxes)} boxes")
        matches = self._match(boxes, labels)
        ids: list[str | None] = [None] * len(boxes)
        matched_tracks = set()
        for track_index, det_index in matches:
            track = self._tracks[track_index]
            self._absorb(track, boxes[det_index], labels[det_index])
            ids[det_index] = track.id
            matched_tracks.add(track_index)
        self._age_unmatched(matched_tracks)
        for det_index, assigned in enumerate(ids):
            if assigned is None:
                ids[det_index] = self._start_track(boxes[det_index], labels[det_index]).id
        return [str(i) for i in ids]

    def _match(self, boxes: np.ndarray, labels: list[str | None]) -> list[tuple[int, int]]:
        """(track index, detection index) pairs; never below threshold or across labels."""
        if not self._tracks or len(boxes) == 0:
            return []
        predicted = np.stack([t.predicted_box(self.constant_velocity) for t in self._tracks])
        iou = iou_matrix(predicted, boxes)
        allowed = iou >= self.iou_threshold
        for ti, track in enumerate(self._tracks):
            for di, label in enumerate(labels):
                if track.label is not None and label is not None and track.label != label:
                    allowed[ti, di] = False
        missed = np.array([t.missed for t in self._tracks], dtype=np.float64)[:, None]
        cost = np.where(allowed, 1.0 - iou + _STALENESS_COST * missed, _FORBIDDEN_COST)
        rows, cols = linear_sum_assignment(cost)
        return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]

    def _absorb(self, track: _Track, box: np.ndarray, label: str | None) -> None:
        # Motion per update, spread over the updates the track was missing for.
        track.velocity = (box - track.box) / (track.missed + 1)
        track.box = box.copy()
        track.missed = 0
        if label is not None:
            track.label = label

    def _age_unmatched(self, matched: set[int]) -> None:
        kept = []
        for index, track in enumerate(self._tracks):
            if index not in matched:
                track.missed += 1
                if track.missed > self.max_missed:
                    continue
            kept.append(track)
        self._tracks = kept

    def _start_track(self, box: np.ndarray, label: str | None) -> _Track:
        track = _Track(
            id=f"{self.id_prefix}{self._next_number}",
            box=box.copy(),
            velocity=np.zeros(4),
            label=label,
        )
        self._next_number += 1
        self._tracks.append(track)
        return track


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 4))
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("boxes contain NaN or infinite values")
    return array
