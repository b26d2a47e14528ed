"""The predictor with aligned depth: positions per observation, velocity, metric relations."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from sgclip_ros.core.backend import TorchBackend
from sgclip_ros.core.concepts import ConceptError, ConceptSet, concepts_from_dict
from sgclip_ros.core.frame_encoder import FrameInput
from sgclip_ros.core.geometry import GeometrySettings, Intrinsics
from sgclip_ros.core.model import build_model
from sgclip_ros.core.model_config import load_model_config
from sgclip_ros.core.predictor import PredictorConfig, SGClipPredictor
from sgclip_ros.core.regions import Region
from sgclip_ros.core.scene_graph import Box, SceneGraph
from sgclip_ros.core.window import WindowConfig

W, H = 160, 120
K = Intrinsics(fx=100.0, fy=100.0, cx=80.0, cy=60.0, width=W, height=H)
PERIOD = 100_000_000
STEP = 0.07  # metres per frame towards the camera: 0.7 m/s
SHAPES = dict(
    categories=["circle", "square"], unary=["red"], binary=["left of"], name="shapes"
)


def _predictor(geometry: dict | None) -> SGClipPredictor:
    data = dict(SHAPES, **({"geometry": geometry} if geometry is not None else {}))
    config = load_model_config("sgclip-tiny")
    backend = TorchBackend(build_model(config, seed=0), "tiny")
    return SGClipPredictor(
        backend, concepts_from_dict(data), PredictorConfig(window=WindowConfig(size=4))
    )


def _card(depth: np.ndarray, box: tuple[int, int, int, int], z: float) -> Region:
    """A fronto-parallel card at depth z filling the pixel box."""
    x1, y1, x2, y2 = box
    depth[y1:y2, x1:x2] = z
    return Region(Box(x1, y1, x2, y2))


def _scene(t: int) -> tuple[np.ndarray, list[Region]]:
    """Two cards side by side at 2 m, the left one moving towards the camera at 0.7 m/s, and a
    wall at 4 m behind them."""
    depth = np.full((H, W), 4.0, np.float32)
    left = _card(depth, (20, 40, 60, 80), 2.0 - STEP * t)
    right = _card(depth, (100, 40, 140, 80), 2.0)
    return depth, [left, right]


def _feed(predictor: SGClipPredictor, frames: int = 4, with_depth: bool = True) -> SceneGraph:
    image = np.full((H, W, 3), 200, np.uint8)
    graph = None
    for t in range(frames):
        depth, regions = _scene(t)
        item = FrameInput("cam", image, (t + 1) * PERIOD, regions, "cam_optical")
        if with_depth:
            item = dataclasses.replace(item, depth=depth, intrinsics=K)
        graph = predictor.add_frames([item])[0]
    return graph


def _expected_x(box_x1: float, box_x2: float, z: float) -> float:
    return ((box_x1 + box_x2) / 2 - K.cx) * z / K.fx


def test_objects_get_positions_per_observation_and_a_velocity():
    graph = _feed(_predictor({"relations": ["near", "3d left of", "in front of"]}))
    assert len(graph.objects) == 2
    left = min(graph.objects, key=lambda o: o.position[0])
    right = max(graph.objects, key=lambda o: o.position[0])
    assert [ob.has_position for ob in left.observations] == [True] * 4
    for t, ob in enumerate(left.observations):
        assert ob.position[2] == pytest.approx(2.0 - STEP * t, rel=1e-3)
        assert ob.depth_confidence == 1.0
        assert ob.extent_min[2] <= ob.position[2] <= ob.extent_max[2]
    newest = 2.0 - 3 * STEP
    assert left.position[2] == pytest.approx(newest, rel=1e-3)  # the newest observation
    assert left.position[0] == pytest.approx(_expected_x(20, 60, newest), abs=0.02)
    assert left.velocity[2] == pytest.approx(-STEP / 0.1, rel=1e-3)
    assert right.velocity == pytest.approx((0.0, 0.0, 0.0), abs=1e-6)


def test_metric_relations_appear_with_per_frame_evidence():
    graph = _feed(_predictor({"relations": ["near", "3d left of", "in front of"]}))
    left = min(graph.objects, key=lambda o: o.position[0]).id
    right = max(graph.objects, key=lambda o: o.position[0]).id
    facts = {(r.subject_id, r.predicate, r.object_id): r for r in graph.relations}
    assert (left, "3d left of", right) in facts
    assert (right, "3d left of", left) not in facts
    # 2 m apart in x: not near (0.5 m). In front by 0.07 m more each frame: the margin (0.1 m)
    # is passed only from frame 2 (0.14 m) on, and the per-frame evidence says so.
    assert not any(p == "near" for _, p, _ in facts)
    front = facts[(left, "in front of", right)]
    assert (front.first_frame, front.last_frame) == (2, 3)
    assert front.frame_indices == [0, 1, 2, 3]
    assert front.frame_scores[0] < 0.5 < front.frame_scores[2] < front.frame_scores[3]
    assert (right, "behind", left) not in facts  # not enabled


def test_without_depth_or_without_a_geometry_section_the_graph_is_as_before():
    no_depth = _feed(_predictor({"relations": ["3d left of"]}), with_depth=False)
    assert all(not o.has_position and o.velocity is None for o in no_depth.objects)
    assert all(not ob.has_position for o in no_depth.objects for ob in o.observations)
    assert not [r for r in no_depth.relations if r.predicate == "3d left of"]
    plain = _feed(_predictor(None))
    assert all(o.has_position for o in plain.objects)  # positions come with depth ...
    assert not [r for r in plain.relations if r.predicate == "3d left of"]  # ... relations don't


def test_an_object_without_valid_depth_has_no_position_and_no_metric_relation():
    predictor = _predictor({"relations": ["3d left of"]})
    image = np.full((H, W, 3), 200, np.uint8)
    depth, regions = _scene(0)
    depth[40:80, 100:140] = np.nan  # the right card has no depth at all
    graph = predictor.add_frames([FrameInput("c", image, PERIOD, regions, "f", depth, K)])[0]
    right = max(graph.objects, key=lambda o: o.observations[0].box.x1)
    assert not right.has_position and not right.observations[0].has_position
    assert not [r for r in graph.relations if r.predicate == "3d left of"]


def test_depth_of_another_size_is_refused_by_name():
    predictor = _predictor({"relations": ["near"]})
    image = np.full((H, W, 3), 200, np.uint8)
    depth, regions = _scene(0)
    with pytest.raises(ValueError, match="depth is 80x60, the image is 160x120"):
        predictor.add_frames([FrameInput("c", image, PERIOD, regions, "f", depth[::2, ::2], K)])
    small = Intrinsics(100, 100, 40, 30, 80, 60)
    with pytest.raises(ValueError, match="camera info is for 80x60"):
        predictor.add_frames([FrameInput("c", image, PERIOD, regions, "f", depth, small)])


def test_the_geometry_section_round_trips_and_bad_values_are_named():
    concepts = concepts_from_dict(dict(SHAPES, geometry={"near_m": 1, "up": [0, 0, -1]}))
    assert concepts.geometry == GeometrySettings(near_m=1.0, up=(0.0, 0.0, -1.0))
    assert concepts.with_lists(categories=["cup"]).geometry == concepts.geometry
    # Sets without the section keep the id they had before geometry existed.
    plain = ConceptSet(("circle", "square"), ("red",), ("left of",))
    assert "geometry" not in plain.to_dict()
    assert concepts.concepts_id != concepts_from_dict(SHAPES).concepts_id
    for bad, words in [
        ({"near": 1}, "unknown key 'near'"),
        ({"near_m": "far"}, "near_m must be a number"),
        ({"near_m": True}, "near_m must be a number"),
        ({"up": [0, 1]}, "up must be a list of 3 numbers"),
        ({"relations": ["inside"]}, "relations entry 0 ('inside')"),
        ({"contact_m": -0.1}, "contact_m must be a finite number >= 0"),
    ]:
        with pytest.raises(ConceptError, match=re.escape("x.yaml: key 'geometry': " + words)):
            concepts_from_dict(dict(SHAPES, geometry=bad), "x.yaml")
