"""Video-caption datasets: VidOR/VidVRD-style annotation folders and JSONL manifests.

* :func:`load_vidor_dataset` reads ``ROOT/annotations/*.json`` (VidOR fields plus our
  ``video_path``, ``unary_instances`` and ``caption``) into :class:`VideoAnnotation` s.
* :func:`load_manifest_jsonl` reads users' own ``{"video_path", "caption", "tracks"?}`` lines.
* :func:`frame_tracks` gives per-frame track boxes, with labels (supervised) or without (the
  weak mode: the reference trains on unlabelled detector/tracker traces).
* :func:`ground_truth` builds boolean category/unary/binary tensors for evaluation and tests.

Frames are read lazily by :class:`training.video_io.VideoFrames`. Every malformed field raises
:class:`AnnotationError` naming the file and the JSON path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.logic import PredicateProbs
from training.video_io import VideoFrames


class AnnotationError(ValueError):
    """A malformed annotation; the message names the file and the field."""


@dataclass(frozen=True)
class TrackObject:
    tid: int
    category: str | None  # None when unknown (manifests, weak mode)


@dataclass(frozen=True)
class TrackBox:
    tid: int
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax (pixels)


@dataclass(frozen=True)
class RelationInstance:
    subject_tid: int
    object_tid: int
    predicate: str
    begin_fid: int
    end_fid: int  # exclusive


@dataclass(frozen=True)
class UnaryInstance:
    tid: int
    predicate: str
    begin_fid: int
    end_fid: int  # exclusive


@dataclass
class VideoAnnotation:
    """One video: where its frames are, its caption and (optionally) its tracks and labels.

    ``trajectories[f]`` lists the boxes of source frame ``f``; None when no tracks are given.
    """

    video_id: str
    video_path: Path
    caption: str
    objects: list[TrackObject]
    trajectories: list[list[TrackBox]] | None
    relations: list[RelationInstance]
    unary: list[UnaryInstance]
    frame_count: int | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    source: str = ""

    def frames(self, target_fps: float | None = None,
               max_frames: int | None = None) -> VideoFrames:
        """Lazy frames, sampled to ``target_fps`` and at most ``max_frames``."""
        return VideoFrames(self.video_path, target_fps, max_frames, source_fps=self.fps)


@dataclass
class FrameTracks:
    """Track boxes on sampled frames. ``categories`` is None in weak (label-free) mode."""

    frame_indices: list[int]
    track_ids: list[int]
    boxes: np.ndarray  # [T, N, 4] float32, NaN where the track is absent
    present: np.ndarray  # [T, N] bool
    categories: list[str | None] | None


@dataclass
class GroundTruth:
    """Boolean (0/1 float) tensors of the annotated facts on sampled frames."""

    category: torch.Tensor  # [N, C]
    unary: torch.Tensor  # [T, N, U]
    binary: torch.Tensor  # [T, N, N, B]
    present: torch.Tensor  # [T, N] bool
    names: dict[str, list[str]]

    def predicate_probs(self) -> PredicateProbs:
        """The facts as probabilities for :func:`training.logic.evaluate_spec`."""
        return PredicateProbs(self.category, self.unary, self.binary, self.names["categories"],
                              self.names["unary"], self.names["binary"], self.present)


# ----------------------------------------------------------------------------- loading


def load_dataset(path: str | Path) -> list[VideoAnnotation]:
    """A VidOR-style folder or a ``.jsonl`` manifest, by what ``path`` is."""
    path = Path(path)
    return load_manifest_jsonl(path) if path.is_file() else load_vidor_dataset(path)


def load_vidor_dataset(root: str | Path) -> list[VideoAnnotation]:
    """Every ``ROOT/annotations/*.json``, sorted by video id; video paths resolved and checked."""
    root = Path(root)
    folder = root / "annotations"
    if not folder.is_dir():
        raise AnnotationError(f"{root}: no annotations/ folder")
    videos = [parse_vidor_annotation(_read_json(path), root, str(path))
              for path in sorted(folder.glob("*.json"))]
    if not videos:
        raise AnnotationError(f"{folder}: no *.json annotation files")
    ids = [v.video_id for v in videos]
    if len(set(ids)) != len(ids):
        raise AnnotationError(f"{folder}: duplicate video_id values")
    return sorted(videos, key=lambda v: v.video_id)


def parse_vidor_annotation(data: Any, root: Path, source: str) -> VideoAnnotation:
    """One VidOR-style annotation dict; ``video_path`` is relative to ``root``."""
    f = _Fields(source)
    data = f.mapping(data, "$")
    objects = [TrackObject(f.integer(o, "tid", f"$.subject/objects[{i}]"),
                           f.string(o, "category", f"$.subject/objects[{i}]"))
               for i, o in enumerate(f.items(data, "subject/objects", "$"))]
    trajectories = _trajectories(f, f.items(data, "trajectories", "$"), "$.trajectories")
    relations = [_relation(f, r, f"$.relation_instances[{i}]")
                 for i, r in enumerate(f.items(data, "relation_instances", "$"))]
    unary = [_unary(f, u, f"$.unary_instances[{i}]")
             for i, u in enumerate(f.items(data, "unary_instances", "$", required=False))]
    video = VideoAnnotation(
        video_id=f.string(data, "video_id", "$"),
        video_path=_video_path(f, data, root),
        caption=f.string(data, "caption", "$", required=False) or "",
        objects=objects, trajectories=trajectories, relations=relations, unary=unary,
        frame_count=f.integer(data, "frame_count", "$"),
        fps=f.number(data, "fps", "$"),
        width=f.integer(data, "width", "$", required=False),
        height=f.integer(data, "height", "$", required=False),
        source=source,
    )
    _check_consistency(f, video)
    return video


def load_manifest_jsonl(path: str | Path) -> list[VideoAnnotation]:
    """Lines of ``{"video_path", "caption", "tracks"?, "video_id"?, "fps"?}``.

    ``video_path`` is relative to the manifest's folder (or absolute); ``tracks`` is a list per
    source frame of ``{"tid", "bbox": {xmin, ymin, xmax, ymax}}`` (track labels unknown).
    """
    path = Path(path)
    videos = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        source = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AnnotationError(f"{source}: invalid JSON: {exc}") from exc
        videos.append(_manifest_entry(data, path.parent, source, number))
    if not videos:
        raise AnnotationError(f"{path}: manifest has no entries")
    return videos


def _manifest_entry(data: Any, root: Path, source: str, number: int) -> VideoAnnotation:
    f = _Fields(source)
    data = f.mapping(data, "$")
    video_path = _video_path(f, data, root)
    tracks = None
    if data.get("tracks") is not None:
        tracks = _trajectories(f, f.items(data, "tracks", "$"), "$.tracks")
    tids = sorted({b.tid for frame in tracks or [] for b in frame})
    return VideoAnnotation(
        video_id=f.string(data, "video_id", "$", required=False) or f"{video_path.stem}_{number}",
        video_path=video_path,
        caption=f.string(data, "caption", "$"),
        objects=[TrackObject(tid, None) for tid in tids],
        trajectories=tracks, relations=[], unary=[],
        fps=f.number(data, "fps", "$", required=False),
        source=source,
    )


# ----------------------------------------------------------------------------- tracks


def frame_tracks(video: VideoAnnotation, frame_indices: Sequence[int],
                 with_labels: bool = False) -> FrameTracks:
    """Track boxes on the given source frames; ``with_labels=False`` drops the categories."""
    if video.trajectories is None:
        raise AnnotationError(f"{video.source}: video {video.video_id!r} has no tracks")
    track_ids = [o.tid for o in video.objects]
    column = {tid: n for n, tid in enumerate(track_ids)}
    boxes = np.full((len(frame_indices), len(track_ids), 4), np.nan, np.float32)
    for t, fid in enumerate(frame_indices):
        if not 0 <= fid < len(video.trajectories):
            raise AnnotationError(f"{video.source}: frame {fid} is beyond the "
                                  f"{len(video.trajectories)} annotated frames")
        for box in video.trajectories[fid]:
            boxes[t, column[box.tid]] = box.box
    categories = [o.category for o in video.objects] if with_labels else None
    return FrameTracks(list(frame_indices), track_ids, boxes, ~np.isnan(boxes[..., 0]),
                       categories)


def ground_truth(video: VideoAnnotation, frame_indices: Sequence[int], categories: Sequence[str],
                 unary: Sequence[str], binary: Sequence[str]) -> GroundTruth:
    """0/1 tensors of the annotated labels on the given frames (names outside the lists are
    ignored); tracks are in ``video.objects`` order."""
    tracks = frame_tracks(video, frame_indices, with_labels=True)
    column = {tid: n for n, tid in enumerate(tracks.track_ids)}
    frame_pos = {fid: t for t, fid in enumerate(frame_indices)}
    n, frames = len(column), len(frame_indices)
    category = torch.zeros(n, len(categories))
    for o in video.objects:
        if o.category in categories:
            category[column[o.tid], list(categories).index(o.category)] = 1.0
    unary_t = torch.zeros(frames, n, len(unary))
    for u in video.unary:
        if u.predicate in unary:
            for t in _frames_in(frame_pos, u.begin_fid, u.end_fid):
                unary_t[t, column[u.tid], list(unary).index(u.predicate)] = 1.0
    binary_t = torch.zeros(frames, n, n, len(binary))
    for r in video.relations:
        if r.predicate in binary:
            for t in _frames_in(frame_pos, r.begin_fid, r.end_fid):
                binary_t[t, column[r.subject_tid], column[r.object_tid],
                         list(binary).index(r.predicate)] = 1.0
    names = {"categories": list(categories), "unary": list(unary), "binary": list(binary)}
    return GroundTruth(category, unary_t, binary_t, torch.from_numpy(tracks.present), names)


def _frames_in(frame_pos: dict[int, int], begin: int, end: int) -> list[int]:
    return [t for fid, t in frame_pos.items() if begin <= fid < end]


# ----------------------------------------------------------------------------- validation


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot read JSON: {exc}") from exc


def _video_path(f: _Fields, data: dict, root: Path) -> Path:
    relative = f.string(data, "video_path", "$")
    path = Path(relative) if Path(relative).is_absolute() else root / relative
    if not path.exists():
        raise AnnotationError(f"{f.source}: $.video_path: {path} does not exist")
    return path


def _trajectories(f: _Fields, frames: list, path: str) -> list[list[TrackBox]]:
    return [[_track_box(f, box, f"{path}[{t}][{i}]")
             for i, box in enumerate(f.as_list(frame, f"{path}[{t}]"))]
            for t, frame in enumerate(frames)]


def _relation(f: _Fields, data: Any, path: str) -> RelationInstance:
    return RelationInstance(f.integer(data, "subject_tid", path),
                            f.integer(data, "object_tid", path),
                            f.string(data, "predicate", path), *f.span(data, path))


def _unary(f: _Fields, data: Any, path: str) -> UnaryInstance:
    return UnaryInstance(f.integer(data, "tid", path), f.string(data, "predicate", path),
                         *f.span(data, path))


def _track_box(f: _Fields, data: Any, path: str) -> TrackBox:
    data = f.mapping(data, path)
    bbox = f.mapping(data.get("bbox"), f"{path}.bbox")
    coords = tuple(f.number(bbox, key, f"{path}.bbox") for key in ("xmin", "ymin", "xmax", "ymax"))
    if coords[2] < coords[0] or coords[3] < coords[1]:
        raise AnnotationError(f"{f.source}: {path}.bbox: max is below min: {coords}")
    return TrackBox(f.integer(data, "tid", path), coords)


def _check_consistency(f: _Fields, video: VideoAnnotation) -> None:
    tids = {o.tid for o in video.objects}
    if len(tids) != len(video.objects):
        raise AnnotationError(f"{f.source}: $.subject/objects: duplicate tid")
    for t, frame in enumerate(video.trajectories or []):
        for i, box in enumerate(frame):
            if box.tid not in tids:
                raise AnnotationError(f"{f.source}: $.trajectories[{t}][{i}].tid: unknown tid "
                                      f"{box.tid}")
    for i, r in enumerate(video.relations):
        if r.subject_tid not in tids or r.object_tid not in tids:
            raise AnnotationError(f"{f.source}: $.relation_instances[{i}]: unknown tid")
    for i, u in enumerate(video.unary):
        if u.tid not in tids:
            raise AnnotationError(f"{f.source}: $.unary_instances[{i}].tid: unknown tid {u.tid}")


class _Fields:
    """Typed field access that reports ``file: json.path: problem``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def _error(self, path: str, problem: str) -> AnnotationError:
        return AnnotationError(f"{self.source}: {path}: {problem}")

    def mapping(self, data: Any, path: str) -> dict:
        if not isinstance(data, dict):
            raise self._error(path, f"expected an object, got {type(data).__name__}")
        return data

    def _get(self, data: Any, key: str, path: str, required: bool) -> Any:
        data = self.mapping(data, path)
        if key not in data or data[key] is None:
            if required:
                raise self._error(f"{path}.{key}", "missing")
            return None
        return data[key]

    def items(self, data: Any, key: str, path: str, required: bool = True) -> list:
        value = self._get(data, key, path, required)
        return [] if value is None else self.as_list(value, f"{path}.{key}")

    def as_list(self, value: Any, path: str) -> list:
        if not isinstance(value, list):
            raise self._error(path, f"expected a list, got {type(value).__name__}")
        return value

    def string(self, data: Any, key: str, path: str, required: bool = True) -> str | None:
        value = self._get(data, key, path, required)
        if value is not None and not isinstance(value, str):
            raise self._error(f"{path}.{key}", f"expected a string, got {value!r}")
        return value

    def integer(self, data: Any, key: str, path: str, required: bool = True) -> int | None:
        value = self._get(data, key, path, required)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise self._error(f"{path}.{key}", f"expected an integer, got {value!r}")
        return value

    def number(self, data: Any, key: str, path: str, required: bool = True) -> float | None:
        value = self._get(data, key, path, required)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise self._error(f"{path}.{key}", f"expected a number, got {value!r}")
        return None if value is None else float(value)

    def span(self, data: Any, path: str) -> tuple[int, int]:
        begin, end = self.integer(data, "begin_fid", path), self.integer(data, "end_fid", path)
        if not 0 <= begin < end:
            raise self._error(path, f"need 0 <= begin_fid < end_fid, got [{begin}, {end})")
        return begin, end
