"""Objects in 3D from aligned depth: robust centroids and extents, and metric relations (ROS-free).

Coordinates are metres in the camera's optical frame (x right, y down, z forward), as in
sensor_msgs/CameraInfo. An object's depth is the median of the valid depth pixels under its mask
(or its box shrunk to the inner part, where background and neighbours are least likely), with
outliers more than max(``min_band_m``, 3 robust sigmas) from that median rejected; the inliers are
back-projected through the intrinsics. The share of valid pixels is the object's confidence.

Metric relations are facts of geometry, computed like the temporal predicates rather than scored
by the model: `near`, `in front of` / `behind`, `above` / `below`, `on top of`, `3d left of` /
`3d right of`, along a configurable up vector (default: the optical frame's -y).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sgclip_ros.core.scene_graph import Box

DEPTH_ENCODINGS = ("16UC1", "32FC1")  # millimetres as uint16 (0 = no data), metres as float32
GEOMETRY_PREDICATES = (
    "near",
    "in front of",
    "behind",
    "above",
    "below",
    "on top of",
    "3d left of",
    "3d right of",
)
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of a (rectified) image, in pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self):
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"camera intrinsics: {name} is {value}, not a finite number")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"camera intrinsics: fx and fy must be > 0, got {self.fx}, {self.fy}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera intrinsics: size must be > 0, got {self.width}x{self.height}")

    @classmethod
    def from_k(cls, k, width: int, height: int) -> Intrinsics:
        """From CameraInfo's row-major 3x3 ``k`` (all zeros = uncalibrated: ValueError)."""
        values = [float(v) for v in k]
        if len(values) != 9:
            raise ValueError(f"camera intrinsics: K must have 9 entries, got {len(values)}")
        if not any(values):
            raise ValueError("camera intrinsics: K is all zeros (the camera is not calibrated)")
        return cls(values[0], values[4], values[2], values[5], int(width), int(height))


@dataclass(frozen=True)
class ObjectGeometry:
    """Where an object is: centroid and axis-aligned extent (m, optical frame), and confidence."""

    centroid: tuple[float, float, float]
    extent_min: tuple[float, float, float]
    extent_max: tuple[float, float, float]
    valid_fraction: float  # share of the object's pixels with valid depth (0..1)

    @property
    def size(self) -> tuple[float, float, float]:
        return tuple(b - a for a, b in zip(self.extent_min, self.extent_max))


@dataclass(frozen=True)
class GeometrySettings:
    """Thresholds of the metric relations (the concept YAML's `geometry:` section)."""

    near_m: float = 0.5  # centroid distance under this is `near`
    depth_margin_m: float = 0.1  # `in front of` / `behind`: centroid depths differ by this
    vertical_margin_m: float = 0.05  # `above` / `below`: extents separated by this along up
    lateral_margin_m: float = 0.05  # `3d left of` / `3d right of`
    contact_m: float = 0.05  # `on top of`: the gap between bottom and top is at most this
    up: tuple[float, float, float] = (0.0, -1.0, 0.0)  # in the optical frame
    enabled: tuple[str, ...] = GEOMETRY_PREDICATES

    def __post_init__(self):
        for name in (
            "near_m",
            "depth_margin_m",
            "vertical_margin_m",
            "lateral_margin_m",
            "contact_m",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"geometry: {name} must be a finite number >= 0, got {value}")
        norm = math.sqrt(sum(u * u for u in self.up))
        if not (math.isfinite(norm) and norm > 0):
            raise ValueError(f"geometry: up must be a non-zero vector, got {list(self.up)}")
        unknown = [p for p in self.enabled if p not in GEOMETRY_PREDICATES]
        if unknown:
            raise ValueError(
                f"geometry: unknown relation(s) {unknown}; known: {', '.join(GEOMETRY_PREDICATES)}"
            )


def depth_to_metres(depth: np.ndarray, encoding: str) -> np.ndarray:
    """An aligned depth image as float32 metres, NaN where there is no valid depth."""
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"depth encoding {encoding!r} is not one of {', '.join(DEPTH_ENCODINGS)}")
    if depth.ndim != 2:
        raise ValueError(f"depth must be a single-channel HxW image, got shape {depth.shape}")
    if encoding == "16UC1":
        metres = depth.astype(np.float32) / 1000.0
        metres[depth == 0] = np.nan
    else:
        metres = depth.astype(np.float32, copy=True)
        metres[~np.isfinite(metres) | (metres <= 0)] = np.nan
    return metres


def object_geometry(
    depth_m: np.ndarray,
    intrinsics: Intrinsics,
    box: Box,
    mask: np.ndarray | None = None,
    shrink: float = 0.25,
    min_band_m: float = 0.05,
    min_pixels: int = 10,
) -> ObjectGeometry | None:
    """The object's 3D centroid and extent, or None when too few pixels have valid depth.

    Without a mask, the box shrunk by ``shrink`` of its size on every side is used."""
    if depth_m.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(
            f"depth is {depth_m.shape[1]}x{depth_m.shape[0]}, the intrinsics are for "
            f"{intrinsics.width}x{intrinsics.height}"
        )
    rows, cols = _region_pixels(depth_m.shape, box, mask, shrink)
    if rows.size == 0:
        return None
    z = depth_m[rows, cols]
    valid = np.isfinite(z)
    if valid.sum() < min_pixels:
        return None
    rows, cols, z = rows[valid], cols[valid], z[valid]
    median = float(np.median(z))
    sigma = _MAD_TO_SIGMA * float(np.median(np.abs(z - median)))
    keep = np.abs(z - median) <= max(min_band_m, 3.0 * sigma)
    rows, cols, z = rows[keep], cols[keep], z[keep]
    x = (cols + 0.5 - intrinsics.cx) * z / intrinsics.fx
    y = (rows + 0.5 - intrinsics.cy) * z / intrinsics.fy
    points = np.stack([x, y, z], axis=1)
    low, high = np.percentile(points, 2, axis=0), np.percentile(points, 98, axis=0)
    centroid = (float(np.median(x)), float(np.median(y)), median)
    return ObjectGeometry(
        centroid=centroid,
        extent_min=tuple(float(v) for v in low),
        extent_max=tuple(float(v) for v in high),
        valid_fraction=float(valid.mean()),
    )


def _region_pixels(shape, box: Box, mask, shrink: float) -> tuple[np.ndarray, np.ndarray]:
    height, width = shape
    if mask is not None:
        if mask.shape != shape:
            raise ValueError(f"mask has shape {mask.shape}, the depth image is {shape}")
        return np.nonzero(mask)
    dx, dy = box.width * shrink, box.height * shrink
    x1, x2 = int(max(0, math.floor(box.x1 + dx))), int(min(width, math.ceil(box.x2 - dx)))
    y1, y2 = int(max(0, math.floor(box.y1 + dy))), int(min(height, math.ceil(box.y2 - dy)))
    if x2 <= x1 or y2 <= y1:
        return np.empty(0, int), np.empty(0, int)
    rows, cols = np.mgrid[y1:y2, x1:x2]
    return rows.ravel(), cols.ravel()


def metric_relations(
    objects: dict[str, ObjectGeometry], settings: GeometrySettings = GeometrySettings()
) -> set[tuple[str, str, str]]:
    """(subject, predicate, object) facts that hold between every ordered pair of objects."""
    up = np.asarray(settings.up, float)
    up /= np.linalg.norm(up)
    facts = set()
    for a, ga in objects.items():
        for b, gb in objects.items():
            if a != b:
                facts |= {(a, p, b) for p in _pair_predicates(ga, gb, up, settings)}
    return {f for f in facts if f[1] in settings.enabled}


def _pair_predicates(a: ObjectGeometry, b: ObjectGeometry, up: np.ndarray, s: GeometrySettings):
    ca, cb = np.asarray(a.centroid), np.asarray(b.centroid)
    if np.linalg.norm(ca - cb) < s.near_m:
        yield "near"
    if ca[2] < cb[2] - s.depth_margin_m:
        yield "in front of"
    if cb[2] < ca[2] - s.depth_margin_m:
        yield "behind"
    a_low, a_high = _span(a, up)
    b_low, b_high = _span(b, up)
    if a_low > b_high + s.vertical_margin_m:
        yield "above"
    if b_low > a_high + s.vertical_margin_m:
        yield "below"
    if abs(a_low - b_high) <= s.contact_m and _overlap_across(a, b, up):
        yield "on top of"
    if a.extent_max[0] < b.extent_min[0] - s.lateral_margin_m:
        yield "3d left of"
    if b.extent_max[0] < a.extent_min[0] - s.lateral_margin_m:
        yield "3d right of"


def _corners(g: ObjectGeometry) -> np.ndarray:
    lo, hi = g.extent_min, g.extent_max
    return np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )


def _span(g: ObjectGeometry, up: np.ndarray) -> tuple[float, float]:
    """The object's lowest and highest point along ``up``."""
    heights = _corners(g) @ up
    return float(heights.min()), float(heights.max())


def _overlap_across(a: ObjectGeometry, b: ObjectGeometry, up: np.ndarray) -> bool:
    """Whether the two extents overlap in the plane perpendicular to ``up`` (a rests on b)."""
    basis = np.linalg.svd(up.reshape(1, 3))[2][1:]  # two unit vectors perpendicular to up
    pa, pb = _corners(a) @ basis.T, _corners(b) @ basis.T
    return bool(np.all(pa.min(axis=0) < pb.max(axis=0)) and np.all(pb.min(axis=0) < pa.max(axis=0)))
