"""A built-in class-agnostic region proposer for simple scenes (ShapesWorld and the like).

This is a fallback so the pipeline runs without an external detector on uncluttered scenes:
a flat or smoothly varying background with solid-coloured objects on it. It is NOT a
detector: textured backgrounds, shading, shadows, reflections, or objects coloured like the
background defeat it; shaded objects split into bands; two touching objects of the same
colour (or of colours closer than ``color_tolerance``) come out as one region. With the default
tolerance it copes with per-channel noise up to a sigma of about 12 and with linear background
gradients; stronger noise needs a larger tolerance. Cost: about 10 ms for 320x240 and 45 ms
for 640x480 on one CPU core. For real scenes feed regions from a detector/segmenter
(e.g. Grounding DINO + SAM2).

Method:
1. Background model: a colour plane ``c(x, y) = a + b*x + c*y`` fitted robustly (iterated
   least squares dropping outliers) to median colours of short border segments, so a flat
   background and a linear gradient are both modelled; objects on the border are outliers.
2. Foreground: pixels farther than ``color_tolerance`` (RGB Euclidean) from the background
   model, minus isolated specks (noise).
3. Colours: dominant colours are peeled off, densest first, from the flat interior pixels of
   the foreground (anti-aliased edges are not flat, so they never seed a colour). Flat pixels
   near a dominant colour are cores; every other foreground pixel joins the colour of the
   nearest core pixel in the image. Touching objects of different colours thus separate.
4. Regions: connected components of each colour; components under ``min_area`` pixels are
   dropped; the rest are sorted by area, largest first, and capped at ``max_regions``.
"""
from __future__ import annotations

import cv2
import numpy as np

from sgclip_ros.core.regions import Region
from sgclip_ros.core.scene_graph import Box

_MAX_COLOURS = 64  # cap on peeled dominant colours; far above any sane ShapesWorld scene
_MAX_COLOUR_SAMPLES = 40_000  # subsample of flat pixels used to find the dominant colours
_FIT_ITERATIONS = 4
_BORDER_SEGMENTS = 24  # per image side


class ColorBlobProposer:
    """Proposes one region per solid-coloured blob that stands out from the background."""

    def __init__(self, min_area: int = 30, max_regions: int = 16, color_tolerance: float = 40):
        if min_area < 1 or max_regions < 1 or color_tolerance <= 0:
            raise ValueError("min_area and max_regions must be >= 1, color_tolerance > 0")
        self.min_area = int(min_area)
        self.max_regions = int(max_regions)
        self.color_tolerance = float(color_tolerance)

    def propose(self, frame: np.ndarray) -> list[Region]:
        """Regions (float box, end exclusive; HxW bool mask) of an HxWx3 uint8 RGB frame."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 frame, got {frame.shape} {frame.dtype}")
        image = frame.astype(np.float32)
        background = estimate_background(image, self.color_tolerance)
        foreground = self._foreground(image, background)
        if not foreground.any():
            return []
        flat, smoothed = self._flat_pixels(image, foreground)
        colours = self._dominant_colours(image, foreground, flat, smoothed)
        labels = self._label_colours(image, foreground, flat, colours)
        regions = self._regions(labels, len(colours))
        regions.sort(key=lambda item: item[0], reverse=True)
        return [region for _, region in regions[: self.max_regions]]

    def _foreground(self, image: np.ndarray, background: np.ndarray) -> np.ndarray:
        distance = np.linalg.norm(image - background, axis=2)
        mask = distance > self.color_tolerance
        # Drop pixels with fewer than 2 foreground 8-neighbours: noise specks, not objects.
        # (An opening would also do it but would blunt star tips by several pixels.)
        neighbours = cv2.filter2D(
            mask.astype(np.uint8), -1, np.ones((3, 3), np.float32), borderType=cv2.BORDER_CONSTANT
        )
        return mask & (neighbours >= 3)

    def _flat_pixels(
        self, image: np.ndarray, foreground: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Foreground pixels whose 3x3 neighbourhood is one colour, and the 3x3 mean image.

        Anti-aliased edges and the seams between touching objects are never flat, so they
        can neither seed a colour nor anchor a region of a colour they only resemble.
        """
        mean = cv2.blur(image, (3, 3))
        variance = cv2.blur(image * image, (3, 3)) - mean * mean
        local_spread = np.sqrt(np.clip(variance.sum(axis=2), 0, None))
        return foreground & (local_spread < self.color_tolerance / 2), mean

    def _dominant_colours(
        self, image: np.ndarray, foreground: np.ndarray, flat: np.ndarray, smoothed: np.ndarray
    ) -> np.ndarray:
        """(K,3) dominant foreground colours, densest first, from flat interior pixels."""
        samples = smoothed[flat]
        if len(samples) > _MAX_COLOUR_SAMPLES:
            step = len(samples) // _MAX_COLOUR_SAMPLES + 1
            samples = samples[::step]
            min_support = max(1, self.min_area // step)
        else:
            min_support = self.min_area
        colours = _peel_colours(samples, self.color_tolerance, min_support)
        if not colours:
            # Only thin or tiny structures: treat all foreground as one colour.
            return image[foreground].mean(axis=0, keepdims=True)
        return np.asarray(colours, dtype=np.float32)

    def _label_colours(
        self, image: np.ndarray, foreground: np.ndarray, flat: np.ndarray, colours: np.ndarray
    ) -> np.ndarray:
        """HxW colour index per foreground pixel (-1 background).

        Flat pixels close to a dominant colour are the cores; every other foreground pixel
        (edges, seams, noise) takes the colour of the nearest core pixel in the image, so a
        blended edge joins the object it borders instead of a colour it happens to resemble.
        """
        nearest, distance = _nearest_colour(image[foreground], colours)
        labels = np.full(foreground.shape, -1, dtype=np.int32)
        labels[foreground] = nearest
        core = np.zeros_like(foreground)
        core[foreground] = distance <= self.color_tolerance
        core &= flat
        if not core.any():
            return labels
        # Each core pixel is a zero of `not_core`; DIST_LABEL_PIXEL gives every pixel the
        # label of its nearest zero, and zeros are labelled 1, 2, ... in scan order.
        not_core = np.where(core, 0, 1).astype(np.uint8)
        _, nearest_core = cv2.distanceTransformWithLabels(
            not_core, cv2.DIST_L2, cv2.DIST_MASK_5, labelType=cv2.DIST_LABEL_PIXEL
        )
        colour_of_core = np.zeros(int(nearest_core.max()) + 1, dtype=np.int32)
        colour_of_core[nearest_core[core]] = labels[core]
        labels[foreground] = colour_of_core[nearest_core[foreground]]
        return labels

    def _regions(self, labels: np.ndarray, n_colours: int) -> list[tuple[int, Region]]:
        regions: list[tuple[int, Region]] = []
        for colour in range(n_colours):
            layer = (labels == colour).astype(np.uint8)
            count, components, stats, _ = cv2.connectedComponentsWithStats(layer, connectivity=8)
            for component in range(1, count):
                x, y, w, h, area = (int(v) for v in stats[component])
                if area < self.min_area:
                    continue
                box = Box(float(x), float(y), float(x + w), float(y + h))
                regions.append((area, Region(box=box, mask=components == component)))
        return regions


def estimate_background(image: np.ndarray, tolerance: float) -> np.ndarray:
    """HxWx3 float background model: a colour plane fitted robustly to the image border."""
    height, width = image.shape[:2]
    points, colours = _border_samples(image)
    design = np.column_stack([np.ones(len(points)), points[:, 0] / width, points[:, 1] / height])
    inliers = np.ones(len(points), bool)
    coefficients = np.zeros((3, 3))
    for _ in range(_FIT_ITERATIONS):
        coefficients, *_ = np.linalg.lstsq(design[inliers], colours[inliers], rcond=None)
        residuals = np.linalg.norm(colours - design @ coefficients, axis=1)
        # Objects on the border are outliers; the cut shrinks towards the colour tolerance.
        cut = max(tolerance / 2, 3.0 * 1.4826 * float(np.median(residuals)))
        inliers = residuals <= cut
        if inliers.sum() < 3:
            break
    coefficients = coefficients.astype(np.float32)
    across = (np.arange(width, dtype=np.float32) / width)[None, :, None] * coefficients[1]
    down = (np.arange(height, dtype=np.float32) / height)[:, None, None] * coefficients[2]
    return coefficients[0] + across + down


def _border_samples(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) centres and median colours of short segments of the image border.

    Segment medians ignore an object covering less than half a segment and make the plane fit
    cheap; objects covering whole segments are left to the robust fit.
    """
    height, width = image.shape[:2]
    ring = max(1, min(height, width) // 100)
    strips = [
        (image[:ring, :], 0, ring / 2, True),
        (image[height - ring :, :], 0, height - ring / 2, True),
        (image[:, :ring], ring / 2, 0, False),
        (image[:, width - ring :], width - ring / 2, 0, False),
    ]
    points, colours = [], []
    for strip, x0, y0, horizontal in strips:
        length = width if horizontal else height
        edges = np.linspace(0, length, min(_BORDER_SEGMENTS, length) + 1).astype(int)
        for start, stop in zip(edges[:-1], edges[1:], strict=True):
            if stop <= start:
                continue
            segment = strip[:, start:stop] if horizontal else strip[start:stop, :]
            colours.append(np.median(segment.reshape(-1, 3), axis=0))
            middle = (start + stop) / 2
            points.append((middle, y0) if horizontal else (x0, middle))
    return np.asarray(points, dtype=np.float64), np.asarray(colours, dtype=np.float64)


def _peel_colours(samples: np.ndarray, tolerance: float, min_support: int) -> list[np.ndarray]:
    """Dominant colours of ``samples`` (N,3), densest first, each with >= min_support members."""
    remaining = samples.astype(np.float32)
    colours: list[np.ndarray] = []
    bin_size = tolerance / 2
    levels = int(np.floor(255.0 / bin_size)) + 1
    while len(remaining) >= min_support and len(colours) < _MAX_COLOURS:
        bins = np.floor(remaining / bin_size).astype(np.int64)
        # One integer key per colour bin: bincount is far cheaper than np.unique(axis=0).
        keys = (bins[:, 0] * levels + bins[:, 1]) * levels + bins[:, 2]
        densest = int(np.argmax(np.bincount(keys)))
        centre = remaining[keys == densest].mean(axis=0)
        # Re-centre on the members: the densest bin may cut through a colour's noise cloud.
        for _ in range(2):
            near = np.linalg.norm(remaining - centre, axis=1) <= tolerance
            if not near.any():
                break
            centre = np.median(remaining[near], axis=0)
        members = np.linalg.norm(remaining - centre, axis=1) <= tolerance
        if members.sum() < min_support:
            break
        colours.append(centre)
        remaining = remaining[~members]
    return colours


def _nearest_colour(pixels: np.ndarray, colours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and distance to the nearest of ``colours`` (K,3) for each of ``pixels`` (N,3)."""
    best = np.full(len(pixels), np.inf, dtype=np.float32)
    nearest = np.zeros(len(pixels), dtype=np.int32)
    # One colour at a time keeps memory at O(pixels) instead of O(pixels * colours).
    for index, colour in enumerate(colours):
        distance = np.linalg.norm(pixels - colour, axis=1)
        closer = distance < best
        best[closer] = distance[closer]
        nearest[closer] = index
    return nearest, best
