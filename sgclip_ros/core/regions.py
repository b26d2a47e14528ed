"""Regions fed to the predictor with each frame: boxes, optional masks, ids and labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sgclip_ros.core.scene_graph import Box


@dataclass
class Region:
    """One object region in one frame.

    ``mask`` is an HxW bool array of the whole frame (None: the box is the mask).
    ``track_id`` comes from an external tracker (None: the built-in tracker assigns one).
    ``label`` is the external detector's class name, if any.
    """

    box: Box
    mask: np.ndarray | None = None
    track_id: str | None = None
    label: str | None = None
    confidence: float = 1.0


def clip_box_to_frame(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer (x1, y1, x2, y2), end exclusive, clipped to the frame and at least 1 px wide/high.

    Raises ValueError when the box lies entirely outside the frame.
    """
    x1 = int(np.floor(max(0.0, min(box.x1, width))))
    y1 = int(np.floor(max(0.0, min(box.y1, height))))
    x2 = int(np.ceil(max(0.0, min(box.x2, width))))
    y2 = int(np.ceil(max(0.0, min(box.y2, height))))
    if x2 <= x1 or y2 <= y1:
        if x1 >= width or y1 >= height or box.x2 <= 0 or box.y2 <= 0:
            raise ValueError(f"box {box.as_list()} lies outside the {width}x{height} frame")
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    return x1, y1, x2, y2


def scale_regions(regions: list[Region], sx: float, sy: float) -> list[Region]:
    """Regions from a detector that saw another resolution, in this frame's pixels.

    Boxes are scaled by (sx, sy); masks are resampled nearest-neighbour to match."""
    out = []
    for r in regions:
        box = Box(r.box.x1 * sx, r.box.y1 * sy, r.box.x2 * sx, r.box.y2 * sy)
        mask = None if r.mask is None else _scale_mask(np.asarray(r.mask), sx, sy)
        out.append(Region(box, mask, r.track_id, r.label, r.confidence))
    return out


def _scale_mask(mask: np.ndarray, sx: float, sy: float) -> np.ndarray:
    h, w = mask.shape[:2]
    new_h, new_w = max(1, round(h * sy)), max(1, round(w * sx))
    rows = np.minimum((np.arange(new_h) / sy).astype(int), h - 1)
    cols = np.minimum((np.arange(new_w) / sx).astype(int), w - 1)
    return mask[rows][:, cols]
