"""Object and pair crops of every training video, computed once per run and cached on disk.

The crops are exactly the inference path's: :func:`sgclip_ros.core.crops.object_crops` and
:func:`~sgclip_ros.core.crops.pair_crops` on the tracks' integer boxes (clipped like
:class:`~sgclip_ros.core.frame_encoder.FrameEncoder` does), resized by
:func:`~sgclip_ros.core.preprocess.resize_crop_uint8`; :func:`normalise` finishes what
:func:`~sgclip_ros.core.preprocess.preprocess_crops` does. Pixels are kept as uint8 [3, S, S].

Tracks come from the annotation **without their labels** (``frame_tracks(with_labels=False)``);
the labels are stored apart (``VideoCrops.labels``) and only the supervised baseline and the
validation metrics read them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sgclip_ros.core.concepts import ConceptSet
from sgclip_ros.core.crops import object_crops, pair_crops
from sgclip_ros.core.frame_encoder import all_pairs
from sgclip_ros.core.model_config import PreprocessConfig
from sgclip_ros.core.preprocess import resize_crop_uint8
from sgclip_ros.core.regions import clip_box_to_frame
from sgclip_ros.core.scene_graph import Box
from training.data import VideoAnnotation, frame_tracks, ground_truth

CACHE_VERSION = "crops-1"
LABEL_KEYS = ("category", "unary", "binary")


@dataclass
class VideoCrops:
    """One video's crops. ``obj_index`` rows are (frame, track); ``pair_index`` rows are
    (frame, subject track, object track); ``labels`` (0/1 tensors) may be None."""

    video_id: str
    caption: str
    num_frames: int
    num_tracks: int
    obj_index: torch.Tensor  # [M, 2] long
    obj_pixels: torch.Tensor  # [M, 3, S, S] uint8
    pair_index: torch.Tensor  # [P, 3] long
    pair_pixels: torch.Tensor  # [P, 3, S, S] uint8
    present: torch.Tensor  # [T, N] bool
    labels: dict[str, torch.Tensor] | None = None


def normalise(pixels: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """uint8 [B, 3, S, S] -> float32 normalised, bit-identical to ``preprocess_crops``."""
    scaled = (pixels.to(torch.float64) * (1 / 255)).to(torch.float32)
    mean = torch.tensor(cfg.mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    return (scaled - mean) / std


def _resized(crops: list[torch.Tensor], cfg: PreprocessConfig) -> torch.Tensor:
    s = cfg.image_size
    if not crops:
        return torch.zeros((0, 3, s, s), dtype=torch.uint8)
    return torch.stack([resize_crop_uint8(c, cfg) for c in crops])


def frame_boxes(boxes, width: int, height: int) -> torch.Tensor:
    """[K, 4] float boxes -> int64 boxes clipped as the inference encoder clips regions."""
    clipped = [clip_box_to_frame(Box(*map(float, b)), width, height) for b in boxes]
    return torch.tensor(clipped, dtype=torch.long).reshape(-1, 4)


def build_video_crops(video: VideoAnnotation, cfg: PreprocessConfig, fps: float | None,
                      max_frames: int | None, max_tracks: int,
                      concepts: ConceptSet | None = None) -> VideoCrops:
    """Crop every present track and ordered pair of every sampled frame of ``video``."""
    frames = video.frames(fps, max_frames)
    tracks = frame_tracks(video, frames.frame_indices, with_labels=False)
    keep = min(len(tracks.track_ids), max_tracks)
    present = torch.from_numpy(tracks.present[:, :keep].copy())
    obj_rows, obj_px, pair_rows, pair_px = [], [], [], []
    for t, image in enumerate(frames):
        ids = present[t].nonzero().flatten()
        if len(ids) == 0:
            continue
        frame = torch.from_numpy(image)
        boxes = frame_boxes(tracks.boxes[t, ids.numpy()], image.shape[1], image.shape[0])
        obj_px.append(_resized(object_crops(frame, boxes), cfg))
        obj_rows += [(t, int(n)) for n in ids]
        pairs = all_pairs(len(ids))
        if len(pairs):
            pair_px.append(_resized(pair_crops(frame, boxes, None, pairs), cfg))
            pair_rows += [(t, int(ids[s]), int(ids[o])) for s, o in pairs.tolist()]
    labels = None
    if concepts is not None and all(o.category is not None for o in video.objects):
        gt = ground_truth(video, frames.frame_indices, concepts.categories, concepts.unary,
                          concepts.binary)
        labels = {"category": gt.category[:keep], "unary": gt.unary[:, :keep],
                  "binary": gt.binary[:, :keep, :keep]}
    s = cfg.image_size
    return VideoCrops(
        video.video_id, video.caption, len(frames), keep,
        torch.tensor(obj_rows, dtype=torch.long).reshape(-1, 2),
        torch.cat(obj_px) if obj_px else torch.zeros((0, 3, s, s), dtype=torch.uint8),
        torch.tensor(pair_rows, dtype=torch.long).reshape(-1, 3),
        torch.cat(pair_px) if pair_px else torch.zeros((0, 3, s, s), dtype=torch.uint8),
        present, labels,
    )


def save_video_crops(crops: VideoCrops, path: Path) -> None:
    tensors = {"obj_index": crops.obj_index, "obj_pixels": crops.obj_pixels,
               "pair_index": crops.pair_index, "pair_pixels": crops.pair_pixels,
               "present": crops.present}
    for key, value in (crops.labels or {}).items():
        tensors[f"label.{key}"] = value
    meta = {"video_id": crops.video_id, "caption": crops.caption,
            "num_frames": str(crops.num_frames), "num_tracks": str(crops.num_tracks)}
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    tmp.replace(path)


def load_video_crops(path: Path) -> VideoCrops:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    labels = {k: tensors[f"label.{k}"] for k in LABEL_KEYS if f"label.{k}" in tensors}
    return VideoCrops(meta["video_id"], meta["caption"], int(meta["num_frames"]),
                      int(meta["num_tracks"]), tensors["obj_index"], tensors["obj_pixels"],
                      tensors["pair_index"], tensors["pair_pixels"], tensors["present"],
                      labels or None)


def cache_key(videos: list[VideoAnnotation], cfg: PreprocessConfig, fps, max_frames,
              max_tracks: int, concepts: ConceptSet | None) -> str:
    """Hash of everything the cached pixels and labels depend on."""
    payload = json.dumps({
        "version": CACHE_VERSION, "preprocess": cfg.to_dict(), "fps": fps,
        "max_frames": max_frames, "max_tracks": max_tracks,
        "concepts": concepts.to_dict() if concepts else None,
        "videos": [[v.video_id, str(v.video_path), v.caption] for v in videos],
    }, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_cache(videos: list[VideoAnnotation], folder: Path, cfg: PreprocessConfig,
                fps: float | None, max_frames: int | None, max_tracks: int,
                concepts: ConceptSet | None = None, rank: int = 0, world: int = 1,
                progress=None) -> Path:
    """Write the crops of this rank's share of ``videos`` under ``folder/<key>/``."""
    key = cache_key(videos, cfg, fps, max_frames, max_tracks, concepts)
    out = Path(folder) / key
    out.mkdir(parents=True, exist_ok=True)
    for index, video in enumerate(videos):
        path = out / f"{index:06d}.safetensors"
        if index % world == rank and not path.exists():
            crops = build_video_crops(video, cfg, fps, max_frames, max_tracks, concepts)
            save_video_crops(crops, path)
        if progress is not None:
            progress()
    return out


def load_cache(folder: Path, count: int) -> list[VideoCrops]:
    """All ``count`` cached videos of a folder written by :func:`build_cache`, in order."""
    return [load_video_crops(Path(folder) / f"{i:06d}.safetensors") for i in range(count)]
