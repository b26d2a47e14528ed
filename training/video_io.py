"""Lazy, sampled access to a video's frames: a folder of numbered images or a video file.

Sampling (:func:`sample_frame_indices`) follows the reference's ``load_video``: a stride of
``int(source_fps / target_fps)`` source frames (every frame when the target is not lower).
Unlike the reference, when more than ``max_frames`` remain they are thinned *evenly* over the
clip rather than cut at the end, so events narrated late in a caption stay visible.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
_TRAILING_NUMBER = re.compile(r"(\d+)$")


class VideoReadError(OSError):
    """A video or frame that cannot be read; the message names the file."""


def sample_frame_indices(frame_count: int, source_fps: float | None = None,
                         target_fps: float | None = None,
                         max_frames: int | None = None) -> list[int]:
    """Source frame indices to use: stride sampling to ``target_fps``, then at most
    ``max_frames`` evenly spaced (first and last kept)."""
    if frame_count <= 0:
        return []
    stride = 1
    if target_fps and source_fps and target_fps < source_fps:
        stride = max(1, int(source_fps / target_fps))
    indices = list(range(0, frame_count, stride))
    if max_frames is not None and len(indices) > max_frames:
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        picks = np.linspace(0, len(indices) - 1, max_frames).round().astype(int)
        indices = [indices[i] for i in picks]
    return indices


def list_frame_files(folder: Path) -> list[Path]:
    """Image files of a frame folder in frame order (by trailing number, then name)."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]

    def key(path: Path) -> tuple[int, str]:
        match = _TRAILING_NUMBER.search(path.stem)
        return (int(match.group(1)) if match else -1, path.name)

    return sorted(files, key=key)


class VideoFrames:
    """Sampled RGB uint8 frames of one video, read on first access.

    ``path``: a folder of numbered images or a video file readable by ``cv2.VideoCapture``.
    ``source_fps``: the frame rate to assume (annotation ``fps``); for video files the
    container's rate is used when it is not given. A frame folder without ``source_fps`` is
    not resampled.
    """

    def __init__(self, path: str | Path, target_fps: float | None = None,
                 max_frames: int | None = None, source_fps: float | None = None) -> None:
        self.path = Path(path)
        self._files: list[Path] | None = None
        self._cache: dict[int, np.ndarray] = {}
        if self.path.is_dir():
            self._files = list_frame_files(self.path)
            if not self._files:
                raise VideoReadError(f"{self.path}: no image frames ({', '.join(IMAGE_SUFFIXES)})")
            count = len(self._files)
        elif self.path.is_file():
            count, container_fps = _probe_video(self.path)
            source_fps = source_fps or container_fps
        else:
            raise VideoReadError(f"{self.path}: no such frame folder or video file")
        self.source_frame_count = count
        self.source_fps = source_fps
        self.frame_indices = sample_frame_indices(count, source_fps, target_fps, max_frames)

    def __len__(self) -> int:
        return len(self.frame_indices)

    def __getitem__(self, position: int) -> np.ndarray:
        source_index = self.frame_indices[position]
        if self._files is not None:
            return _read_image(self._files[source_index])
        if source_index not in self._cache:
            self._decode()
        return self._cache[source_index]

    def __iter__(self) -> Iterator[np.ndarray]:
        for position in range(len(self)):
            yield self[position]

    def read_all(self) -> list[np.ndarray]:
        return list(self)

    def _decode(self) -> None:
        """Decode the file once, front to back, keeping only the sampled frames (seeking is
        not frame-exact for many codecs)."""
        wanted = set(self.frame_indices)
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise VideoReadError(f"{self.path}: cv2.VideoCapture cannot open it")
        try:
            index = 0
            while len(self._cache) < len(wanted):
                ok, frame = capture.read()
                if not ok:
                    break
                if index in wanted:
                    self._cache[index] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                index += 1
        finally:
            capture.release()
        missing = sorted(wanted - set(self._cache))
        if missing:
            raise VideoReadError(f"{self.path}: decoding stopped before frame {missing[0]} "
                                 f"({index} frames decoded)")


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise VideoReadError(f"{path}: cv2.imread cannot decode it")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _probe_video(path: Path) -> tuple[int, float | None]:
    """(frame count, container fps); counts by decoding when the container does not say."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoReadError(f"{path}: cv2.VideoCapture cannot open it")
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = capture.get(cv2.CAP_PROP_FPS) or None
        if count <= 0:
            count = 0
            while capture.grab():
                count += 1
    finally:
        capture.release()
    if count <= 0:
        raise VideoReadError(f"{path}: no decodable frames")
    return count, fps
