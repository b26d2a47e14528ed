"""Window -> SceneGraph: pooling over tracks and aggregation over time, on known embeddings.

Embeddings are one-hot directions, so the expected graph follows from the construction.
"""

from __future__ import annotations

import torch

from sgclip_ros.core.concepts import ConceptSet
from sgclip_ros.core.graph_builder import ConceptTexts, GraphSettings, RoleText, build_scene_graph
from sgclip_ros.core.scene_graph import Box
from sgclip_ros.core.window import FrameRecord

E = torch.eye(8)
CIRCLE, SQUARE, RED, BLUE, LEFT, ABOVE = (E[i] for i in range(6))


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


def _texts(concepts: ConceptSet) -> ConceptTexts:
    return ConceptTexts(
        concepts=concepts,
        category=RoleText(["circle", "square"], torch.stack([CIRCLE, SQUARE]), 0, 100.0),
        unary=RoleText(["red", "blue"], torch.stack([RED, BLUE]), 0, 100.0),
        binary=RoleText(["left of", "above"], torch.stack([LEFT, ABOVE]), 0, 100.0),
    )


def _frame(t: int, objects: dict[str, tuple[torch.Tensor, Box]], pairs=()) -> FrameRecord:
    ids = list(objects)
    rec = FrameRecord(
        stamp_ns=1_000_000_000 + t * 100_000_000,
        width=320,
        height=240,
        track_ids=ids,
        boxes=[objects[i][1] for i in ids],
        confidences=[1.0] * len(ids),
        detector_labels=[""] * len(ids),
    )
    rec.object_emb[0] = torch.stack([objects[i][0] for i in ids]) if ids else torch.zeros(0, 8)
    if pairs:
        rec.pairs = torch.tensor([[ids.index(s), ids.index(o)] for s, o, _ in pairs])
        rec.pair_emb = torch.stack([emb for _, _, emb in pairs])
    return rec


CONCEPTS = ConceptSet(
    categories=("circle", "square"), unary=("red", "blue"), binary=("left of", "above")
)


def _window():
    red_circle, blue_square = _unit(CIRCLE + RED), _unit(SQUARE + BLUE)
    frames = [_frame(0, {"1": (red_circle, Box(10 + 0, 10, 50, 50))})]
    for t in (1, 2, 3):
        rel = LEFT if t < 3 else ABOVE
        frames.append(
            _frame(
                t,
                {
                    "1": (red_circle, Box(10 + 20 * t, 10, 50 + 20 * t, 50)),
                    "2": (blue_square, Box(200, 100, 240, 140)),
                },
                pairs=[("1", "2", rel)],
            )
        )
    return frames


def test_objects_are_pooled_per_track_with_observations():
    graph = build_scene_graph(
        _window(), _texts(CONCEPTS), GraphSettings(), "cam", "optical", "test", 1.0
    )
    assert [o.id for o in graph.objects] == ["1", "2"]
    circle, square = graph.objects
    assert (circle.label, square.label) == ("circle", "square")
    assert circle.score > 0.99 and [lp.label for lp in circle.labels] == ["circle", "square"]
    assert [ob.frame_index for ob in circle.observations] == [0, 1, 2, 3]
    assert [ob.frame_index for ob in square.observations] == [1, 2, 3]
    assert circle.observations[3].box == Box(70, 10, 110, 50)
    assert graph.frame_stamps_ns[-1] == graph.stamp_ns
    assert graph.concepts_id == CONCEPTS.concepts_id


def test_attributes_and_relations_hold_over_their_frames_only():
    graph = build_scene_graph(
        _window(), _texts(CONCEPTS), GraphSettings(), "cam", "optical", "test", 1.0
    )
    attrs = {(a.object_id, a.attribute): a for a in graph.attributes}
    assert set(attrs) == {("1", "red"), ("2", "blue")}
    assert (attrs["1", "red"].first_frame, attrs["1", "red"].last_frame) == (0, 3)
    assert attrs["2", "blue"].frame_indices == [1, 2, 3]
    rels = {(r.subject_id, r.predicate, r.object_id): r for r in graph.relations}
    assert set(rels) == {("1", "left of", "2"), ("1", "above", "2")}
    left = rels["1", "left of", "2"]
    assert (left.first_frame, left.last_frame, left.frame_indices) == (1, 2, [1, 2, 3])
    assert left.frame_scores[2] < 0.01 < 0.99 < left.frame_scores[0]
    above = rels["1", "above", "2"]
    assert (above.first_frame, above.last_frame) == (3, 3)


def test_max_pooling_and_thresholds_change_the_graph():
    frames = _window()
    frames[0].object_emb[0][0] = _unit(SQUARE + RED)  # the circle looks square once
    mean = build_scene_graph(frames, _texts(CONCEPTS), GraphSettings(), "c", "f", "t", 0.0)
    assert mean.objects[0].label == "circle" and 0.7 < mean.objects[0].score < 0.8
    maxed = ConceptSet(
        categories=("circle", "square"),
        unary=("red", "blue"),
        binary=("left of", "above"),
        category_pooling="max",
    )
    graph = build_scene_graph(frames, _texts(maxed), GraphSettings(), "c", "f", "t", 0.0)
    assert abs(graph.objects[0].score - 0.5) < 0.01
    strict = GraphSettings(attribute_threshold=1.01, relation_threshold=1.01)
    none = build_scene_graph(frames, _texts(CONCEPTS), strict, "c", "f", "t", 0.0)
    assert none.attributes == [] and none.relations == []


def test_temporal_predicates_join_the_graph():
    concepts = ConceptSet(
        categories=("circle", "square"),
        unary=("red", "blue"),
        binary=("left of", "above"),
        temporal=("moving", "still"),
    )
    graph = build_scene_graph(_window(), _texts(concepts), GraphSettings(), "c", "f", "t", 0.0)
    attrs = {(a.object_id, a.attribute) for a in graph.attributes}
    assert ("1", "moving") in attrs and ("2", "still") in attrs
    assert ("1", "still") not in attrs and ("2", "moving") not in attrs


def test_frames_without_objects_are_allowed():
    frames = [_frame(0, {})] + _window()[1:]
    for i, f in enumerate(frames):
        f.stamp_ns = 1_000_000_000 + i * 100_000_000
    graph = build_scene_graph(frames, _texts(CONCEPTS), GraphSettings(), "c", "f", "t", 0.0)
    assert [o.id for o in graph.objects] == ["1", "2"]
    assert graph.objects[0].observations[0].frame_index == 1
