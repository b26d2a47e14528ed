"""vision_msgs/Detection2DArray -> core Regions (pairing with frames: core.frame_pairing).

Duck-typed over the vision_msgs versions in use: 4.x (Humble, Jazzy, Kilted: ``bbox.center`` is
a Pose2D with ``position.x``; ``results[i].hypothesis.class_id``) and 3.x (``center.x``,
``results[i].id``). No import of vision_msgs here, so the converter is testable without it.
"""

from __future__ import annotations

import math

from sgclip_ros.core.regions import Region
from sgclip_ros.core.scene_graph import Box


def _center_xy(center) -> tuple[float, float]:
    position = getattr(center, "position", None)
    if position is not None:
        return float(position.x), float(position.y)
    return float(center.x), float(center.y)


def _best_hypothesis(results) -> tuple[str | None, float]:
    best_label, best_score = None, -1.0
    for result in results:
        hyp = getattr(result, "hypothesis", result)
        label = getattr(hyp, "class_id", None)
        if label is None:
            label = getattr(hyp, "id", None)
        score = float(getattr(hyp, "score", 0.0))
        if math.isfinite(score) and score > best_score:  # an inf score is as broken as NaN
            best_label, best_score = (str(label) if label is not None else None), score
    return best_label, (best_score if best_score >= 0 else 1.0)


def regions_from_detections(msg) -> list[Region]:
    """One Region per detection with a finite, positive-size box; the tracking id when given.

    Boxes with a NaN or infinite center or size, or too small to survive float rounding at
    their position (x2 == x1), are skipped like zero-size ones.
    """
    regions = []
    for det in msg.detections:
        cx, cy = _center_xy(det.bbox.center)
        w, h = float(det.bbox.size_x), float(det.bbox.size_y)
        box = Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        finite = all(math.isfinite(v) for v in box.as_list())
        if not (finite and box.x2 > box.x1 and box.y2 > box.y1):
            continue
        label, score = _best_hypothesis(det.results)
        track = str(getattr(det, "id", "") or "") or None
        regions.append(Region(box, track_id=track, label=label, confidence=score))
    return regions
