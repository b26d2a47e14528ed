"""Sliding window of encoded frames: each frame's crops are encoded once and kept while it stays."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch

from sgclip_ros.core.geometry import ObjectGeometry
from sgclip_ros.core.scene_graph import Box


@dataclass(frozen=True)
class WindowConfig:
    """``size`` frames at most; a graph every ``stride`` new frames once ``min_frames`` are in;
    frames older than ``max_age_s`` behind the newest are dropped (0 = no limit)."""

    size: int = 8
    stride: int = 1
    min_frames: int = 1
    max_age_s: float = 0.0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"window size must be >= 1, got {self.size}")
        if not 1 <= self.stride:
            raise ValueError(f"window stride must be >= 1, got {self.stride}")
        if not 1 <= self.min_frames <= self.size:
            raise ValueError(f"min_frames must be in 1..size ({self.size}), got {self.min_frames}")
        if self.max_age_s < 0:
            raise ValueError(f"max_age_s must be >= 0, got {self.max_age_s}")


@dataclass
class FrameRecord:
    """One frame's objects and the embeddings of their crops (computed once, reused)."""

    stamp_ns: int
    width: int
    height: int
    track_ids: list[str]
    boxes: list[Box]
    confidences: list[float]
    detector_labels: list[str]
    # tower index -> [N, D] object-crop embeddings (only the towers that need object crops)
    object_emb: dict[int, torch.Tensor] = field(default_factory=dict)
    # [P, 2] indices into the object lists (subject, object) and their [P, D] crop embeddings
    pairs: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 2, dtype=torch.long))
    pair_emb: torch.Tensor | None = None
    # Per object (same order as track_ids): 3D geometry from aligned depth, None where the
    # object had too little valid depth; empty when the frame had no depth.
    geometry: list[ObjectGeometry | None] = field(default_factory=list)


class SlidingWindow:
    """Holds the last ``size`` FrameRecords of one stream and decides when a window is due."""

    def __init__(self, config: WindowConfig):
        self.config = config
        self._frames: deque[FrameRecord] = deque(maxlen=config.size)
        self._since_emit = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def frames(self) -> list[FrameRecord]:
        return list(self._frames)

    @property
    def newest_stamp_ns(self) -> int | None:
        return self._frames[-1].stamp_ns if self._frames else None

    def push(self, record: FrameRecord) -> bool:
        """Add the newest frame; True when a scene graph is due for the window now held."""
        self._frames.append(record)
        self._drop_old(record.stamp_ns)
        self._since_emit += 1
        if len(self._frames) < self.config.min_frames or self._since_emit < self.config.stride:
            return False
        self._since_emit = 0
        return True

    def resize(self, config: WindowConfig) -> None:
        """Apply a new window configuration, keeping the newest frames that still fit."""
        self.config = config
        self._frames = deque(self._frames, maxlen=config.size)
        self._since_emit = min(self._since_emit, config.stride - 1)

    def clear(self) -> None:
        self._frames.clear()
        self._since_emit = 0

    def _drop_old(self, newest_ns: int) -> None:
        if self.config.max_age_s <= 0:
            return
        limit = newest_ns - int(self.config.max_age_s * 1e9)
        while self._frames and self._frames[0].stamp_ns < limit:
            self._frames.popleft()
