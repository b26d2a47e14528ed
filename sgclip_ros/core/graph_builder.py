"""Turn a window of encoded frames into a SceneGraph: score, pool over tracks, aggregate in time.

All frames of the window are scored in one matrix product per role, from the cached crop
embeddings and the cached text embeddings, so a concept change needs no image re-encode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from sgclip_ros.core import scoring
from sgclip_ros.core.concepts import ConceptSet
from sgclip_ros.core.geometry import GeometrySettings, relation_scores, velocity
from sgclip_ros.core.scene_graph import (
    AttributeFact,
    LabelProb,
    ObjectNode,
    Observation,
    RelationFact,
    SceneGraph,
)
from sgclip_ros.core.temporal import TemporalParams, temporal_scores
from sgclip_ros.core.window import FrameRecord


@dataclass(frozen=True)
class GraphSettings:
    """Thresholds that decide which facts a graph reports."""

    attribute_threshold: float = 0.5
    relation_threshold: float = 0.5
    top_k_labels: int = 3
    temporal: TemporalParams = TemporalParams()


@dataclass
class RoleText:
    """One role's cached text embeddings, the tower that scores it and its logit scale."""

    texts: list[str]
    emb: torch.Tensor
    tower: int
    scale: float


@dataclass
class ConceptTexts:
    concepts: ConceptSet
    category: RoleText
    unary: RoleText | None
    binary: RoleText | None


def _natural_key(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def _aggregate(frame_scores: dict[int, float], threshold: float) -> tuple | None:
    """(score, first, last, indices, scores) when the predicate holds in some frame, else None.

    The score is the mean over the frames in which it holds.
    """
    indices = sorted(frame_scores)
    scores = [frame_scores[i] for i in indices]
    holding = [i for i in indices if frame_scores[i] >= threshold]
    if not holding:
        return None
    mean = sum(frame_scores[i] for i in holding) / len(holding)
    return mean, holding[0], holding[-1], indices, scores


def _object_scores(frames: list[FrameRecord], texts: ConceptTexts) -> tuple:
    """Per-frame category and unary probabilities, all frames in one product per role."""
    counts = [len(f.track_ids) for f in frames]
    dim = texts.category.emb.shape[1]

    def stacked(tower: int) -> torch.Tensor:
        # Frames without objects hold no embeddings; they contribute zero rows.
        return torch.cat(
            [f.object_emb[tower] if n else torch.zeros(0, dim) for f, n in zip(frames, counts)]
        )

    cat = scoring.category_probs(
        stacked(texts.category.tower), texts.category.emb, texts.category.scale
    )
    unary = None
    if texts.unary is not None:
        un_emb = stacked(texts.unary.tower)
        unary = scoring.unary_probs(
            un_emb, texts.unary.emb, texts.unary.scale, texts.concepts.unary_mode
        ).split(counts)
    return cat.split(counts), unary


def _objects(frames: list[FrameRecord], cat_probs, texts: ConceptTexts, top_k: int) -> list:
    per_track: dict[str, list] = {}
    for fi, frame in enumerate(frames):
        for j, tid in enumerate(frame.track_ids):
            per_track.setdefault(tid, []).append((fi, j))
    categories = scoring.category_texts(texts.concepts)
    nodes = []
    for tid in sorted(per_track, key=_natural_key):
        seen = per_track[tid]
        probs = torch.stack([cat_probs[fi][j] for fi, j in seen])
        pooled = scoring.pool_categories(probs, texts.concepts.category_pooling)
        top = torch.topk(pooled, min(top_k, pooled.numel()))
        labels = [LabelProb(categories[i], float(p)) for p, i in zip(top.values, top.indices)]
        observations = [_observation(frames[fi], fi, j) for fi, j in seen]
        last_fi, last_j = seen[-1]
        nodes.append(
            ObjectNode(
                id=tid,
                label=labels[0].label,
                score=labels[0].score,
                labels=labels,
                detector_label=frames[last_fi].detector_labels[last_j],
                observations=observations,
            )
        )
        _add_motion(nodes[-1], frames)
    return nodes


def _observation(frame: FrameRecord, fi: int, j: int) -> Observation:
    ob = Observation(fi, frame.boxes[j], frame.confidences[j])
    geometry = frame.geometry[j] if frame.geometry else None
    if geometry is not None:
        ob.position, ob.depth_confidence = geometry.centroid, geometry.valid_fraction
        ob.extent_min, ob.extent_max = geometry.extent_min, geometry.extent_max
    return ob


def _add_motion(node: ObjectNode, frames: list[FrameRecord]) -> None:
    """The newest position of a track and its velocity over the window."""
    positioned = [ob for ob in node.observations if ob.has_position]
    if positioned:
        node.position = positioned[-1].position
        stamps = [frames[ob.frame_index].stamp_ns for ob in positioned]
        node.velocity = velocity(stamps, [ob.position for ob in positioned])


def _metric_facts(frames: list[FrameRecord], geometry: GeometrySettings, threshold: float):
    """Relations of geometry, per frame between the objects with a position, over the window."""
    series: dict[tuple[str, str, str], dict[int, float]] = {}
    for fi, frame in enumerate(frames):
        placed = {
            tid: g for tid, g in zip(frame.track_ids, frame.geometry) if g is not None
        }
        for (sid, word, oid), score in relation_scores(placed, geometry).items():
            series.setdefault((sid, oid, word), {})[fi] = score
    return _facts_from_binary_series(series, threshold)


def _unary_facts(frames, unary_probs, texts: ConceptTexts, threshold: float) -> list:
    series: dict[tuple[str, str], dict[int, float]] = {}
    for fi, frame in enumerate(frames):
        for j, tid in enumerate(frame.track_ids):
            for u, word in enumerate(texts.concepts.unary):
                series.setdefault((tid, word), {})[fi] = float(unary_probs[fi][j, u])
    return _facts_from_unary_series(series, threshold)


def _facts_from_unary_series(series: dict, threshold: float) -> list[AttributeFact]:
    facts = []
    for (tid, word), frame_scores in series.items():
        agg = _aggregate(frame_scores, threshold)
        if agg is not None:
            facts.append(AttributeFact(tid, word, *agg))
    return facts


def _binary_facts(frames, texts: ConceptTexts, threshold: float) -> list[RelationFact]:
    scored = [(fi, f) for fi, f in enumerate(frames) if f.pair_emb is not None and len(f.pairs)]
    if not scored or texts.binary is None:
        return []
    words = list(texts.concepts.binary)
    emb = torch.cat([f.pair_emb for _, f in scored])
    probs = scoring.binary_probs(
        emb, texts.binary.emb, texts.binary.scale, texts.concepts.binary_mode, len(words)
    ).split([len(f.pairs) for _, f in scored])
    series: dict[tuple[str, str, str], dict[int, float]] = {}
    for (fi, frame), frame_probs in zip(scored, probs):
        for p, (s, o) in enumerate(frame.pairs.tolist()):
            sid, oid = frame.track_ids[s], frame.track_ids[o]
            for b, word in enumerate(words):
                series.setdefault((sid, oid, word), {})[fi] = float(frame_probs[p, b])
    return _facts_from_binary_series(series, threshold)


def _facts_from_binary_series(series: dict, threshold: float) -> list[RelationFact]:
    facts = []
    for (sid, oid, word), frame_scores in series.items():
        agg = _aggregate(frame_scores, threshold)
        if agg is not None:
            facts.append(RelationFact(sid, word, oid, *agg))
    return facts


def _temporal_facts(frames, concepts: ConceptSet, settings: GraphSettings) -> tuple[list, list]:
    if not concepts.temporal:
        return [], []
    tracks: dict[str, list] = {}
    for fi, frame in enumerate(frames):
        for j, tid in enumerate(frame.track_ids):
            tracks.setdefault(tid, []).append((fi, frame.stamp_ns, frame.boxes[j]))
    unary, binary = temporal_scores(tracks, concepts.temporal, settings.temporal)
    attrs = _facts_from_unary_series(unary, settings.attribute_threshold)
    rels = _facts_from_binary_series(
        {(s, o, w): v for (s, o, w), v in binary.items()}, settings.relation_threshold
    )
    return attrs, rels


def build_scene_graph(
    frames: list[FrameRecord],
    texts: ConceptTexts,
    settings: GraphSettings,
    camera: str,
    frame_id: str,
    backend: str,
    inference_ms: float,
) -> SceneGraph:
    """Score every frame of the window and aggregate the results into one SceneGraph."""
    graph = SceneGraph(
        stamp_ns=frames[-1].stamp_ns,
        frame_id=frame_id,
        camera=camera,
        concepts_id=texts.concepts.concepts_id,
        frame_stamps_ns=[f.stamp_ns for f in frames],
        backend=backend,
    )
    with_objects = [f for f in frames if f.track_ids]
    if with_objects:
        cat_probs, unary_probs = _object_scores(frames, texts)
        graph.objects = _objects(frames, cat_probs, texts, settings.top_k_labels)
        if unary_probs is not None:
            graph.attributes = _unary_facts(
                frames, unary_probs, texts, settings.attribute_threshold
            )
        graph.relations = _binary_facts(frames, texts, settings.relation_threshold)
        t_attrs, t_rels = _temporal_facts(frames, texts.concepts, settings)
        graph.attributes += t_attrs
        graph.relations += t_rels
        if texts.concepts.geometry is not None:
            graph.relations += _metric_facts(
                frames, texts.concepts.geometry, settings.relation_threshold
            )
    graph.attributes.sort(key=lambda a: (-a.score, _natural_key(a.object_id), a.attribute))
    graph.relations.sort(key=lambda r: (-r.score, _natural_key(r.subject_id), r.predicate))
    graph.inference_ms = inference_ms
    return graph
