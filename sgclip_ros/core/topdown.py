"""A top-down plot of a 3D scene graph: object positions and metric relations (ROS-free).

Looking down on the camera's optical frame: x (right) across, z (forward) up the image, the
camera at the bottom centre. Each object with a position is a disc in its label's colour with
"id: label"; the best metric relations are lines between the objects with their predicate.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

from sgclip_ros.core.geometry import GEOMETRY_PREDICATES
from sgclip_ros.core.scene_graph import SceneGraph

_BG, _GRID, _TEXT, _LINK = (250, 250, 250), (220, 220, 220), (30, 30, 30), (200, 120, 0)


def label_rgb(label: str) -> tuple[int, int, int]:
    """A stable, saturated colour per label."""
    digest = hashlib.sha256(label.encode()).digest()
    hsv = np.uint8([[[digest[0] % 180, 200, 220]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def draw_topdown(
    graph: SceneGraph, size: int = 480, max_relations: int = 12, range_m: float | None = None
) -> np.ndarray:
    """RGB uint8 [size, size, 3]; ``range_m`` (default: fit the objects) is the depth shown."""
    image = np.full((size, size, 3), _BG, np.uint8)
    placed = {o.id: o for o in graph.objects if o.has_position}
    far = range_m or max([o.position[2] for o in placed.values()] + [1.0]) * 1.15
    scale = (size - 40) / far  # pixels per metre

    def pixel(p) -> tuple[int, int]:
        return int(size / 2 + p[0] * scale), int(size - 20 - p[2] * scale)

    _grid(image, far, scale, pixel)
    relations = [
        r for r in graph.relations
        if r.predicate in GEOMETRY_PREDICATES and r.subject_id in placed and r.object_id in placed
    ]
    for r in sorted(relations, key=lambda r: -r.score)[:max_relations]:
        a, b = pixel(placed[r.subject_id].position), pixel(placed[r.object_id].position)
        cv2.line(image, a, b, _LINK, 1, cv2.LINE_AA)
        mid = ((a[0] + b[0]) // 2, (a[1] + b[1]) // 2)
        cv2.putText(image, r.predicate, mid, cv2.FONT_HERSHEY_SIMPLEX, 0.35, _LINK, 1, cv2.LINE_AA)
    for obj in placed.values():
        centre = pixel(obj.position)
        cv2.circle(image, centre, 7, label_rgb(obj.label), -1, cv2.LINE_AA)
        text = f"{obj.id}: {obj.label}"
        cv2.putText(image, text, (centre[0] + 9, centre[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    _TEXT, 1, cv2.LINE_AA)
    title = f"top-down, {graph.frame_id or 'camera frame'}: {len(placed)} positioned"
    cv2.putText(image, title, (6, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, _TEXT, 1, cv2.LINE_AA)
    return image


def _grid(image: np.ndarray, far: float, scale: float, pixel) -> None:
    """Range rings every metre and the camera's position."""
    origin = pixel((0.0, 0.0, 0.0))
    for metres in range(1, int(far) + 1):
        cv2.circle(image, origin, int(metres * scale), _GRID, 1, cv2.LINE_AA)
        cv2.putText(image, f"{metres} m", (origin[0] + 3, origin[1] - int(metres * scale) - 2),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.35, _GRID, 1, cv2.LINE_AA)
    cv2.drawMarker(image, origin, _TEXT, cv2.MARKER_TRIANGLE_UP, 12, 2)


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two RGB images next to each other, the shorter one padded at the bottom."""
    height = max(left.shape[0], right.shape[0])

    def pad(img):
        out = np.full((height, img.shape[1], 3), 255, np.uint8)
        out[: img.shape[0]] = img
        return out

    return np.concatenate([pad(left), pad(right)], axis=1)
