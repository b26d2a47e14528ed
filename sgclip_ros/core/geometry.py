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

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

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
# GeometrySettings' lengths in metres (the concept YAML's `geometry:` numbers).
THRESHOLDS = (
    "near_m",
    "depth_margin_m",
    "vertical_margin_m",
    "lateral_margin_m",
    "contact_m",
    "softness_m",
)


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
    """Where an object is: centroid and axis-aligned extent (m, optical frame), and confidence.

    With an ``up`` vector the object's span along it (lowest, highest point) and across it
    (min and max along two perpendicular axes) are measured on the points themselves: on a
    pitched camera, an optical-frame box would make every object look taller than it is."""

    centroid: tuple[float, float, float]
    extent_min: tuple[float, float, float]
    extent_max: tuple[float, float, float]
    valid_fraction: float  # share of the object's pixels with valid depth (0..1)
    up: tuple[float, float, float] | None = None
    height_span: tuple[float, float] | None = None  # (low, high) along up
    across_span: tuple[tuple[float, float], tuple[float, float]] | None = None  # (min, max) x2

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
    softness_m: float = 0.02  # scores are logistic in (margin past the threshold) / softness_m
    up: tuple[float, float, float] = (0.0, -1.0, 0.0)  # in the optical frame
    enabled: tuple[str, ...] = GEOMETRY_PREDICATES

    def __post_init__(self):
        for name in THRESHOLDS:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"geometry: {name} must be a finite number >= 0, got {value}")
        if self.softness_m <= 0:
            raise ValueError(f"geometry: softness_m must be > 0, got {self.softness_m}")
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
    up: tuple[float, float, float] | None = None,
) -> ObjectGeometry | None:
    """The object's 3D centroid and extent, or None when too few pixels have valid depth.

    The depth band (median and outlier limit) and the centroid come from the mask or, without
    one, from the box shrunk by ``shrink`` of its size on every side; the extent comes from every
    pixel of the mask or the whole box whose depth lies in that band (the inner part alone
    would make objects half their size and stacked objects look apart)."""
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
    z_valid = z[valid]
    median = float(np.median(z_valid))
    band = max(min_band_m, 3.0 * _MAD_TO_SIGMA * float(np.median(np.abs(z_valid - median))))
    inner = _back_project(rows[valid], cols[valid], z_valid, intrinsics, median, band)
    if mask is None:
        rows, cols = _region_pixels(depth_m.shape, box, None, 0.0)
    points = _back_project(rows, cols, depth_m[rows, cols], intrinsics, median, band)
    # One percentile call for every column (the extent, and the spans along and across up):
    # with ~1000 points per object, numpy's per-call overhead is most of the cost.
    axes = _span_axes(up)
    columns = points if axes is None else np.concatenate([points, points @ axes.T], axis=1)
    low, high = np.percentile(columns, [2, 98], axis=0)
    x_median, y_median = np.median(inner[:, :2], axis=0)
    return ObjectGeometry(
        centroid=(float(x_median), float(y_median), median),
        extent_min=tuple(float(v) for v in low[:3]),
        extent_max=tuple(float(v) for v in high[:3]),
        valid_fraction=float(valid.mean()),
        **({} if axes is None else _spans(up, low[3:], high[3:])),
    )


def _back_project(rows, cols, z, intrinsics: Intrinsics, median: float, band: float):
    """[N, 3] points of the pixels whose depth lies within ``band`` of ``median``."""
    keep = np.abs(z - median) <= band  # NaN compares False: no data is dropped here too
    rows, cols, z = rows[keep], cols[keep], z[keep]
    x = (cols + 0.5 - intrinsics.cx) * z / intrinsics.fx
    y = (rows + 0.5 - intrinsics.cy) * z / intrinsics.fy
    return np.stack([x, y, z], axis=1)


def _span_axes(up) -> np.ndarray | None:
    """[3, 3]: unit up, then the two axes across it (None without up)."""
    return None if up is None else _axes_of(tuple(float(u) for u in up))


@functools.lru_cache(maxsize=8)
def _axes_of(up: tuple[float, float, float]) -> np.ndarray:
    """Computed once per up vector, not per object and frame (read only: shared)."""
    unit = np.asarray(up, float) / np.linalg.norm(up)
    return np.vstack([unit, perpendicular_axes(unit)])


def _spans(up, low: np.ndarray, high: np.ndarray) -> dict:
    """ObjectGeometry's span fields from the 2nd/98th percentiles along (up, across 1, 2)."""
    return {
        "up": tuple(float(u) for u in up),
        "height_span": (float(low[0]), float(high[0])),
        "across_span": tuple((float(low[k]), float(high[k])) for k in (1, 2)),
    }


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
    scores = relation_scores(objects, settings)
    return {fact for fact, score in scores.items() if score >= 0.5}


def relation_scores(
    objects: dict[str, ObjectGeometry], settings: GeometrySettings = GeometrySettings()
) -> dict[tuple[str, str, str], float]:
    """Score in (0, 1) of every enabled predicate for every ordered pair of objects.

    Each rule is a signed margin m in metres (m >= 0: the rule holds) and the score is
    logistic in m / ``softness_m``, so 0.5 is exactly the rule's threshold. All pairs are
    computed at once with numpy (about 10 objects per frame must cost well under a millisecond).
    """
    names, margins = pair_margins(objects, settings)
    if len(names) < 2 or not settings.enabled:
        return {}
    out = {}
    off_diagonal = ~np.eye(len(names), dtype=bool)
    for predicate in settings.enabled:
        score = expit(margins[predicate] / settings.softness_m)
        for i, j in zip(*np.nonzero(off_diagonal)):
            out[(names[i], predicate, names[j])] = float(score[i, j])
    return out


# The threshold each predicate's margin is measured against (its scale, for "how close").
MARGIN_SCALE = {
    "near": "near_m",
    "in front of": "depth_margin_m",
    "behind": "depth_margin_m",
    "above": "vertical_margin_m",
    "below": "vertical_margin_m",
    "on top of": "contact_m",
    "3d left of": "lateral_margin_m",
    "3d right of": "lateral_margin_m",
}


def pair_margins(objects: dict[str, ObjectGeometry], settings: GeometrySettings):
    """(names, {predicate: [N, N] signed margins in metres}): row = subject, column = object;
    a margin >= 0 means the predicate holds."""
    names = list(objects)
    if len(names) < 2:
        return names, {}
    return names, _pair_margins([objects[n] for n in names], settings)


def _pair_margins(geoms: list[ObjectGeometry], s: GeometrySettings) -> dict[str, np.ndarray]:
    """[N, N] signed margins (row = subject, column = object) of every predicate."""
    centroid = np.array([g.centroid for g in geoms])
    lo = np.array([g.extent_min for g in geoms])
    hi = np.array([g.extent_max for g in geoms])
    up = np.asarray(s.up, float) / np.linalg.norm(s.up)
    low, high, a_min, a_max = _up_spans(geoms, lo, hi, up, tuple(s.up))
    overlap = np.minimum(a_max[:, None], a_max[None]) - np.maximum(a_min[:, None], a_min[None])
    z = centroid[:, 2]
    gap = low[:, None] - high[None]  # subject's bottom over the object's top
    return {
        "near": s.near_m - np.linalg.norm(centroid[:, None] - centroid[None], axis=2),
        "in front of": (z[None] - z[:, None]) - s.depth_margin_m,
        "behind": (z[:, None] - z[None]) - s.depth_margin_m,
        "above": gap - s.vertical_margin_m,
        "below": (low[None] - high[:, None]) - s.vertical_margin_m,
        "on top of": np.minimum(s.contact_m - np.abs(gap), overlap.min(axis=2)),
        "3d left of": (lo[None, :, 0] - hi[:, None, 0]) - s.lateral_margin_m,
        "3d right of": (lo[:, None, 0] - hi[None, :, 0]) - s.lateral_margin_m,
    }


def _up_spans(geoms, lo: np.ndarray, hi: np.ndarray, up: np.ndarray, up_key: tuple):
    """Low and high along up, and min and max across it ([N], [N], [N, 2], [N, 2]): measured
    on the points where every object has them for this up vector, else from the extents."""
    if all(g.up is not None and np.allclose(g.up, up_key) for g in geoms):
        height = np.array([g.height_span for g in geoms])
        across = np.array([g.across_span for g in geoms])  # [N, 2 axes, (min, max)]
        return height[:, 0], height[:, 1], across[:, :, 0], across[:, :, 1]
    corners = _corners(lo, hi)  # [N, 8, 3]
    height = corners @ up
    across = corners @ perpendicular_axes(up).T  # [N, 8, 2]: the plane the objects rest in
    return height.min(axis=1), height.max(axis=1), across.min(axis=1), across.max(axis=1)


def _corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The 8 corners of each axis-aligned extent: [N, 8, 3]."""
    pick = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], dtype=bool)
    return np.where(pick[None], hi[:, None], lo[:, None])


def perpendicular_axes(up: np.ndarray) -> np.ndarray:
    """Two unit vectors perpendicular to ``up`` (and to each other): [2, 3]."""
    return np.linalg.svd(up.reshape(1, 3))[2][1:]


def frame_geometry(
    depth_m: np.ndarray,
    intrinsics: Intrinsics,
    boxes: list[Box],
    masks: list[np.ndarray | None],
    up: tuple[float, float, float] | None = None,
) -> list[ObjectGeometry | None]:
    """Geometry of each object of one frame (None where its depth is missing)."""
    return [object_geometry(depth_m, intrinsics, b, m, up=up) for b, m in zip(boxes, masks)]


def velocity(stamps_ns: list[int], positions: list[tuple[float, float, float]]):
    """Least-squares velocity (m/s) of positions over time; None with < 2 distinct stamps."""
    t = np.asarray(stamps_ns, dtype=np.float64) * 1e-9
    if len(t) < 2 or np.ptp(t) <= 0:
        return None
    t = t - t.mean()
    p = np.asarray(positions, dtype=np.float64)
    slope = (t[:, None] * (p - p.mean(axis=0))).sum(axis=0) / (t * t).sum()
    return tuple(float(v) for v in slope)
