"""Encode new frames: regions -> tracked boxes -> reference crops -> batched forwards per tower.

Frames of several cameras are encoded together: all their crops bound for the same tower go
through it in batched forwards of at most ``crop_chunk`` crops (one forward when they fit).
Pair crops are cut and preprocessed chunk by chunk, so the pixels held at once are bounded by
the chunk, and at most ``max_crops_per_frame`` pairs (the most confident) are encoded per frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from sgclip_ros.core import scoring
from sgclip_ros.core.backend import EncoderBackend
from sgclip_ros.core.crops import object_crops, pair_crops
from sgclip_ros.core.geometry import Intrinsics, frame_geometry
from sgclip_ros.core.graph_builder import ConceptTexts
from sgclip_ros.core.preprocess import preprocess_crops
from sgclip_ros.core.preprocess_fast import PREPROCESS_MODES, preprocess_crops_fast
from sgclip_ros.core.proposer import ColorBlobProposer
from sgclip_ros.core.regions import Region, clip_box_to_frame
from sgclip_ros.core.scene_graph import Box
from sgclip_ros.core.tracker import IoUTracker
from sgclip_ros.core.window import FrameRecord


@dataclass
class FrameInput:
    """One camera frame: RGB uint8 HxWx3, stamp, optional regions (None: built-in proposer).

    ``depth``: the aligned depth image, float32 metres HxW like the image (NaN: no data), with
    the colour camera's ``intrinsics``; objects then get 3D geometry."""

    camera: str
    image: np.ndarray
    stamp_ns: int
    regions: list[Region] | None = None
    frame_id: str = ""
    depth: np.ndarray | None = None
    intrinsics: Intrinsics | None = None


@dataclass
class EncodeStats:
    """Counters of the encoding work done, for tests, benchmarks and diagnostics."""

    frames: int = 0
    object_crops: int = 0
    pair_crops: int = 0
    image_forwards: int = 0
    regions_dropped: int = 0
    pairs_capped: int = 0  # pairs not encoded because of max_crops_per_frame
    crops_per_tower: dict[int, int] = field(default_factory=dict)


@dataclass
class _Prepared:
    """A frame after region resolution, before encoding."""

    record: FrameRecord
    frame: torch.Tensor
    boxes: torch.Tensor
    masks: torch.Tensor | None
    object_pixels: torch.Tensor | None = None


@dataclass
class _Rows:
    """Crops of one frame queued for a tower; ``pixels(a, b)`` makes rows a..b-1 on demand."""

    kind: str  # "obj" or "pair"
    k: int  # index of the frame in the encode() call
    count: int
    pixels: Callable[[int, int], torch.Tensor]


# Crops per forward. Pair crops are cut and preprocessed per forward, so this (not the number of
# pairs) bounds the pixels and activations held at once: 64 224x224 crops are 38 MB of pixels.
CROP_CHUNK = 64


def check_max_crops(value: int) -> int:
    """``value`` when it is an integer >= 1; otherwise ValueError naming max_crops_per_frame."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_crops_per_frame must be an integer >= 1, got {value!r}")
    return value


def check_image(image: np.ndarray) -> None:
    """Raise ValueError unless ``image`` is a non-empty HxWx3 uint8 array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(
            f"image must be a uint8 numpy array, got {getattr(image, 'dtype', type(image))}"
        )
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image must be HxWx3 with H, W > 0, got shape {image.shape}")


def check_depth(depth: np.ndarray, intrinsics: Intrinsics, width: int, height: int) -> None:
    """Raise ValueError unless depth is float HxW and the intrinsics are for a WxH image."""
    if not isinstance(depth, np.ndarray) or depth.dtype.kind != "f" or depth.ndim != 2:
        raise ValueError(
            f"depth must be a float HxW array in metres, got {getattr(depth, 'dtype', type(depth))}"
            f" of shape {getattr(depth, 'shape', None)}"
        )
    if depth.shape != (height, width):
        h, w = depth.shape
        raise ValueError(f"depth is {w}x{h}, the image is {width}x{height}")
    if (intrinsics.width, intrinsics.height) != (width, height):
        size = f"{intrinsics.width}x{intrinsics.height}"
        raise ValueError(f"camera info is for {size}, the image is {width}x{height}")


class FrameEncoder:
    """Turns FrameInputs into FrameRecords holding their crop embeddings."""

    def __init__(
        self,
        backend: EncoderBackend,
        proposer: ColorBlobProposer,
        max_objects: int,
        preprocess: str = "exact",
        max_crops_per_frame: int | None = None,
        crop_chunk: int | None = None,
    ):
        """``max_crops_per_frame``: pair crops per frame at most (None: every pair);
        ``crop_chunk``: crops per forward at most (None: CROP_CHUNK)."""
        if preprocess not in PREPROCESS_MODES:
            raise ValueError(f"preprocess must be one of {PREPROCESS_MODES}, got {preprocess!r}")
        self.backend = backend
        self.proposer = proposer
        self.max_objects = max_objects
        self.preprocess = preprocess
        self.max_crops_per_frame = (
            None if max_crops_per_frame is None else check_max_crops(max_crops_per_frame)
        )
        self.crop_chunk = crop_chunk or CROP_CHUNK
        if self.crop_chunk < 1:
            raise ValueError(f"crop_chunk must be >= 1, got {crop_chunk}")
        # The fast path crops and resizes where the backend runs (the GPU, when it has one).
        self._crop_device = backend.device if preprocess == "fast" else "cpu"
        self.stats = EncodeStats()
        self.depth_proposer = None  # e.g. core.depth_proposer.DepthProposer, set by the owner

    def _pixels(self, crops: list[torch.Tensor]) -> torch.Tensor:
        if self.preprocess == "fast":
            return preprocess_crops_fast(crops, self.backend.preprocess, self._crop_device)
        return preprocess_crops(crops, self.backend.preprocess)

    def encode(
        self, inputs: list[FrameInput], trackers: list[IoUTracker], texts: ConceptTexts
    ) -> list[FrameRecord]:
        cap = self.max_crops_per_frame  # read once: a change applies from the next call
        geometry = texts.concepts.geometry
        up = geometry.up if geometry is not None else None
        prepared = [self._prepare(item, tracker, up) for item, tracker in zip(inputs, trackers)]
        object_towers = sorted(
            {texts.category.tower} | ({texts.unary.tower} if texts.unary else set())
        )
        jobs: dict[int, list[_Rows]] = {}
        scored: list[int] = []  # frames whose pairs are chosen from their object scores
        for k, prep in enumerate(prepared):
            n = len(prep.record.track_ids)
            if not n:
                continue
            crops = object_crops(prep.frame, prep.boxes, prep.masks)
            prep.object_pixels = pixels = self._pixels(crops)
            self.stats.object_crops += len(crops)
            for tower in object_towers:
                jobs.setdefault(tower, []).append(_Rows("obj", k, n, _slicer(pixels)))
            if texts.binary is None:
                continue
            if _needs_scores(n, texts, cap):
                scored.append(k)
            else:
                self._add_pair_job(jobs, k, prep, texts, all_pairs(n))
        self._run(jobs, prepared)
        if scored:
            jobs = {}
            for k in scored:
                pairs, capped = _select_pairs(prepared[k].record, texts, cap)
                self.stats.pairs_capped += capped
                self._add_pair_job(jobs, k, prepared[k], texts, pairs)
            self._run(jobs, prepared)
        self.stats.frames += len(prepared)
        return [p.record for p in prepared]

    def _add_pair_job(self, jobs, k: int, prep: _Prepared, texts: ConceptTexts, pairs) -> None:
        prep.record.pairs = pairs
        if len(pairs) == 0:
            return
        self.stats.pair_crops += len(pairs)

        def pixels(start: int, stop: int) -> torch.Tensor:
            crops = pair_crops(prep.frame, prep.boxes, prep.masks, pairs[start:stop])
            return self._pixels(crops)

        jobs.setdefault(texts.binary.tower, []).append(_Rows("pair", k, len(pairs), pixels))

    def _run(self, jobs: dict[int, list[_Rows]], prepared: list[_Prepared]) -> None:
        """Encode every queued row per tower, then hand each frame its embedding rows."""
        for tower, queued in jobs.items():
            for rows, emb in zip(queued, self._encode_rows(tower, queued)):
                if rows.kind == "obj":
                    prepared[rows.k].record.object_emb[tower] = emb
                else:
                    prepared[rows.k].record.pair_emb = emb

    def _encode_rows(self, tower: int, queued: list[_Rows]) -> list[torch.Tensor]:
        """Forwards of at most crop_chunk rows over all of ``queued``; one tensor per entry."""
        out: list[list[torch.Tensor]] = [[] for _ in queued]
        batch: list[tuple[int, torch.Tensor]] = []  # (entry, pixels) of the next forward
        filled = 0
        for q, rows in enumerate(queued):
            start = 0
            while start < rows.count:
                stop = min(rows.count, start + self.crop_chunk - filled)
                batch.append((q, rows.pixels(start, stop)))
                filled += stop - start
                start = stop
                if filled == self.crop_chunk:
                    self._forward(tower, batch, out)
                    batch, filled = [], 0
        if batch:
            self._forward(tower, batch, out)
        return [torch.cat(parts) for parts in out]

    def _forward(self, tower: int, batch: list, out: list[list[torch.Tensor]]) -> None:
        pixels = torch.cat([p for _, p in batch])
        emb = self.backend.encode_images(tower, pixels)
        self.stats.image_forwards += 1
        self.stats.crops_per_tower[tower] = self.stats.crops_per_tower.get(tower, 0) + len(pixels)
        for (q, _), rows in zip(batch, emb.split([len(p) for _, p in batch])):
            out[q].append(rows)

    def _prepare(self, item: FrameInput, tracker: IoUTracker, up=None) -> _Prepared:
        check_image(item.image)
        height, width = item.image.shape[:2]
        regions = item.regions if item.regions is not None else self._propose(item, up)
        regions = sorted(regions, key=lambda r: -r.confidence)
        kept, boxes = [], []
        for region in regions[: self.max_objects]:
            try:
                boxes.append(clip_box_to_frame(region.box, width, height))
            except ValueError:
                self.stats.regions_dropped += 1
                continue
            kept.append(region)
        self.stats.regions_dropped += max(0, len(regions) - self.max_objects)
        ids = _track_ids(kept, boxes, tracker)
        record = FrameRecord(
            stamp_ns=item.stamp_ns,
            width=width,
            height=height,
            track_ids=ids,
            boxes=[Box(*map(float, b)) for b in boxes],
            confidences=[float(r.confidence) for r in kept],
            detector_labels=[r.label or "" for r in kept],
        )
        if item.depth is not None and item.intrinsics is not None:
            check_depth(item.depth, item.intrinsics, width, height)
            record.geometry = frame_geometry(
                item.depth, item.intrinsics, record.boxes, [r.mask for r in kept], up
            )
        return _Prepared(
            record=record,
            frame=torch.from_numpy(np.ascontiguousarray(item.image)).to(self._crop_device),
            boxes=torch.tensor(boxes, dtype=torch.long).reshape(-1, 4),
            masks=_on(_masks(kept, boxes, height, width), self._crop_device),
        )


    def _propose(self, item: FrameInput, up=None) -> list[Region]:
        """The depth proposer where it is set and the frame has depth; else the colour one.
        ``up``: the concept set's up vector, which picks the support plane."""
        if self.depth_proposer is not None and item.depth is not None and item.intrinsics:
            return self.depth_proposer.propose(
                item.depth, item.intrinsics, image=item.image, up=up
            )
        return self.proposer.propose(item.image)


def _slicer(pixels: torch.Tensor) -> Callable[[int, int], torch.Tensor]:
    return lambda start, stop: pixels[start:stop]


def _needs_scores(n: int, texts: ConceptTexts, cap: int | None) -> bool:
    """Whether a frame's pairs must wait for its object scores (filtered, or over the cap)."""
    concepts = texts.concepts
    over_cap = cap is not None and n * (n - 1) > cap
    return bool(concepts.pairs_of_interest or concepts.top_k_pairs or over_cap)


def _on(masks: torch.Tensor | None, device: str) -> torch.Tensor | None:
    return None if masks is None else masks.to(device)


def _track_ids(regions: list[Region], boxes: list, tracker: IoUTracker) -> list[str]:
    """External track ids when every region has one; otherwise the built-in tracker's."""
    if regions and all(r.track_id for r in regions):
        ids = [str(r.track_id) for r in regions]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate track ids in one frame: {ids}")
        return ids
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return tracker.update(arr, [r.label for r in regions])


def _masks(regions: list[Region], boxes: list, height: int, width: int) -> torch.Tensor | None:
    """[N, H, W] bool masks, or None when no region has one (the crops then use the boxes)."""
    if not any(r.mask is not None for r in regions):
        return None
    masks = torch.zeros(len(regions), height, width, dtype=torch.bool)
    for i, (region, (x1, y1, x2, y2)) in enumerate(zip(regions, boxes)):
        if region.mask is None:
            masks[i, y1:y2, x1:x2] = True
            continue
        if region.mask.shape != (height, width):
            raise ValueError(
                f"mask {i} has shape {region.mask.shape}, the frame is {height}x{width}"
            )
        masks[i] = torch.from_numpy(np.asarray(region.mask, dtype=bool))
    return masks


def all_pairs(n: int) -> torch.Tensor:
    """Every ordered pair (i, j), i != j, as a [n*(n-1), 2] tensor."""
    idx = torch.arange(n)
    ii, jj = torch.meshgrid(idx, idx, indexing="ij")
    keep = ii != jj
    return torch.stack([ii[keep], jj[keep]], dim=1)


def select_pairs(
    record: FrameRecord, texts: ConceptTexts, max_pairs: int | None = None
) -> torch.Tensor:
    """Pairs of interest (by each object's best category here), then the top-k most confident,
    then at most ``max_pairs`` of those (same order; None: no limit)."""
    return _select_pairs(record, texts, max_pairs)[0]


def _select_pairs(
    record: FrameRecord, texts: ConceptTexts, cap: int | None
) -> tuple[torch.Tensor, int]:
    """select_pairs, and how many pairs the cap (not top_k_pairs) dropped."""
    pairs = all_pairs(len(record.track_ids))
    probs = scoring.category_probs(
        record.object_emb[texts.category.tower], texts.category.emb, texts.category.scale
    )
    best_p, best_i = probs.max(dim=1)
    concepts = texts.concepts
    if concepts.pairs_of_interest:
        names = scoring.category_texts(concepts)
        wanted = set(concepts.pairs_of_interest)
        keep = [(names[best_i[s]], names[best_i[o]]) in wanted for s, o in pairs.tolist()]
        pairs = pairs[torch.tensor(keep, dtype=torch.bool)] if keep else pairs
    pairs = most_confident(pairs, best_p, concepts.top_k_pairs)
    capped = max(0, len(pairs) - cap) if cap is not None else 0
    return most_confident(pairs, best_p, cap or 0), capped


def most_confident(pairs: torch.Tensor, best_p: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` pairs of highest ``best_p[s] * best_p[o]`` (ties: earlier first), kept in
    their (s, o) order; every pair when k is 0 or not below their number."""
    if not k or len(pairs) <= k:
        return pairs
    confidence = best_p[pairs[:, 0]] * best_p[pairs[:, 1]]
    order = torch.argsort(confidence, descending=True, stable=True)[:k]
    return pairs[order.sort().values]
