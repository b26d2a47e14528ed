"""Class-agnostic object proposals from aligned depth: what stands on the dominant plane (ROS-free).

The real-scene fallback when no detector runs. Input: an aligned depth image as float metres
(NaN, inf or <= 0 = no data; convert 16UC1 millimetres with ``geometry.depth_to_metres``),
the pinhole intrinsics and, optionally, the aligned RGB frame (HxWx3 uint8, the same size).
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
   of their farthest 3x3 neighbour, so a hole on a seam cannot bridge it.
4. Tall components: those with more than 2% of their pixels measured higher than
   ``max_object_height_m`` above the plane (a wall, furniture, a person) are dropped.
5. Colour edges, only given ``image`` (the aligned RGB frame): pixels where the chroma
   (rgb / mean(rgb), 5x5 median filtered, 3x3 smoothed) changes by more than ``colour_edge``
   within 3x3 are cut too. Chroma ignores brightness, so the differently shaded faces of one
   uniformly coloured object stay together, while a red box on a yellow one separates.
6. Concave corners (``split_concave``): the silhouette of a solid is convex, so a concave corner
   deeper than ``concavity_px`` and ``concavity_m`` on a component's side, whose pocket opens
   upwards (beside a narrower object standing on a wider one) and shows no nearer occluder, is
   cut level (perpendicular to the image of the plane's normal) across the component, if both
   sides keep ``min_pixels`` and neither is a slab (less than a quarter as high as wide: the
   visible top face of the lower object, between the cuts of its two corners). Corners less
   than 2x that depth apart along "up" are one junction: only the deeper one cuts. A corner
   that is only a notch in a straight side (the part below does not reach out past the part
   above) does not cut. Cut pixels of steps 3-6 then rejoin an adjacent component (up to 3 px
   away), so the masks stay whole.
7. Regions: 8-connected components of at least ``min_pixels`` pixels; confidence = the share of
   the mask's pixels with valid depth; sorted by the count of valid-depth pixels (size times
   confidence), best first, and capped at ``max_objects``.

Decisions and limits:
- No plane (fewer than 20% of the sampled valid points within the threshold of the best plane,
  or the camera itself on the plane), all depth missing or farther than ``max_depth_m``: no
  regions and ``last_plane`` is None. Without a support plane "above it" means nothing, and
  proposing every valid pixel would give one region covering the frame.
- Only the dominant plane is removed. A wall or a cupboard reaching above
  ``max_object_height_m`` is dropped (with any object merged into it: touching it at about the
  same depth); a lower one (a wall seen only near the floor, a second table top) comes out as a
  region. If a wall dominates the view it is the plane, and the floor comes out as a region
  unless it reaches farther than ``max_object_height_m`` from the wall. Objects taller than
  ``max_object_height_m`` are never proposed.
- Stacks: without an image, objects in contact at about the same depth split only where the
  upper one is narrower by more than ``concavity_px`` and ``concavity_m`` on a side; a stack of
  equally wide objects (or a cup against a box, side by side) stays one region. With an image
  they also split where their colours differ; same-coloured ones of equal width do not. The
  concavity cut is level through the corner: seen from above, where the upper object's sides
  meet the back edge of the lower one's top, the upper object's foot stays with the lower one.
  Flat objects in a stack (less than a quarter as high as wide: a book) are not split off.
- Non-convex objects (a bottle's neck, a mug seen from above) may be cut at their concave
  corners; multi-coloured ones (labels, prints) at strong colour edges: set
  ``split_concave=False`` or pass no image for such scenes. Specular highlights and very dark
  colours (mean below ~24 of 255) give weaker colour edges.
- An object's lowest ``min_height_m`` and objects flatter than that are not proposed.
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

from sgclip_ros.core.depth_segments import (
    checked_image,
    colour_edges,
    concavity_cuts,
    neighbour_edges,
)
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
_TALL_SHARE = 0.02  # of a component's pixels above max_object_height_m: not an object


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
    max_object_height_m: float = 1.5  # regions reaching higher are dropped (walls)
    split_concave: bool = True  # cut components at deep concave corners of their silhouette
    concavity_px: float = 4.0  # a corner counts from this far (px) inside the hull...
    concavity_m: float = 0.01  # ...and this far (metres at the corner's depth)
    colour_edge: float = 0.5  # chroma change cut, given an image (depth_segments.colour_edges)
    # The support plane is the largest plane whose normal is within max_tilt_deg of `up` (in
    # the optical frame; the concept YAML's geometry.up when the node has one): the largest
    # plane overall is often a wall. None: any plane.
    up: tuple[float, float, float] | None = (0.0, -1.0, 0.0)
    max_tilt_deg: float = 45.0

    def __post_init__(self):
        if not isinstance(self.split_concave, bool):
            raise ValueError(
                f"depth proposer: split_concave must be a bool, got {self.split_concave!r}"
            )
        for name in (
            "plane_threshold_m", "min_height_m", "max_depth_m", "max_object_height_m",
            "concavity_px", "concavity_m", "colour_edge", "max_tilt_deg",
        ):
            value = getattr(self, name)
            zero_ok = name in ("min_height_m", "concavity_m")
            number = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and (value >= 0 if zero_ok else value > 0)):
                bound = ">= 0" if zero_ok else "> 0"
                raise ValueError(
                    f"depth proposer: {name} must be a finite number {bound}, got {value!r}"
                )
        if self.up is not None:
            norm = math.sqrt(sum(float(u) ** 2 for u in self.up)) if len(self.up) == 3 else 0.0
            if not (math.isfinite(norm) and norm > 0):
                raise ValueError(f"depth proposer: up must be a non-zero 3-vector, got {self.up!r}")
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

    def propose(
        self,
        depth_m: np.ndarray,
        intrinsics: Intrinsics,
        image: np.ndarray | None = None,
        up: tuple[float, float, float] | None = None,
    ) -> list[Region]:
        """Regions (float box, end exclusive; HxW bool mask) of objects above the plane.

        ``image``: the aligned HxWx3 uint8 RGB frame, optional; masks are then also cut at
        strong colour edges. ``up``: this frame's up vector (default: the settings')."""
        self.last_plane = None
        depth = _checked_depth(depth_m, intrinsics)
        if image is not None:
            image = checked_image(image, depth.shape)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(depth) & (depth > 0) & (depth <= self.settings.max_depth_m)
        if np.count_nonzero(valid) < 3:
            return []
        slope_x = ((np.arange(intrinsics.width) + 0.5 - intrinsics.cx) / intrinsics.fx)[None, :]
        slope_y = ((np.arange(intrinsics.height) + 0.5 - intrinsics.cy) / intrinsics.fy)[:, None]
        plane = self._fit_plane(depth, valid, slope_x, slope_y, up or self.settings.up)
        if plane is None:
            return []
        self.last_plane = plane
        (nx, ny, nz), d = plane
        # n.p + d with p = z * (slope_x, slope_y, 1): one broadcast, no point cloud needed.
        per_metre = (nx * slope_x + ny * slope_y + nz).astype(np.float32)
        with np.errstate(invalid="ignore"):
            height = depth * per_metre + np.float32(d)
            raw = valid & (height > self.settings.min_height_m)
        candidates = _majority(raw, valid)
        rows = np.flatnonzero(candidates.any(axis=1))
        cols = np.flatnonzero(candidates.any(axis=0))
        if rows.size == 0:
            return []
        # The rest runs in the candidates' bounding box (+1 px so edges at its border are seen).
        roi = np.s_[max(rows[0] - 1, 0) : rows[-1] + 2, max(cols[0] - 1, 0) : cols[-1] + 2]
        filled = _filled_depth(depth[roi], valid[roi])
        with np.errstate(invalid="ignore"):
            tall = valid[roi] & (height[roi] > self.settings.max_object_height_m)
        up_at = _image_up(intrinsics, plane, roi[1].start, roi[0].start)
        image = None if image is None else image[roi]
        labels = self._label(candidates[roi], filled, tall, image, up_at, intrinsics)
        return self._regions(labels, valid[roi], roi, depth.shape)

    def _label(self, candidates, filled, tall, image, up_at, intrinsics) -> np.ndarray:
        """int32 label per pixel (0 = none): components of the candidates cut at depth edges,
        colour edges (given an image) and concave corners, without the tall ones; cut pixels
        then rejoin a neighbouring component."""
        s = self.settings
        cores = candidates & ~_depth_edges(filled)
        count, labels = _components(cores)
        # too tall (walls): gone before they cost time, are split, or take in cut pixels
        high = np.bincount(labels[tall], minlength=count) if tall.any() else np.zeros(1, int)
        for k in np.flatnonzero(high[1:]) + 1:
            component = labels == k
            if high[k] > _TALL_SHARE * np.count_nonzero(component):
                cores &= ~component
                candidates = candidates & ~component
                labels[component] = 0
        if image is not None:  # only where components remain
            rows, cols = np.flatnonzero(cores.any(axis=1)), np.flatnonzero(cores.any(axis=0))
            if rows.size:
                window = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
                cores[window] &= ~colour_edges(image[window], s.colour_edge)
                count, labels = _components(cores)
        grown = _regrow(labels, candidates & ~cores, count)
        if not s.split_concave:
            return grown
        focal = (intrinsics.fx + intrinsics.fy) / 2
        cuts = concavity_cuts(labels, grown, filled, up_at, focal, s.concavity_px, s.concavity_m,
                              s.min_pixels)
        if not cuts.any():
            return grown
        cores &= ~cuts
        count, labels = _components(cores)
        return _regrow(labels, candidates & ~cores, count)

    def _fit_plane(self, depth, valid, slope_x, slope_y, up) -> Plane | None:
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
        min_cos = math.cos(math.radians(s.max_tilt_deg)) if up is not None else -1.0
        unit_up = None if up is None else np.asarray(up, float) / np.linalg.norm(up)
        best = _ransac(scoring, rng, s.ransac_iterations, s.plane_threshold_m, unit_up, min_cos)
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


def _ransac(points: np.ndarray, rng, iterations: int, threshold: float, up=None, min_cos=-1.0):
    """(normal, d) of the hypothesis with the most inliers, all hypotheses scored at once;
    only hypotheses whose normal is within acos(min_cos) of ``up`` (either sign) count."""
    triples = points[rng.integers(0, len(points), size=(iterations, 3))]
    normals = np.cross(triples[:, 1] - triples[:, 0], triples[:, 2] - triples[:, 0])
    norms = np.linalg.norm(normals, axis=1)
    usable = norms > 1e-12  # repeated or collinear samples define no plane
    if not usable.any():
        return None
    normals = normals[usable] / norms[usable, None]
    if up is not None:
        level = np.abs(normals @ up) >= min_cos
        if not level.any():
            return None
        normals, triples = normals[level], triples[usable][level]
        usable = np.ones(len(normals), dtype=bool)
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
    return neighbour_edges(log_depth, math.log(_JUMP_RATIO))


def _components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """(count including the background, int32 labels) of the 8-connected components."""
    return cv2.connectedComponents(mask.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)


def _regrow(labels: np.ndarray, cut: np.ndarray, count: int) -> np.ndarray:
    """Cut pixels take a 3x3 neighbour's label, one ring per pass, up to _REGROW_PASSES.

    float32 labels are exact to 2**24; dilate picks the largest where two components meet: a
    pixel or two on seams."""
    if count < 2 or not cut.any():
        return labels
    grown = labels.astype(np.float32)
    for _ in range(_REGROW_PASSES):
        open_ = cut & (grown == 0)
        if not open_.any():
            break
        grown = np.where(open_, cv2.dilate(grown, _KERNEL), grown)
    return grown.astype(np.int32)


def _image_up(intrinsics: Intrinsics, plane: Plane, left: int, top: int):
    """up_at(col, row, depth) -> (dcol, drow): the image direction of the plane's normal at a
    pixel of the region of interest starting at (left, top)."""
    normal = np.asarray(plane.normal)
    fx, fy, cx, cy = intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy

    def up_at(col: int, row: int, depth: float) -> tuple[float, float]:
        point = depth * np.array([(left + col + 0.5 - cx) / fx, (top + row + 0.5 - cy) / fy, 1])
        above = point + 0.05 * normal
        if above[2] <= 0:
            return 0.0, -1.0
        return (fx * (above[0] / above[2] - point[0] / point[2]),
                fy * (above[1] / above[2] - point[1] / point[2]))

    return up_at
