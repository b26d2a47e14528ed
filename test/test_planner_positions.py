"""`position` arguments: [x, y, z] in metres, checked against the scene graph's object positions."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import yaml

from sgclip_ros.planner.actions import ActionRejected, ActionSetError, load_action_set
from sgclip_ros.planner.positions import check_position, graph_positions
from sgclip_ros.tools.sample_graph import sample_scene_graph

REPO = pathlib.Path(__file__).resolve().parent.parent
IDS = {"1", "2", "7"}
# Object 1 at 1.5 m in front of the camera, object 2 2 m away to the right; 7 has no position.
POSITIONS = {"1": (0.1, -0.05, 1.5), "2": (0.8, 0.1, 2.0)}


@pytest.fixture(scope="module")
def actions():
    doc = yaml.safe_load((REPO / "config" / "planner.yaml").read_text())
    return load_action_set(doc["/**"]["ros__parameters"]["actions"], "planner.yaml")


def _go(target):
    return {"action": "move_to_point", "arguments": {"target": target}}


@pytest.mark.parametrize(
    "target",
    [[0.1, -0.05, 1.5], [0.6, -0.05, 1.5], [1, 0, 2], [0.8, 0.1, 2.999]],
    ids=["on-object", "half-metre-off", "integers", "just-inside"],
)
def test_positions_near_an_object_pass_as_floats(actions, target):
    action = actions.validate(_go(target), IDS, POSITIONS)
    expected = tuple(float(v) for v in target)
    assert action.positions == (("target", expected),)
    assert action.arguments == {"target": list(expected)}
    assert json.loads(action.arguments_json)["target"] == list(expected)
    assert action.object_ids == ()


@pytest.mark.parametrize(
    "target, why",
    [
        ("0.1, 0, 1.5", "must be a list [x, y, z]"),
        ({"x": 0.1, "y": 0, "z": 1.5}, "must be a list [x, y, z]"),
        ([0.1, 0.0], "must be a list [x, y, z]"),
        ([0.1, 0.0, 1.5, 1.0], "must be a list [x, y, z]"),
        ([], "must be a list [x, y, z]"),
        (None, "must be a list [x, y, z]"),
        (1.5, "must be a list [x, y, z]"),
        ([[0.1, 0.0, 1.5]], "must be a list [x, y, z]"),
        ([[0.1], [0.0], [1.5]], "must hold 3 numbers, not list"),
        (["0.1", "0", "1.5"], "must hold 3 numbers, not str"),
        ([True, False, True], "must hold 3 numbers, not bool"),
        ([0.1, None, 1.5], "must hold 3 numbers, not NoneType"),
        ([float("nan"), 0.0, 1.5], "must hold finite numbers"),
        ([0.1, float("inf"), 1.5], "must hold finite numbers"),
        ([10**400, 0, 1], "must hold finite numbers"),
        ([1e308, 1e308, 1e308], "from the camera"),
        ([0.0, 0.0, 25.0], "25.00 m from the camera (at most 20 m)"),
        ([0.1, -0.05, 0.4], "1.10 m from the nearest object with a position (1); at most 1 m"),
        ([-3.0, 0.0, 1.5], "from the nearest object"),
    ],
)
def test_bad_positions_are_rejected_naming_the_argument(actions, target, why):
    with pytest.raises(ActionRejected) as info:
        actions.validate(_go(target), IDS, POSITIONS)
    assert "move_to_point.target" in str(info.value)
    assert why in str(info.value)
    assert len(str(info.value)) < 400


def test_without_object_positions_every_position_is_rejected(actions):
    for positions in (None, {}, {"1": (float("nan"), 0.0, 1.0)}, {"1": None}):
        with pytest.raises(ActionRejected, match="no object of the scene graph has a 3D position"):
            actions.validate(_go([0.1, -0.05, 1.5]), IDS, positions)


def test_the_declared_bounds_are_used():
    actions = load_action_set(
        {"go": {"args": {"p": {"type": "position", "max_distance_m": 3, "max_offset_m": 0.25}}}}
    )
    assert actions.validate({"action": "go", "arguments": {"p": [0.1, 0.15, 1.5]}}, IDS, POSITIONS)
    with pytest.raises(ActionRejected, match=r"0\.30 m from the nearest .*at most 0\.25 m"):
        actions.validate({"action": "go", "arguments": {"p": [0.1, 0.25, 1.5]}}, IDS, POSITIONS)
    far = {"9": (0.0, 0.0, 3.2)}
    with pytest.raises(ActionRejected, match=r"3\.20 m from the camera \(at most 3 m\)"):
        actions.validate({"action": "go", "arguments": {"p": [0.0, 0.0, 3.2]}}, IDS, far)


def test_object_ids_and_positions_together_keep_argument_order():
    actions = load_action_set(
        {
            "put": {
                "args": {
                    "at": {"type": "position"},
                    "object_id": {"type": "object_id"},
                    "via": {"type": "position", "required": False},
                }
            }
        }
    )
    reply = {"action": "put", "arguments": {"object_id": "7", "at": [0.8, 0.1, 1.9]}}
    action = actions.validate(reply, IDS, POSITIONS)
    assert action.object_ids == ("7",) and action.positions == (("at", (0.8, 0.1, 1.9)),)


def test_schema_tells_the_model_units_frame_and_bounds(actions):
    target = actions.json_schema()["move_to_point"]["arguments"]["properties"]["target"]
    assert target["type"] == "array" and target["items"] == {"type": "number"}
    assert target["minItems"] == target["maxItems"] == 3
    assert "metres" in target["description"] and "camera frame" in target["description"]
    assert "1 m from the position of an object" in target["description"]
    assert "20 m from the camera" in target["description"]


@pytest.mark.parametrize(
    "body, why",
    [
        ({"type": "position", "max_distance_m": 0}, "'max_distance_m' must be a number in (0,"),
        ({"type": "position", "max_distance_m": 1e6}, "'max_distance_m' must be"),
        ({"type": "position", "max_offset_m": -1}, "'max_offset_m' must be"),
        ({"type": "position", "max_offset_m": float("nan")}, "'max_offset_m' must be"),
        ({"type": "position", "max_offset_m": True}, "'max_offset_m' must be"),
        ({"type": "position", "max_offset_m": "1"}, "'max_offset_m' must be"),
        ({"type": "position", "max_offset_m": 10**400}, "'max_offset_m' must be"),
        ({"type": "position", "min": 0, "max": 1}, "do not apply to type position"),
        ({"type": "position", "enum": ["a"]}, "do not apply to type position"),
        ({"type": "position", "radius": 1}, "unknown keys"),
    ],
)
def test_bad_position_specs_fail_loudly(body, why):
    with pytest.raises(ActionSetError) as info:
        load_action_set({"go": {"args": {"p": body}}}, "my.yaml")
    assert why in str(info.value) and "my.yaml" in str(info.value)


def test_graph_positions_keep_only_finite_known_positions():
    graph = sample_scene_graph()
    assert graph_positions(graph) == {}
    graph.objects[0].position = (0.25, -0.5, 1.75)
    graph.objects[1].position = (float("nan"), 0.0, 1.0)
    assert graph_positions(graph) == {"1": (0.25, -0.5, 1.75)}
    graph.objects[1].position = tuple(np.float32(v) for v in (0.5, 0.25, 2.0))  # in-process
    assert graph_positions(graph)["2"] == (0.5, 0.25, 2.0)


def test_the_nearest_object_is_named():
    with pytest.raises(ValueError, match=r"nearest object with a position \(2\)"):
        check_position("a.p", [0.8, 0.1, 4.0], POSITIONS)
    with pytest.raises(ValueError, match=r"nearest object with a position \(1\)"):
        check_position("a.p", [0.1, -0.05, 0.2], POSITIONS)
