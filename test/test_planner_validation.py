"""Tolerant JSON extraction, then strict validation against the allow-list, bounds and graph."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from sgclip_ros.planner.actions import (
    ActionRejected,
    ActionSetError,
    load_action_set,
)
from sgclip_ros.planner.json_extract import ExtractionError, extract_json_object
from sgclip_ros.ros.planner_params import load_actions, planner_defaults

REPO = pathlib.Path(__file__).resolve().parent.parent
IDS = {"1", "2", "7"}


@pytest.fixture(scope="module")
def actions():
    doc = yaml.safe_load((REPO / "config" / "planner.yaml").read_text())
    return load_action_set(doc["/**"]["ros__parameters"]["actions"], "planner.yaml")


# ---- extraction ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        '{"action": "stop"}',
        '```json\n{"action": "stop"}\n```',
        '```\n{"action": "stop"}\n```',
        'Sure! Here is the action:\n{"action": "stop"}',
        '{"action": "stop"}\nI chose stop because it is safe.',
        'I considered {options} first. {"action": "stop"}',
        '{"action": "stop"} and again {"action": "stop"}',
    ],
    ids=["bare", "fenced-json", "fenced", "leading", "trailing", "prose-braces", "repeated"],
)
def test_extraction_tolerates_fences_and_prose(text):
    assert extract_json_object(text) == {"action": "stop"}


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "empty"),
        ("I think you should go left.", "no complete JSON"),
        ('{"action": "move_to", "argu', "truncated"),
        ('{"action": "pick", "arguments": {"object_id": "1"}', "truncated"),
        ('{"action": "stop"} {"action": "done"}', "ambiguous"),
        ('{"action": "stop", "action": "pick"}', "duplicate key"),
        ('{"action": "turn", "arguments": {"angle": NaN}}', "NaN"),
        ('{"action": "turn", "arguments": {"angle": Infinity}}', "Infinity"),
        ('{"a": ' * 20 + "1" + "}" * 20, "nested"),
        ("x" * 70000, "longer than"),
    ],
)
def test_extraction_refuses_what_is_not_one_clean_object(text, why):
    with pytest.raises(ExtractionError) as info:
        extract_json_object(text)
    assert why in str(info.value)


def test_extraction_survives_pathological_input():
    with pytest.raises(ExtractionError):
        extract_json_object("{" * 60000)
    with pytest.raises(ExtractionError):
        extract_json_object("[" * 50000 + "]" * 50000)
    big_int = '{"action": "turn", "arguments": {"angle": ' + "9" * 5000 + "}}"
    with pytest.raises(ExtractionError):
        extract_json_object(big_int)


# ---- validation ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "reply, args",
    [
        ({"action": "move_to", "arguments": {"object_id": "7"}}, {"object_id": "7"}),
        ({"action": "turn", "arguments": {"angle": -180}}, {"angle": -180}),
        ({"action": "turn", "arguments": {"angle": 179.5}, "reason": "look"}, {"angle": 179.5}),
        ({"action": "stop"}, {}),
        ({"action": "done", "arguments": {}}, {}),
        (
            {"action": "place", "arguments": {"object_id": "1", "relation": "on top of"}},
            {"object_id": "1", "relation": "on top of"},
        ),
    ],
)
def test_valid_actions_pass_unchanged(actions, reply, args):
    action = actions.validate(reply, IDS)
    assert action.name == reply["action"] and action.arguments == args


@pytest.mark.parametrize(
    "reply, why",
    [
        ({"action": "self_destruct"}, "not allowed"),
        ({"action": "Move_To", "arguments": {"object_id": "1"}}, "not allowed"),
        ({"action": "move_to ", "arguments": {"object_id": "1"}}, "not allowed"),
        ({"action": "mov\u0435_to", "arguments": {"object_id": "1"}}, "not allowed"),  # Cyrillic e
        ({"action": None}, "missing or not a string"),
        ({"arguments": {}}, "missing or not a string"),
        ({"action": "stop", "command": "rm -rf /"}, "unexpected keys"),
        ({"action": "move_to", "arguments": {}}, "missing argument 'object_id'"),
        ({"action": "move_to", "arguments": {"object_id": "1", "speed": 9}}, "unknown arguments"),
        ({"action": "move_to", "arguments": {"object_id": "99"}}, "not an object of the scene"),
        ({"action": "move_to", "arguments": {"object_id": 7}}, "must be a string"),
        ({"action": "move_to", "arguments": {"object_id": "1; rm -rf /"}}, "not an object"),
        ({"action": "move_to", "arguments": ["1"]}, "must be a JSON object"),
        ({"action": "turn", "arguments": {"angle": 181}}, "out of range"),
        ({"action": "turn", "arguments": {"angle": -720.0}}, "out of range"),
        ({"action": "turn", "arguments": {"angle": 1e308}}, "out of range"),
        ({"action": "turn", "arguments": {"angle": "90"}}, "must be a number"),
        ({"action": "turn", "arguments": {"angle": True}}, "must be a number"),
        ({"action": "turn", "arguments": {"angle": None}}, "must be a number"),
        ({"action": "turn", "arguments": {"angle": float("nan")}}, "must be finite"),
        ({"action": "place", "arguments": {"object_id": "1", "relation": "under"}}, "not one of"),
        ({"action": "stop", "reason": 5}, "'reason' must be a string"),
        ({"action": "stop", "reason": "x" * 501}, "longer than 500"),
        (["stop"], "not a JSON object"),
    ],
)
def test_invalid_actions_are_rejected_with_a_reason(actions, reply, why):
    with pytest.raises(ActionRejected) as info:
        actions.validate(reply, IDS)
    assert why in str(info.value)
    assert len(str(info.value)) < 400  # untrusted text is shortened in messages


def test_reason_control_characters_are_removed(actions):
    action = actions.validate({"action": "stop", "reason": "safe\x1b[2J\nnow"}, IDS)
    assert action.reason == "safe [2J now"


def test_object_ids_and_arguments_json(actions):
    reply = {"action": "place", "arguments": {"relation": "left of", "object_id": "2"}}
    action = actions.validate(reply, IDS)
    assert action.object_ids == ("2",)
    assert action.arguments_json == '{"object_id": "2", "relation": "left of"}'


def test_schema_shown_to_the_model_has_bounds_and_enums(actions):
    schema = actions.json_schema()
    assert set(schema) == {"move_to", "move_to_point", "turn", "stop", "done", "pick", "place"}
    angle = schema["turn"]["arguments"]["properties"]["angle"]
    assert angle["minimum"] == -180.0 and angle["maximum"] == 180.0
    assert schema["place"]["arguments"]["properties"]["relation"]["enum"][0] == "on top of"
    assert schema["move_to"]["arguments"]["additionalProperties"] is False


# ---- action set loading -------------------------------------------------------------------
def test_groups_restrict_the_allow_list():
    doc = yaml.safe_load((REPO / "config" / "planner.yaml").read_text())
    data = doc["/**"]["ros__parameters"]["actions"]
    nav = load_action_set(data, groups=["navigation"])
    assert nav.names == ["done", "move_to", "move_to_point", "stop", "turn"]
    with pytest.raises(ActionRejected, match="not allowed"):
        nav.validate({"action": "pick", "arguments": {"object_id": "1"}}, IDS)


@pytest.mark.parametrize(
    "data, why",
    [
        ({}, "non-empty mapping"),
        ({"Move": {}}, "lower_snake_case"),
        ({"turn": {"args": {"angle": {"type": "number"}}}}, "finite 'min' <= 'max'"),
        ({"turn": {"args": {"angle": {"type": "number", "min": 5, "max": 1}}}}, "'min' <= 'max'"),
        ({"turn": {"args": {"angle": {"type": "float", "min": 0, "max": 1}}}}, "'type' must be"),
        ({"turn": {"argz": {}}}, "unknown keys"),
        ({"go": {"args": {"x": {"type": "object_id", "min": 1}}}}, "do not apply"),
        ({"go": {"args": {"x": {"type": "number", "min": 0, "max": 1, "enum": ["a"]}}}}, "apply"),
        ({"go": {"args": {"x": {"type": "string", "max_offset_m": 1}}}}, "do not apply"),
        ({"say": {"args": {"text": {"type": "string", "max_length": 10000}}}}, "max_length"),
    ],
)
def test_bad_action_sets_fail_loudly(data, why):
    with pytest.raises(ActionSetError) as info:
        load_action_set(data, "my.yaml")
    assert why in str(info.value) and "my.yaml" in str(info.value)


def test_shipped_config_loads_through_the_node_path():
    values = planner_defaults()
    names = ["done", "move_to", "move_to_point", "pick", "place", "stop", "turn"]
    assert load_actions(values).names == names
