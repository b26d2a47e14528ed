"""Property tests: JSON extraction, the action validator and concept replies on random input.

Every input either gets the module's documented error (ExtractionError, ActionSetError,
ActionRejected, ConceptReplyError) or a result that satisfies the module's promises; no other
exception may escape, because the planner only catches those.
"""

from __future__ import annotations

import json
import math
import pathlib
import string

import pytest
import yaml
from fuzz_settings import fuzz
from hypothesis import assume, given
from hypothesis import strategies as st

from sgclip_ros.core.concepts import MAX_ENTRY_CHARS, ConceptSet
from sgclip_ros.planner.actions import (
    ARG_TYPES,
    ActionRejected,
    ActionSet,
    ActionSetError,
    ValidatedAction,
    load_action_set,
)
from sgclip_ros.planner.concept_request import ConceptReplyError, concept_lists
from sgclip_ros.planner.json_extract import (
    MAX_DEPTH,
    MAX_TEXT_CHARS,
    ExtractionError,
    extract_json_object,
)

REPO = pathlib.Path(__file__).resolve().parent.parent
FUZZ = fuzz(200)

# ---- strategies ---------------------------------------------------------------------------
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
maybe_junk = st.integers(0, 4).map(bool)  # True 4 times in 5: mostly well-formed pieces


@st.composite
def mostly(draw, good, junk=json_values):
    """``good`` 4 times in 5, else ``junk`` (one_of would split evenly between the two)."""
    return draw(good) if draw(maybe_junk) else draw(junk)
# Python values that no JSON parser returns, but a buggy caller could pass.
odd_values = json_values | st.floats() | st.tuples(json_values) | st.binary(max_size=8)

JSON_CHARS = '{}[]":,\\ \n\t0123456789.eE+-truefalsnNaIiy`'
prose = st.text(alphabet=st.sampled_from(string.ascii_letters + " .,!?\n`:'()[]}"), max_size=40)
json_ish_text = st.text(alphabet=st.sampled_from(JSON_CHARS) | st.characters(), max_size=200)


def _nested(depth: int, kind: str) -> str:
    opener, closer = ('{"k": ', "}") if kind == "obj" else ("[", "]")
    return '{"a": ' + opener * depth + "1" + closer * depth + "}"


@st.composite
def mutated_json(draw) -> str:
    """Valid object text, then truncated, spliced, duplicated or given odd numbers."""
    text = json.dumps(draw(json_objects), indent=draw(st.sampled_from([None, 2])))
    how = draw(st.sampled_from(["cut", "insert", "twice", "big", "dup_key", "nest", "fence"]))
    if how == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif how == "insert":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(json_ish_text) + text[at:]
    elif how == "twice":
        text = text + draw(prose) + json.dumps(draw(json_objects))
    elif how == "big":
        odd = ["1e400", "-1e400", "1e-400", "9" * 5000, "NaN", "-Infinity"]
        number = draw(st.sampled_from(odd))
        text = '{"x": ' + number + ', "y": ' + text + "}"
    elif how == "dup_key":
        text = '{"k": 1, "k": ' + text + "}"
    elif how == "nest":
        text = _nested(draw(st.integers(0, 3000)), draw(st.sampled_from(["obj", "list"])))
    else:
        text = "```json\n" + text + "\n```"
    return draw(prose) + text + draw(prose)


reply_texts = json_ish_text | mutated_json() | st.text(max_size=300)


def _depth(value, level: int = 1) -> int:
    """Nesting depth, iteratively (the oracle must not recurse either)."""
    best, stack = level - 1, [(value, level)]
    while stack:
        item, lvl = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            best = max(best, lvl)
            stack.extend((v, lvl + 1) for v in item)
    return best


# ---- JSON extraction ------------------------------------------------------------------------
@FUZZ
@given(reply_texts)
def test_extraction_returns_a_shallow_round_tripping_object_or_extraction_error(text):
    try:
        obj = extract_json_object(text)
    except ExtractionError as exc:
        assert str(exc)  # a reason the planner can log
        return
    assert isinstance(obj, dict)
    assert _depth(obj) <= MAX_DEPTH
    dumped = json.dumps(obj, allow_nan=False)  # strict JSON: no NaN or infinity slipped in
    assert json.loads(dumped) == obj
    assert extract_json_object(dumped) == obj


@FUZZ
@given(
    json_objects,
    prose,  # no "{": the object is the only place a scan can start
    prose,
    st.sampled_from(["bare", "fence", "indent"]),
)
def test_one_object_in_prose_without_braces_is_found_exactly(obj, before, after, style):
    body = json.dumps(obj, indent=2 if style == "indent" else None, ensure_ascii=False)
    text = before + ("```json\n" + body + "\n```" if style == "fence" else body) + after
    assume(text.strip() and len(text) <= MAX_TEXT_CHARS)
    if _depth(obj) > MAX_DEPTH:
        try:
            extract_json_object(text)
        except ExtractionError as exc:
            assert "nested" in str(exc)
        else:
            raise AssertionError("an object nested too deeply was accepted")
    else:
        assert extract_json_object(text) == obj


@FUZZ
@given(st.integers(0, 3000), st.sampled_from(["obj", "list"]), st.integers(1, 3))
def test_deep_nesting_is_refused_with_extraction_error(depth, kind, copies):
    text = " ".join([_nested(depth, kind)] * copies)
    try:
        obj = extract_json_object(text)
    except ExtractionError:
        assert depth + 1 > MAX_DEPTH
    else:
        assert depth + 1 <= MAX_DEPTH and _depth(obj) == depth + 1


@FUZZ
@given(odd_values)
def test_extraction_of_non_text_is_an_extraction_error(value):
    assume(not isinstance(value, str))
    try:
        extract_json_object(value)
    except ExtractionError:
        return
    raise AssertionError(f"{value!r} was accepted")


# ---- the action validator -----------------------------------------------------------------
def _shipped_actions() -> ActionSet:
    doc = yaml.safe_load((REPO / "config" / "planner.yaml").read_text())
    return load_action_set(doc["/**"]["ros__parameters"]["actions"], "planner.yaml")


SHIPPED = _shipped_actions()
IDS = ("1", "2", "7", "cup_3")
# Objects 1 and cup_3 have 3D positions (from depth); 2 and 7 do not.
POSITIONS = {"1": (0.1, -0.05, 1.5), "cup_3": (-0.4, 0.2, 0.8)}
ARG_NAMES = sorted({a.name for spec in SHIPPED.actions.values() for a in spec.args})


@st.composite
def replies(draw, actions: ActionSet | None = None):
    """Replies near an action set (its names and arguments, values mostly of the right type)."""
    actions = actions or SHIPPED
    reply = {}
    if draw(maybe_junk):
        reply["action"] = draw(mostly(st.sampled_from(actions.names)))
    name = reply.get("action")
    spec = actions.actions.get(name) if isinstance(name, str) else None
    arguments = {}
    for arg in spec.args if spec else ():
        if draw(maybe_junk):
            arguments[arg.name] = draw(mostly(_good_value(arg)))
    if not draw(maybe_junk):
        arguments[draw(st.text(max_size=8))] = draw(json_values)
    if arguments or draw(st.booleans()):
        reply["arguments"] = draw(mostly(st.just(arguments)))
    if draw(st.booleans()):
        reply["reason"] = draw(mostly(st.text(max_size=600)))
    if draw(st.integers(0, 9)) == 0:
        reply[draw(st.text(max_size=8))] = draw(json_values)
    return reply


finite = st.floats(allow_nan=False, allow_infinity=False)
# Near an object (mostly accepted), anywhere, or hostile: NaN, infinity, huge integers, booleans.
near_points = st.tuples(
    st.sampled_from(sorted(POSITIONS.values())),
    st.lists(st.floats(-0.8, 0.8), min_size=3, max_size=3),
).map(lambda t: [round(a + b, 6) for a, b in zip(*t)])
any_points = st.lists(st.floats(-25, 25) | st.integers(-25, 25), min_size=3, max_size=3)
hostile_numbers = (
    st.floats()
    | st.sampled_from([math.nan, math.inf, -math.inf, 10**400, True, False, None])
    | st.text(max_size=4)
    | st.lists(finite, max_size=3)
)
hostile_points = (
    st.lists(hostile_numbers, min_size=3, max_size=3).filter(
        lambda p: not all(_finite_number(v) for v in p)
    )
    | st.lists(finite, max_size=6).filter(lambda p: len(p) != 3)
    | st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=3)
    | st.tuples(finite, finite, finite)  # not a JSON array: no parser returns a tuple
    | scalars
    | st.dictionaries(st.sampled_from("xyz"), finite, max_size=3)
)


def _finite_number(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _good_value(arg):
    if arg.type == "position":
        return near_points | any_points
    if arg.type == "object_id":
        return st.sampled_from(IDS) | st.text(max_size=4)
    if arg.type == "boolean":
        return st.booleans()
    if arg.type in ("number", "integer"):
        low, high = max(arg.min, -1e6), min(arg.max, 1e6)
        ints = st.integers(math.floor(low) - 2, math.ceil(high) + 2)
        return ints if arg.type == "integer" else ints | st.floats(low - 1, high + 1) | st.floats()
    if arg.enum:
        return st.sampled_from(arg.enum) | st.text(max_size=8)
    return st.text(max_size=arg.max_length + 2)


def _check_validated(action: ValidatedAction, actions: ActionSet, ids) -> None:
    spec = actions.actions[action.name]
    args = {a.name: a for a in spec.args}
    assert set(action.arguments) <= set(args)
    assert all(a.name in action.arguments for a in spec.args if a.required)
    for name, value in action.arguments.items():
        arg = args[name]
        if arg.type == "boolean":
            assert isinstance(value, bool)
        elif arg.type in ("number", "integer"):
            assert not isinstance(value, bool) and math.isfinite(value)
            assert arg.min <= value <= arg.max
            assert arg.type == "number" or isinstance(value, int)
        elif arg.type == "object_id":
            assert value in ids
        elif arg.type == "position":
            _check_point(arg, value, action)
        elif arg.enum:
            assert value in arg.enum
        else:
            assert isinstance(value, str) and len(value) <= arg.max_length and value.isprintable()
    assert set(action.object_ids) <= set(ids)
    assert [n for n, _ in action.positions] == [
        a.name for a in spec.args if a.type == "position" and a.name in action.arguments
    ]
    assert len(action.reason) <= actions.max_reason_chars and action.reason.isprintable()
    assert json.loads(action.arguments_json) == action.arguments


def _check_point(arg, value, action: ValidatedAction) -> None:
    """An accepted point: 3 finite floats, within both bounds, and in ``action.positions``."""
    assert isinstance(value, list) and [type(v) for v in value] == [float] * 3
    assert all(math.isfinite(v) for v in value)
    assert math.hypot(*value) <= arg.max_distance_m
    assert min(math.dist(value, p) for p in POSITIONS.values()) <= arg.max_offset_m
    assert dict(action.positions)[arg.name] == tuple(value)


@FUZZ
@given(mostly(replies()), st.lists(st.sampled_from(IDS), max_size=4))
def test_validate_accepts_only_in_bounds_actions_or_raises_action_rejected(reply, ids):
    try:
        action = SHIPPED.validate(reply, ids, POSITIONS)
    except ActionRejected as exc:
        assert str(exc)
        return
    _check_validated(action, SHIPPED, ids)


@FUZZ
@given(near_points | any_points)
def test_points_are_accepted_exactly_when_within_both_bounds(target):
    spec = next(a for a in SHIPPED.actions["move_to_point"].args if a.name == "target")
    inside = math.hypot(*target) <= spec.max_distance_m and min(
        math.dist(target, p) for p in POSITIONS.values()
    ) <= spec.max_offset_m
    reply = {"action": "move_to_point", "arguments": {"target": target}}
    try:
        action = SHIPPED.validate(reply, IDS, POSITIONS)
    except ActionRejected as exc:
        assert not inside, f"{target} was rejected: {exc}"
        assert "move_to_point.target" in str(exc)
        return
    assert inside, f"{target} was accepted"
    _check_point(spec, action.arguments["target"], action)


@FUZZ
@given(hostile_points, st.sampled_from([POSITIONS, {}, {"1": (math.nan, 0.0, 1.0)}]))
def test_hostile_positions_are_rejected_naming_the_argument(target, positions):
    reply = {"action": "move_to_point", "arguments": {"target": target}}
    try:
        action = SHIPPED.validate(reply, IDS, positions)
    except ActionRejected as exc:
        assert "move_to_point.target" in str(exc) and len(str(exc)) < 400
        return
    raise AssertionError(f"{target!r} was accepted as {action.positions}")


@FUZZ
@given(near_points | any_points, st.sampled_from([{}, {"2": None}, {"1": (0.0, math.inf, 1.0)}]))
def test_positions_need_a_finite_object_position_in_the_graph(target, positions):
    reply = {"action": "move_to_point", "arguments": {"target": target}}
    try:
        action = SHIPPED.validate(reply, IDS, positions)
    except ActionRejected as exc:
        assert "move_to_point.target" in str(exc)
        return
    raise AssertionError(f"{target!r} was accepted as {action.positions} without positions")


@FUZZ
@given(reply_texts)
def test_extracted_replies_validate_or_are_refused_with_the_two_planner_errors(text):
    try:
        action = SHIPPED.validate(extract_json_object(text), IDS, POSITIONS)
    except (ExtractionError, ActionRejected):
        return
    _check_validated(action, SHIPPED, IDS)


numbers = (
    st.integers(-1000, 1000)
    | st.floats()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.integers(min_value=-(10**400), max_value=-(10**300))
)


@st.composite
def arg_bodies(draw):
    """Argument specs: mostly well-formed for their type, sometimes with junk or extra keys."""
    kind = draw(st.sampled_from(ARG_TYPES)) if draw(maybe_junk) else draw(json_values)
    body = {"type": kind}
    if kind in ("number", "integer") or not draw(maybe_junk):
        body["min"] = draw(numbers) if draw(maybe_junk) else draw(json_values)
        body["max"] = draw(numbers) if draw(maybe_junk) else draw(json_values)
    if kind == "string" or not draw(maybe_junk):
        if draw(st.booleans()):
            body["enum"] = draw(st.lists(st.text(max_size=6), max_size=3) | json_values)
        if draw(st.booleans()):
            body["max_length"] = draw(st.integers(-5, 300) | json_values)
    if kind == "position" or not draw(maybe_junk):
        for key in ("max_distance_m", "max_offset_m"):
            if draw(st.booleans()):
                good = numbers | st.floats(0, 30)
                body[key] = draw(good) if draw(maybe_junk) else draw(json_values)
    optional = {"required": st.booleans() | json_values, "description": st.text(max_size=20)}
    for key, values in optional.items():
        if draw(st.booleans()):
            body[key] = draw(values)
    if not draw(maybe_junk):
        body[draw(st.text(max_size=6))] = draw(json_values)
    return body


names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
arg_names = mostly(names, st.text(max_size=8))


@st.composite
def action_bodies(draw):
    if not draw(maybe_junk):
        return draw(st.none() | json_values)
    body = {"args": draw(st.dictionaries(arg_names, arg_bodies(), max_size=3))}
    if not draw(maybe_junk):
        body["args"] = draw(json_values)
    if draw(st.booleans()):
        body["description"] = draw(st.text(max_size=20))
    if draw(st.booleans()):
        body["group"] = draw(st.sampled_from(["navigation", "manipulation", ""]) | json_values)
    return body


action_sets = mostly(st.dictionaries(arg_names, action_bodies(), min_size=1, max_size=3))


@FUZZ
@given(
    action_sets,
    st.lists(st.sampled_from(["*", "navigation", "manipulation", "default", ""]), max_size=2),
    st.data(),
)
def test_random_action_sets_load_or_raise_action_set_error(data, groups, draw):
    try:
        actions = load_action_set(data, "<fuzz>", groups or ("*",))
    except ActionSetError as exc:
        assert str(exc).startswith("<fuzz>")
        return
    assert actions.names and all(isinstance(n, str) for n in actions.names)
    for spec in actions.actions.values():
        for arg in spec.args:
            assert arg.type in ARG_TYPES
            if arg.type in ("number", "integer"):
                assert math.isfinite(arg.min) and math.isfinite(arg.max) and arg.min <= arg.max
            if arg.type == "position":
                assert 0 < arg.max_distance_m <= 1000 and 0 < arg.max_offset_m <= 1000
    json.dumps(actions.json_schema(), allow_nan=False)  # what the model is shown is valid JSON
    try:
        action = actions.validate(draw.draw(mostly(replies(actions))), IDS, POSITIONS)
    except ActionRejected:
        return
    _check_validated(action, actions, IDS)


# ---- the concept reply (step 1 of the loop) ----------------------------------------------
concept_words = st.text(max_size=70) | st.sampled_from(["cup", "Cup", " cup ", "red", "on", ""])
concept_replies = st.fixed_dictionaries(
    {},
    optional={
        key: st.lists(concept_words | json_values, max_size=12) | concept_words | json_values
        for key in ("targets", "related_objects", "attributes", "relations")
    },
) | json_values


@FUZZ
@given(
    concept_replies,
    st.integers(1, 10),
    st.tuples(*[st.lists(concept_words, max_size=3)] * 3),
)
def test_concept_replies_give_valid_concept_lists_or_concept_reply_error(reply, limit, extra):
    try:
        lists = concept_lists(reply, limit, extra)
    except ConceptReplyError as exc:
        assert str(exc)
        return
    assert lists.categories
    for words in (lists.categories, lists.unary, lists.binary):
        assert all(w and len(w) <= MAX_ENTRY_CHARS and w.isprintable() for w in words)
        assert len({w.lower() for w in words}) == len(words)
    ConceptSet(categories=lists.categories, unary=lists.unary, binary=lists.binary)


@pytest.mark.parametrize(
    "value", ["2001-13-01", "!!bool maybe", "!!timestamp foo", "!!int ''", "[" * 2000]
)
def test_an_actions_file_with_values_yaml_cannot_build_is_refused_by_name(tmp_path, value):
    from sgclip_ros.ros.planner_params import load_actions

    path = tmp_path / "actions.yaml"
    path.write_text(f"actions:\n  stop:\n    description: {value}\n")
    params = {"actions_file": str(path), "enabled_groups": "*", "max_reason_chars": 200}
    with pytest.raises(ActionSetError, match="actions.yaml"):
        load_actions(params)
