"""Class-agnostic object proposals from aligned depth: what stands on the dominant plane (ROS-free).

The real-scene fallback when no detector runs. Input: an aligned depth image as float metres
(NaN, inf or <= 0 = no data; convert 16UC1 millimetres with ``geometry.depth_to_metres``) and
the pinhole intrinsics.
Coordinates are the optical frame (x right, y down, z forward); pixel (col, row) back-projects to
x = (col + 0.5 - cx) * z / fx, y = (row + 0.5 - cy) * z / fy, as in ``geometry.object_geometry``.

Method:
1. Plane: RANSAC (seeded, so deterministic) over every ``sample_step``-th valid pixel, refined by
   least squares on its inliers. Its normal is oriented towards the camera, so the signed
   distance n.p + d is the height above the plane on the camera's side. The thresholds are NOT
   scaled with depth: depth noise moves a point along its ray, and the part of that error normal
   to the plane is (camera's distance to the plane) x (relative depth error), so noise
   proportional to depth (1% of it: 1.2 cm for a camera 1.2 m up) is the same all over the
   plane. The defaults suit that; keep both thresholds above ~1.5x this noise (2% at 1.2 m:
   plane_threshold_m=0.03, min_height_m=0.05). Noise growing with depth squared (stereo)
   needs thresholds for the far end of the plane.
2. Candidates: valid pixels more than ``min_height_m`` above the plane, then a 5x5 majority vote
   among the valid pixels (fills missing-depth holes inside objects, drops noise specks on the
   plane) and a 3x3 opening (cuts thin bridges between objects).
3. Depth edges: 8-neighbours whose depths (3x3 median) differ by more than 4% are cut apart,
   so objects that touch in the image at different depths separate. Holes first take the depth
   of their farthest 3x3 neighbour, so a hole on a seam cannot bridge it. Cut pixels then
   rejoin an adjacent component (up to 3 px away), so the masks stay whole.
4. Regions: 8-connected components of at least ``min_pixels`` pixels; confidence = the share of
   the mask's pixels with valid depth; sorted by the count of valid-depth pixels (size times
   confidence), best first, and capped at ``max_objects``.

Decisions and limits:
- No plane (fewer than 20% of the sampled valid points within the threshold of the best plane,
  or the camera itself on the plane), all depth missing or farther than ``max_depth_m``: no
  regions and ``last_plane`` is None. Without a support plane "above it" means nothing, and
  proposing every valid pixel would give one region covering the frame.
- Only the dominant plane is removed: a wall or a second table top in view comes out as a large
  region; if a wall dominates the view, the floor is proposed as a region.
- Objects in contact at about the same depth (stacked boxes, a cup against a box) merge into one
  region; an object's lowest ``min_height_m`` and objects flatter than that are not proposed.
- Depth jumps under 4% (objects less than ~4% of their distance apart in depth) do not split.
- Masks may reach ~1 px into neighbouring no-data areas (the majority vote fills holes).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from sgclip_ros.core.geometry import Intrinsics
from sgclip_ros.core.regions import Region
from sgclip_ros.core.scene_graph import Box

_MIN_PLANE_SHARE = 0.2  # of the sampled valid points, for a plane to count as the support
_RANSAC_MAX_POINTS = 4000  # hypotheses are scored on at most this many sampled points (speed)
_VOTE_WINDOW = 5  # majority vote window (px)
_MIN_VALID_SHARE = 0.4  # of the vote window, else too little data to decide
_JUMP_RATIO = 1.04  # neighbours whose depths differ by more than this factor are cut apart
_REGROW_PASSES = 3  # cut pixels rejoin a component at most this many pixels away
_KERNEL = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class DepthProposerSettings:
    """Thresholds of the depth proposer (metres, pixels)."""

    plane_threshold_m: float = 0.015  # inlier distance to the plane (not scaled with depth)
    min_height_m: float = 0.02  # points at least this far above the plane are object candidates
    ransac_iterations: int = 100
    sample_step: int = 4  # subsample pixels by this step for RANSAC (speed)
    min_pixels: int = 60  # components smaller than this are dropped
    max_objects: int = 16  # the best supported first
    max_depth_m: float = 8.0  # ignore farther points
    seed: int = 0  # RANSAC is deterministic for a given seed

    def __post_init__(self):
        for name in ("plane_threshold_m", "min_height_m", "max_depth_m"):
            value = getattr(self, name)
            zero_ok = name == "min_height_m"
            number = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and (value >= 0 if zero_ok else value > 0)):
                bound = ">= 0" if zero_ok else "> 0"
                raise ValueError(
                    f"depth proposer: {name} must be a finite number {bound}, got {value!r}"
                )
        for name in ("ransac_iterations", "sample_step", "min_pixels", "max_objects", "seed"):
            value = getattr(self, name)
            lowest = 0 if name == "seed" else 1
            integer = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            if not (integer and value >= lowest):
                raise ValueError(
                    f"depth proposer: {name} must be an integer >= {lowest}, got {value!r}"
                )


class Plane(NamedTuple):
    """n.p + d = 0 in the optical frame; |n| = 1, d > 0, so n.p + d is the height above it."""

    normal: tuple[float, float, float]
    d: float


class DepthProposer:
    """Proposes one region per object standing on the dominant plane of an aligned depth image."""

    def __init__(self, settings: DepthProposerSettings = DepthProposerSettings()):
        if not isinstance(settings, DepthProposerSettings):
            raise TypeError(f"settings must be DepthProposerSettings, got {type(settings)}")
        self.settings = settings
        self.last_plane: Plane | None = None  # the support plane of the last call, if any

    def propose(self, depth_m: np.ndarray, intrinsics: Intrinsics) -> list[Region]:
        """Regions (float box, end exclusive; HxW bool mask) of objects above the plane."""
        self.last_plane = None
        depth = _checked_depth(depth_m, intrinsics)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(depth) & (depth > 0) & (depth <= self.settings.max_depth_m)
        if np.count_nonzero(valid) < 3:
            return []
        slope_x = ((np.arange(intrinsics.width) + 0.5 - intrinsics.cx) / intrinsics.fx)[None, :]
        slope_y = ((np.arange(intrinsics.height) + 0.5 - intrinsics.cy) / intrinsics.fy)[:, None]
        plane = self._fit_plane(depth, valid, slope_x, slope_y)
        if plane is None:
            return []
        self.last_plane = plane
        (nx, ny, nz), d = plane
        # n.p + d with p = z * (slope_x, slope_y, 1): one broadcast, no point cloud needed.
        per_metre = (nx * slope_x + ny * slope_y + nz).astype(np.float32)
        with np.errstate(invalid="ignore"):
            raw = valid & (depth * per_metre + np.float32(d) > self.settings.min_height_m)
        candidates = _majority(raw, valid)
        rows = np.flatnonzero(candidates.any(axis=1))
        cols = np.flatnonzero(candidates.any(axis=0))
        if rows.size == 0:
            return []
        # The rest runs in the candidates' bounding box (+1 px so edges at its border are seen).
        roi = np.s_[max(rows[0] - 1, 0) : rows[-1] + 2, max(cols[0] - 1, 0) : cols[-1] + 2]
        labels = _label(candidates[roi], _filled_depth(depth[roi], valid[roi]))
        return self._regions(labels, valid[roi], roi, depth.shape)

    def _fit_plane(self, depth, valid, slope_x, slope_y) -> Plane | None:
        """RANSAC on the subsampled valid points, refined by least squares; None: no support."""
        s = self.settings
        step = s.sample_step
        rows, cols = (index * step for index in np.nonzero(valid[::step, ::step]))
        z = depth[rows, cols].astype(np.float64)
        points = np.column_stack([slope_x[0, cols] * z, slope_y[rows, 0] * z, z])
        if len(points) < 3:
            return None
        rng = np.random.default_rng(s.seed)
        scoring = points
        if len(points) > _RANSAC_MAX_POINTS:
            scoring = points[rng.integers(0, len(points), _RANSAC_MAX_POINTS)]
        best = _ransac(scoring, rng, s.ransac_iterations, s.plane_threshold_m)
        if best is None:
            return None
        normal, d = best
        for _ in range(2):  # the refit moves the inlier set a little: refit once more
            inliers = np.abs(_heights(points, normal, d)) <= s.plane_threshold_m
            if inliers.sum() < 3:
                return None
            normal, d = _least_squares_plane(points[inliers])
        share = np.mean(np.abs(_heights(points, normal, d)) <= s.plane_threshold_m)
        if share < _MIN_PLANE_SHARE or abs(d) <= s.plane_threshold_m:
            return None
        if d < 0:  # orient the normal towards the camera (the origin)
            normal, d = -normal, -d
        return Plane(tuple(float(v) for v in normal), float(d))

    def _regions(self, labels, valid, roi, shape) -> list[Region]:
        """Components of at least min_pixels pixels as regions, best supported first.

        ``labels`` and ``valid`` cover ``roi`` of a frame of ``shape``."""
        count = int(labels.max()) + 1
        areas = np.bincount(labels.ravel(), minlength=count)
        supported = np.bincount(np.where(valid, labels, 0).ravel(), minlength=count)
        kept = np.flatnonzero(areas[1:] >= self.settings.min_pixels) + 1
        kept = kept[np.argsort(-supported[kept], kind="stable")]  # ties keep scan order
        top, left = roi[0].start, roi[1].start
        regions = []
        for k in kept[: self.settings.max_objects]:
            mask = np.zeros(shape, bool)
            mask[roi] = labels == k
            x, y, w, h = cv2.boundingRect(mask[roi].view(np.uint8))
            x, y = x + left, y + top
            box = Box(float(x), float(y), float(x + w), float(y + h))
            regions.append(Region(box=box, mask=mask, confidence=float(supported[k] / areas[k])))
        return regions


def _checked_depth(depth_m, intrinsics: Intrinsics) -> np.ndarray:
    depth = np.asarray(depth_m)
    if depth.ndim != 2:
        raise ValueError(f"depth must be a single-channel HxW image, got shape {depth.shape}")
    if not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(f"depth must be float metres (see depth_to_metres), got {depth.dtype}")
    if depth.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(
            f"depth is {depth.shape[1]}x{depth.shape[0]}, the intrinsics are for "
            f"{intrinsics.width}x{intrinsics.height}"
        )
    return depth.astype(np.float32, copy=False)


def _ransac(points: np.ndarray, rng, iterations: int, threshold: float):
    """(normal, d) of the hypothesis with the most inliers, all hypotheses scored at once."""
    triples = points[rng.integers(0, len(points), size=(iterations, 3))]
    normals = np.cross(triples[:, 1] - triples[:, 0], triples[:, 2] - triples[:, 0])
    norms = np.linalg.norm(normals, axis=1)
    usable = norms > 1e-12  # repeated or collinear samples define no plane
    if not usable.any():
        return None
    normals = normals[usable] / norms[usable, None]
    offsets = -np.einsum("ij,ij->i", normals, triples[usable, 0])
    heights = _heights(points[:, None, :], normals, offsets)  # (points, hypotheses)
    counts = np.count_nonzero(np.abs(heights) <= threshold, axis=0)
    best = int(np.argmax(counts))
    return normals[best], float(offsets[best])


def _heights(points: np.ndarray, normals: np.ndarray, offsets) -> np.ndarray:
    """n.p + d by broadcasting. Not ``points @ normals.T``: BLAS threads on such thin products
    cost milliseconds on a busy CPU."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return x * normals[..., 0] + y * normals[..., 1] + z * normals[..., 2] + offsets


def _least_squares_plane(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Total least squares: the normal is the direction of least spread about the centroid."""
    centroid = points.mean(axis=0)
    centred = points - centroid
    scatter = np.einsum("ij,ik->jk", centred, centred)  # no BLAS (see _heights)
    normal = np.linalg.eigh(scatter)[1][:, 0]
    return normal, float(-normal @ centroid)


def _majority(raw: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pixels where most valid pixels of the vote window are candidates, then a 3x3 opening."""
    votes, support = _window_count(raw), _window_count(valid)
    mask = (2 * votes > support) & (support >= _MIN_VALID_SHARE * _VOTE_WINDOW**2)
    return cv2.morphologyEx(mask.view(np.uint8), cv2.MORPH_OPEN, _KERNEL).view(bool)


def _window_count(mask: np.ndarray) -> np.ndarray:
    """How many pixels of each pixel's vote window are set (outside the frame: none)."""
    counts = mask.view(np.uint8).astype(np.float32)
    size = (_VOTE_WINDOW, _VOTE_WINDOW)
    return cv2.boxFilter(counts, -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT)


def _filled_depth(depth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Depth with holes taking their farthest valid 3x3 neighbour (two passes), 0 if still empty.

    A real neighbour's value keeps a jump sharp (an average would split it into two smaller
    steps under the threshold); 0 makes any hole left a cut."""
    filled = np.where(valid, depth, np.float32(0))
    for _ in range(2):
        holes = filled == 0
        if not holes.any():
            break
        filled = np.where(holes, cv2.dilate(filled, _KERNEL), filled)
    return filled


def _depth_edges(filled: np.ndarray) -> np.ndarray:
    """Pixels with an 8-neighbour more than _JUMP_RATIO nearer or farther.

    On the 3x3 median: it keeps steps sharp but cuts per-pixel noise, which at 2% of depth
    would otherwise cut objects into crumbs."""
    log_depth = np.log(np.maximum(cv2.medianBlur(filled, 3), np.float32(1e-3)))
    limit = np.float32(math.log(_JUMP_RATIO))
    edges = np.zeros(filled.shape, bool)
    all_, head, tail = slice(None), slice(None, -1), slice(1, None)
    # right, down, down-right, down-left neighbours: each pair once, both pixels marked
    for a, b in (
        ((all_, head), (all_, tail)),
        ((head, all_), (tail, all_)),
        ((head, head), (tail, tail)),
        ((head, tail), (tail, head)),
    ):
        jump = np.abs(log_depth[a] - log_depth[b]) > limit
        edges[a] |= jump
        edges[b] |= jump
    return edges


def _label(candidates: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """int32 component label per pixel (0 = none): components of candidates cut at depth edges."""
    cores = candidates & ~_depth_edges(filled)
    count, labels = cv2.connectedComponents(cores.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    cut = candidates & ~cores
    if count < 2 or not cut.any():
        return labels
    # Cut pixels take a 3x3 neighbour's label, one ring per pass (float32 labels are exact to
    # 2**24; dilate picks the largest where two components meet: a pixel or two on seams).
    grown = labels.astype(np.float32)
    for _ in range(_REGROW_PASSES):
        open_ = cut & (grown == 0)
        if not open_.any():
            break
        grown = np.where(open_, cv2.dilate(grown, _KERNEL), grown)
    return grown.astype(np.int32)
