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
