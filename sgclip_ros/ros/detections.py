"""vision_msgs/Detection2DArray -> core Regions, and a small stamp-keyed buffer to match frames.

Duck-typed over the vision_msgs versions in use: 4.x (Humble, Jazzy, Kilted: ``bbox.center`` is
a Pose2D with ``position.x``; ``results[i].hypothesis.class_id``) and 3.x (``center.x``,
``results[i].id``). No import of vision_msgs here, so the converter is testable without it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

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
        if score > best_score:
            best_label, best_score = (str(label) if label is not None else None), score
    return best_label, (best_score if best_score >= 0 else 1.0)


def regions_from_detections(msg) -> list[Region]:
    """One Region per detection with a positive-size box; the tracking id when one is given."""
    regions = []
    for det in msg.detections:
        cx, cy = _center_xy(det.bbox.center)
        w, h = float(det.bbox.size_x), float(det.bbox.size_y)
        if not (w > 0 and h > 0):
            continue
        label, score = _best_hypothesis(det.results)
        track = str(getattr(det, "id", "") or "") or None
        box = Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        regions.append(Region(box, track_id=track, label=label, confidence=score))
    return regions


class DetectionBuffer:
    """The last ``capacity`` detection sets per camera, keyed by header stamp (thread-safe)."""

    def __init__(self, capacity: int = 64):
        self.capacity = capacity
        self._lock = threading.Lock()
        self._by_camera: dict[str, OrderedDict[int, list[Region]]] = {}

    def add(self, camera: str, stamp_ns: int, regions: list[Region]) -> None:
        with self._lock:
            entries = self._by_camera.setdefault(camera, OrderedDict())
            entries[stamp_ns] = regions
            while len(entries) > self.capacity:
                entries.popitem(last=False)

    def take(self, camera: str, stamp_ns: int) -> list[Region] | None:
        """The regions detected on the frame with exactly this stamp, or None (not yet)."""
        with self._lock:
            return self._by_camera.get(camera, {}).pop(stamp_ns, None)

    def clear(self) -> None:
        with self._lock:
            self._by_camera.clear()
