"""Evaluate a model on a VidOR-style dataset with the reference protocol (tracks given).

    python -m training.evaluate --data DIR --checkpoint MODEL_DIR --concepts YAML \\
        --out metrics.json [--untrained] [--backend torch] [--fps 1] [--max-frames 12]

Each video's ground-truth tracks (boxes and ids, no labels) are fed as regions to the
inference encoder (:class:`sgclip_ros.core.frame_encoder.FrameEncoder`: the robot's crops,
preprocessing and backend), and its embeddings are scored by :mod:`sgclip_ros.core.scoring`,
so the numbers measure what the robot runs. Works on frame folders and video files. Writes
the keys of :data:`training.eval_metrics.METRIC_KEYS` (see that module for definitions).
``--untrained`` scores the checkpoint's architecture with random weights (a chance baseline).

Exit codes: 0 written; 2 bad arguments, dataset or model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from sgclip_ros.core import scoring
from sgclip_ros.core.backend import EncoderBackend, TorchBackend
from sgclip_ros.core.backend_select import BACKENDS, load_backend
from sgclip_ros.core.concepts import ConceptError, ConceptSet, load_concepts
from sgclip_ros.core.frame_encoder import FrameEncoder, FrameInput
from sgclip_ros.core.graph_builder import ConceptTexts, RoleText
from sgclip_ros.core.model import build_model
from sgclip_ros.core.model_config import load_model_config, tower_index
from sgclip_ros.core.model_store import ModelFileError
from sgclip_ros.core.proposer import ColorBlobProposer
from sgclip_ros.core.regions import Region
from sgclip_ros.core.scene_graph import Box
from sgclip_ros.core.text_cache import TextEmbeddingCache
from sgclip_ros.core.tracker import IoUTracker
from sgclip_ros.core.window import FrameRecord
from training.data import AnnotationError, VideoAnnotation, frame_tracks, ground_truth, load_dataset
from training.eval_metrics import MetricAccumulator, VideoScores
from training.video_io import VideoReadError


def eval_concepts(concepts: ConceptSet) -> ConceptSet:
    """The reference protocol scores every ground-truth pair: no pair filtering."""
    return dataclasses.replace(concepts, top_k_pairs=0, pairs_of_interest=())


def concept_texts(backend: EncoderBackend, concepts: ConceptSet) -> ConceptTexts:
    """Text embeddings of every role, as the predictor computes them."""
    cache = TextEmbeddingCache()

    def role(name: str, texts: list[str]) -> RoleText | None:
        if not texts:
            return None
        tower = tower_index(name, backend.towers)
        return RoleText(texts, cache.get(backend, tower, texts), tower, backend.logit_scale(tower))

    return ConceptTexts(concepts, role("category", scoring.category_texts(concepts)),
                        role("unary", scoring.unary_texts(concepts)),
                        role("binary", scoring.binary_texts(concepts)))


def encode_video(backend: EncoderBackend, texts: ConceptTexts, frames, tracks,
                 max_objects: int = 64) -> list[FrameRecord]:
    """FrameRecords of every sampled frame, regions = the present ground-truth tracks."""
    encoder = FrameEncoder(backend, ColorBlobProposer(), max_objects)
    inputs = []
    for t, image in enumerate(frames):
        regions = [Region(Box(*map(float, tracks.boxes[t, n])), track_id=str(tid))
                   for n, tid in enumerate(tracks.track_ids) if tracks.present[t, n]]
        inputs.append(FrameInput(f"eval{t}", image, (t + 1) * 1_000_000, regions))
    trackers = [IoUTracker() for _ in inputs]
    return encoder.encode(inputs, trackers, texts)


def video_scores(records: list[FrameRecord], texts: ConceptTexts,
                 track_ids: list[int]) -> VideoScores:
    """Per-frame probabilities on the tracks, categories pooled per track as inference does."""
    concepts = texts.concepts
    column = {str(tid): n for n, tid in enumerate(track_ids)}
    t_count, n_count = len(records), len(track_ids)
    cat = torch.zeros(t_count, n_count, len(scoring.category_texts(concepts)))
    unary = torch.zeros(t_count, n_count, len(concepts.unary))
    binary = torch.zeros(t_count, n_count, n_count, len(concepts.binary))
    present = torch.zeros(t_count, n_count, dtype=torch.bool)
    for t, rec in enumerate(records):
        if not rec.track_ids:
            continue
        cols = torch.tensor([column[tid] for tid in rec.track_ids])
        present[t, cols] = True
        obj = rec.object_emb[texts.category.tower]
        cat[t, cols] = scoring.category_probs(obj, texts.category.emb, texts.category.scale)
        if texts.unary is not None:
            unary[t, cols] = scoring.unary_probs(rec.object_emb[texts.unary.tower],
                                                 texts.unary.emb, texts.unary.scale,
                                                 concepts.unary_mode)
        if texts.binary is not None and rec.pair_emb is not None and len(rec.pairs):
            probs = scoring.binary_probs(rec.pair_emb, texts.binary.emb, texts.binary.scale,
                                         concepts.binary_mode, len(concepts.binary))
            binary[t, cols[rec.pairs[:, 0]], cols[rec.pairs[:, 1]]] = probs
    pooled = torch.stack([
        scoring.pool_categories(cat[present[:, n], n], concepts.category_pooling)
        if present[:, n].any() else cat.new_zeros(cat.shape[-1]) for n in range(n_count)])
    return VideoScores(pooled, unary, binary, present)


def evaluate_videos(backend: EncoderBackend, videos: list[VideoAnnotation],
                    concepts: ConceptSet, fps: float | None = 1.0,
                    max_frames: int | None = 12, progress=None) -> dict:
    """The metric dict of ``backend`` on ``videos`` (see :mod:`training.eval_metrics`)."""
    concepts = eval_concepts(concepts)
    texts = concept_texts(backend, concepts)
    acc = MetricAccumulator()
    for video in videos:
        frames = video.frames(fps, max_frames)
        tracks = frame_tracks(video, frames.frame_indices, with_labels=False)
        records = encode_video(backend, texts, frames, tracks)
        scores = video_scores(records, texts, tracks.track_ids)
        gt = ground_truth(video, frames.frame_indices, scoring.category_texts(concepts),
                          concepts.unary, concepts.binary)
        acc.add(scores, {"category": gt.category, "unary": gt.unary, "binary": gt.binary})
        if progress is not None:
            progress()
    return acc.result()


def load_eval_backend(checkpoint: Path, untrained: bool, backend: str = "torch",
                      device: str = "cpu", seed: int = 0) -> EncoderBackend:
    """The checkpoint's backend, or its architecture with random weights (``untrained``)."""
    if untrained:
        config = load_model_config(str(checkpoint / "config.json"))
        return TorchBackend(build_model(config, seed=seed), f"untrained-{seed}", device)
    checkpoint = checkpoint.resolve()
    return load_backend(backend, str(checkpoint.parent), checkpoint.name, device).backend


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="VidOR-style dataset folder")
    parser.add_argument("--checkpoint", required=True, help="model directory (with manifest)")
    parser.add_argument("--concepts", required=True, help="concept YAML")
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    parser.add_argument("--untrained", action="store_true", help="random weights (chance)")
    parser.add_argument("--backend", choices=BACKENDS, default="torch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fps", type=float, default=1.0, help="sampling rate (reference: 1)")
    parser.add_argument("--max-frames", type=int, default=12, help="frames per video (ref: 12)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        videos = load_dataset(args.data)
        concepts = load_concepts(args.concepts)
        backend = load_eval_backend(Path(args.checkpoint), args.untrained, args.backend,
                                    args.device)
        metrics = evaluate_videos(backend, videos, concepts, args.fps, args.max_frames)
    except (AnnotationError, ConceptError, ModelFileError, VideoReadError, ValueError,
            FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
