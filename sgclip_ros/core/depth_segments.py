"""Cuts inside the depth proposer's candidate mask: colour edges and silhouette concavities.

Helpers of :mod:`sgclip_ros.core.depth_proposer` (its docstring gives the method); ROS-free.
"""

from __future__ import annotations

import cv2
import numpy as np

_CHROMA_FLOOR = 24.0  # mean channel value below which chroma is damped (dark pixels are noisy)
_OCCLUDED_SHARE = 0.3  # of a pocket's valid pixels nearer than the region: a notch, not a shape
_NEARER = 0.96  # nearer than the region: depth below this times the region's median depth
_SIDE_PX = 3  # a corner is on the silhouette's side: the level line leaves it within this
_KERNEL = np.ones((3, 3), np.uint8)
_KERNEL5 = np.ones((5, 5), np.uint8)
_SLAB = 0.25  # a part less high than this times its width is not split off
_MARGIN = 6  # px around a component's core: its regrown pixels and the 5x5 closing


def checked_image(image, shape: tuple[int, int]) -> np.ndarray:
    """``image`` if it is an HxWx3 uint8 array of the depth image's ``shape``, else ValueError."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be an HxWx3 uint8 RGB numpy array, got {type(image)}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"image must be HxWx3 uint8 RGB, got {image.dtype} of shape {image.shape}"
        )
    if image.shape[:2] != shape:
        raise ValueError(
            f"image is {image.shape[1]}x{image.shape[0]}, the depth image {shape[1]}x{shape[0]}"
        )
    return image


def colour_edges(image: np.ndarray, limit: float) -> np.ndarray:
    """HxW bool: pixels near a colour edge, where the chroma rgb / mean(rgb) changes by more
    than ``limit`` (summed over the channels) within a 3x3 window.

    Chroma is the same on every face of a uniformly coloured solid under any shading (a
    brightness factor cancels), so the faces of one object are not cut apart; greys have
    (1, 1, 1). It is damped below a mean of _CHROMA_FLOOR (of 255), where sensor noise would
    dominate. Against noise the image is 5x5 median filtered first (edges stay sharp) and the
    chroma smoothed 3x3 (a sharp edge keeps 2/3 of its step): Gaussian noise up to sigma ~15
    grey levels cuts no crumbs. The ShapesWorld colours differ from each other and from light
    backgrounds by 1.7-4."""
    rgb = cv2.medianBlur(np.ascontiguousarray(image), 5).astype(np.float32)
    mean = cv2.transform(rgb, np.full((1, 3), 1 / 3, np.float32))
    chroma = cv2.blur(rgb / np.maximum(mean, np.float32(_CHROMA_FLOOR))[..., None], (3, 3))
    spread = cv2.morphologyEx(chroma, cv2.MORPH_GRADIENT, _KERNEL)  # per channel max - min
    return cv2.transform(spread, np.ones((1, 3), np.float32)) > limit


def neighbour_edges(values: np.ndarray, limit: float) -> np.ndarray:
    """Pixels of a 2D array with an 8-neighbour differing by more than ``limit``."""
    edges = np.zeros(values.shape[:2], bool)
    all_, head, tail = slice(None), slice(None, -1), slice(1, None)
    # right, down, down-right, down-left neighbours: each pair once, both pixels marked
    for a, b in (
        ((all_, head), (all_, tail)),
        ((head, all_), (tail, all_)),
        ((head, head), (tail, tail)),
        ((head, tail), (tail, head)),
    ):
        jump = np.abs(values[a] - values[b]) > limit
        edges[a] |= jump
        edges[b] |= jump
    return edges


def concavity_cuts(labels, grown, filled, up_at, focal, min_px, min_m, min_pixels):
    """Bool mask of level cut lines that split components at deep concave corners.

    The silhouette of a solid is convex, so a deep concave corner on a component's side marks
    where a narrower object stands on a wider one. Per component of ``labels`` (int32, 0 =
    none) of at least 2 x ``min_pixels``, on its mask in ``grown`` (the labels with cut pixels
    rejoined) closed 5x5: every convexity defect of the outline at least ``min_px`` pixels and
    ``min_m`` metres (``focal``: pixels per metre at 1 m) deep is a corner, unless
    - its pocket (between outline and hull) shows mostly nearer depth in ``filled`` (0 = none):
      a notch cut by an occluder in front;
    - the pocket does not open upwards (along the image of the plane's normal, ``up_at(col,
      row, depth) -> (dcol, drow)``): a stack's shoulder has the upper object's side above it;
    - the level line (perpendicular to up) from it runs into the component both ways (a valley
      between side-by-side parts), or the part below reaches out past the part above by less
      than min_px / 2 (a notch in a straight side, see _shoulder);
    - a deeper corner less than 2x the corner depth away along up was cut (the other side of
      the same junction).
    The level line across the component is the cut, kept when it adds a part of at least
    ``min_pixels`` and leaves no slab (see _parts)."""
    cuts = np.zeros(labels.shape, np.uint8)
    outlines, _ = cv2.findContours(
        (labels > 0).view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    for outline in outlines:
        if len(outline) < 8 or cv2.contourArea(outline) < 2 * min_pixels:
            continue
        if not _corners(outline, min_px):  # cheap test first
            continue
        # again on the component closed 5x5: outlines are ragged where cuts and holes meet it
        x, y, w, h = cv2.boundingRect(outline)
        col, row = outline[0].reshape(2)
        x, y = max(x - _MARGIN, 0), max(y - _MARGIN, 0)
        box = np.s_[y : y + h + 2 * _MARGIN, x : x + w + 2 * _MARGIN]
        mask = (grown[box] == labels[row, col]).view(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _KERNEL5)
        contour = max(cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0], key=len)
        corners = _corners(contour, min_px)
        if not corners:
            continue
        depths = filled[box][mask.view(bool)]
        depths = depths[depths > 0]
        if depths.size == 0:
            continue
        depth = float(np.median(depths))
        here = np.zeros_like(mask)  # this component's cuts
        levels: list[float] = []  # their corners' heights in the image, along up
        parts = 1
        junction_px = 2 * max(min_px, min_m * focal / depth)
        for col, row, start, end, deep in sorted(corners, key=lambda c: -c[4]):
            if deep * depth < min_m * focal or _occluded(contour, start, end, filled[box], depth):
                continue
            up = np.asarray(up_at(x + col, y + row, depth), float)
            up /= max(float(np.hypot(*up)), 1e-9)
            mid = (contour[start].reshape(2) + contour[end].reshape(2)) / 2 - (col, row)
            if mid @ up < min_px:  # the pocket is not above the corner: not a stack's shoulder
                continue
            level = float(np.array([col, row]) @ up)
            if any(abs(level - other) < junction_px for other in levels):
                continue  # the other side of a junction already cut (deeper corners first)
            line = _level_line(mask, col, row, up)
            if line is None or not _shoulder(mask, col, row, up, line[2], min_px, junction_px):
                continue
            cut = np.zeros_like(mask)
            cv2.line(cut, line[0], line[1], 1, 1, lineType=4)
            cut &= mask
            split = _parts(mask & ~(here | cut), min_pixels)
            if split is not None and split > parts:
                here |= cut
                levels.append(level)
                parts = split
        cuts[box] |= here
    return cuts.view(bool)


def _corners(contour: np.ndarray, min_px: float) -> list[tuple[int, int, int, int, float]]:
    """(col, row, start index, end index, depth px) of each convexity defect >= min_px deep."""
    try:
        hull = cv2.convexHull(contour, clockwise=False, returnPoints=False)
        defects = cv2.convexityDefects(contour, hull)
    except cv2.error:  # a self-touching contour can give a non-monotonic hull
        return []
    if defects is None:
        return []
    out = []
    for start, end, far, fixed in defects.reshape(-1, 4):  # (N, 1, 4) before OpenCV 5
        if fixed / 256.0 >= min_px:
            col, row = contour[far].reshape(2)
            out.append((int(col), int(row), int(start), int(end), fixed / 256.0))
    return out


def _occluded(contour, start, end, filled, depth) -> bool:
    """Whether the defect's pocket (inside the outline's path and the hull chord, not on the
    path) shows mostly depth nearer than the component's."""
    if end < start:
        path = np.concatenate([contour[start:], contour[: end + 1]])
    else:
        path = contour[start : end + 1]
    pocket = np.zeros(filled.shape, np.uint8)
    cv2.fillPoly(pocket, [path], 1)
    cv2.polylines(pocket, [path], False, 0)
    seen = filled[pocket.view(bool)]
    seen = seen[seen > 0]
    if seen.size == 0:
        return False
    return np.count_nonzero(seen < _NEARER * depth) > _OCCLUDED_SHARE * seen.size


def _level_line(mask, col, row, up):
    """(end, end, outwards unit vector) of the level line from the corner across the mask;
    None for a valley."""
    side = np.array([-up[1], up[0]])
    h, w = mask.shape
    steps = np.arange(1, 2 * (h + w))[:, None]
    ends = []
    for sign in (1.0, -1.0):
        points = np.rint(np.array([col, row]) + sign * steps * side).astype(int)
        inside = (points[:, 0] >= 0) & (points[:, 0] < w) & (points[:, 1] >= 0) & (points[:, 1] < h)
        inside[inside] = mask[points[inside, 1], points[inside, 0]] > 0
        # the run ends at the first gap of _SIDE_PX pixels (ragged outlines have smaller ones)
        gaps = np.convolve(~inside, np.ones(_SIDE_PX, int), "valid")
        gap = np.flatnonzero(gaps == _SIDE_PX)
        last = gap[0] if gap.size else len(inside)
        ends.append((last, points[last - 1] if last > 0 else np.array([col, row])))
    (run_a, end_a), (run_b, end_b) = ends
    if min(run_a, run_b) > _SIDE_PX or max(run_a, run_b) == 0:
        return None  # inside both ways: a valley, not a side corner
    outwards = side if run_a < run_b else -side
    return (int(end_a[0]), int(end_a[1])), (int(end_b[0]), int(end_b[1])), outwards


def _shoulder(mask, col, row, up, outwards, min_px, rise) -> bool:
    """Whether the part below the corner reaches out past the part above by min_px / 2 or more
    (the wider object's top beside the narrower one), not just past a notch in a straight
    side: the run of mask pixels outwards from the corner 2-4 px down (median) against the
    longest run 2 to ``rise`` px up."""
    steps = np.arange(1, 4 * max(min_px, rise))
    below = np.median([_run(mask, col, row, -u * up, outwards, steps) for u in (2, 3, 4)])
    above = max(_run(mask, col, row, u * up, outwards, steps) for u in range(2, int(rise) + 1))
    return below - above >= max(min_px / 2, 2)


def _run(mask, col, row, offset, outwards, steps) -> int:
    """How many mask pixels follow each other from (col, row) + offset along ``outwards``."""
    points = np.rint(np.array([col, row]) + offset + steps[:, None] * outwards).astype(int)
    h, w = mask.shape
    inside = (points[:, 0] >= 0) & (points[:, 0] < w) & (points[:, 1] >= 0) & (points[:, 1] < h)
    inside[inside] = mask[points[inside, 1], points[inside, 0]] > 0
    return int(np.argmin(inside)) if not inside.all() else len(inside)


def _parts(mask: np.ndarray, min_pixels: int) -> int | None:
    """How many 8-connected parts of ``min_pixels`` or more ``mask`` has; None if one of them
    is a slab (its box less than _SLAB times as high as wide): the visible top face of the lower
    object between two cuts, or a cut along a face, not an object."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    parts = stats[1:count][stats[1:count, cv2.CC_STAT_AREA] >= min_pixels]
    if np.any(parts[:, cv2.CC_STAT_HEIGHT] < _SLAB * parts[:, cv2.CC_STAT_WIDTH]):
        return None
    return len(parts)
