"""The allowed actions (from YAML) and strict validation of a model's action against them.

An action set is a mapping ``name -> {description, group, args}``; each argument has a ``type``
(object_id, number, integer, string, boolean, position) and bounds: numbers need ``min`` and
``max``, strings an ``enum`` or ``max_length``, positions take ``max_distance_m`` and
``max_offset_m``. A reply is accepted only if it names an allowed action, has exactly that
action's arguments, every value has the right type and lies within its bounds, every object_id
is a track of the scene graph the model was shown, and every position lies near one of that
graph's object positions (see :mod:`sgclip_ros.planner.positions`). Nothing is coerced.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from sgclip_ros.core.scene_graph import Vec3
from sgclip_ros.planner.positions import (
    DEFAULT_MAX_DISTANCE_M,
    DEFAULT_MAX_OFFSET_M,
    LIMIT_M,
    PositionRejected,
    check_position,
    finite_vec3,
)

ARG_TYPES = ("object_id", "number", "integer", "string", "boolean", "position")
REPLY_KEYS = ("action", "arguments", "reason")
ALL_GROUPS = "*"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_ACTION_KEYS = {"description", "group", "args"}
_BOUND_KEYS = {"min", "max", "enum", "max_length", "max_distance_m", "max_offset_m"}
_ARG_KEYS = {"type", "description", "required"} | _BOUND_KEYS
_BOUNDS_OF = {  # the bound keys each type takes; any other bound key is an error
    "number": {"min", "max"},
    "integer": {"min", "max"},
    "string": {"enum", "max_length"},
    "position": {"max_distance_m", "max_offset_m"},
}
_MAX_STRING = 256


class ActionSetError(ValueError):
    """An invalid action set definition (names the source, action and argument)."""


class ActionRejected(ValueError):
    """A model reply that is not an allowed, well-formed, in-bounds action."""


@dataclass(frozen=True)
class ArgSpec:
    name: str
    type: str
    description: str = ""
    min: float | None = None
    max: float | None = None
    enum: tuple[str, ...] = ()
    max_length: int = 64
    required: bool = True
    max_distance_m: float = DEFAULT_MAX_DISTANCE_M
    max_offset_m: float = DEFAULT_MAX_OFFSET_M

    def schema(self) -> dict[str, Any]:
        """JSON Schema of this argument (shown to the model)."""
        if self.type == "position":
            return self._position_schema()
        out: dict[str, Any] = {"type": "string" if self.type == "object_id" else self.type}
        if self.type == "object_id":
            out["description"] = "id of an object in the scene graph. " + self.description
        elif self.description:
            out["description"] = self.description
        if self.type in ("number", "integer"):
            out.update(minimum=self.min, maximum=self.max)
        if self.type == "string":
            out.update({"enum": list(self.enum)} if self.enum else {"maxLength": self.max_length})
        return out

    def _position_schema(self) -> dict[str, Any]:
        where = (
            "[x, y, z] in metres in the scene graph's camera frame (x right, y down, z forward), "
            f"at most {self.max_offset_m:g} m from the position of an object of the scene graph "
            f"and at most {self.max_distance_m:g} m from the camera."
        )
        return {
            "type": "array",
            "items": {"type": "number"},
            "minItems": 3,
            "maxItems": 3,
            "description": f"{where} {self.description}".strip(),
        }


@dataclass(frozen=True)
class ActionSpec:
    name: str
    description: str = ""
    group: str = "default"
    args: tuple[ArgSpec, ...] = ()

    def schema(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "arguments": {
                "type": "object",
                "properties": {a.name: a.schema() for a in self.args},
                "required": [a.name for a in self.args if a.required],
                "additionalProperties": False,
            },
        }


@dataclass(frozen=True)
class ValidatedAction:
    """An action that passed every check; only these are ever published."""

    name: str
    arguments: dict[str, Any]
    reason: str
    object_ids: tuple[str, ...] = field(default=())
    # (argument name, point) for each `position` argument given, in argument order.
    positions: tuple[tuple[str, Vec3], ...] = field(default=())

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, sort_keys=True, ensure_ascii=False)


class ActionSet:
    """The allow-list: validated specs by name."""

    def __init__(self, actions: Mapping[str, ActionSpec], max_reason_chars: int = 500):
        if not actions:
            raise ActionSetError("the action set is empty")
        self.actions = dict(actions)
        self.max_reason_chars = max_reason_chars

    @property
    def names(self) -> list[str]:
        return sorted(self.actions)

    def json_schema(self) -> dict[str, Any]:
        return {name: self.actions[name].schema() for name in self.names}

    def validate(
        self,
        reply: Any,
        object_ids: Collection[str],
        positions: Mapping[str, Vec3] | None = None,
    ) -> ValidatedAction:
        """A ValidatedAction from a parsed reply, or raise :class:`ActionRejected` saying why.

        ``positions`` (object id -> finite 3D position) are what `position` arguments must lie
        near; without them every position argument is rejected."""
        if not isinstance(reply, dict):
            raise ActionRejected("the reply is not a JSON object")
        extra = sorted(set(reply) - set(REPLY_KEYS))
        if extra:
            raise ActionRejected(f"unexpected keys {_show(extra)} (allowed: {list(REPLY_KEYS)})")
        name = reply.get("action")
        if not isinstance(name, str):
            raise ActionRejected("'action' is missing or not a string")
        spec = self.actions.get(name)
        if spec is None:
            raise ActionRejected(f"action {_show(name)} is not allowed (allowed: {self.names})")
        arguments = reply.get("arguments", {})
        if not isinstance(arguments, dict):
            raise ActionRejected(f"{name}: 'arguments' must be a JSON object")
        graph = _Graph(set(object_ids), _finite_positions(positions or {}))
        clean = _check_arguments(spec, arguments, graph)
        given = [a for a in spec.args if a.name in clean]
        ids = tuple(str(clean[a.name]) for a in given if a.type == "object_id")
        points = tuple((a.name, tuple(clean[a.name])) for a in given if a.type == "position")
        return ValidatedAction(name, clean, self._reason(reply.get("reason", "")), ids, points)

    def _reason(self, reason: Any) -> str:
        if not isinstance(reason, str):
            raise ActionRejected("'reason' must be a string")
        if len(reason) > self.max_reason_chars:
            raise ActionRejected(f"'reason' is longer than {self.max_reason_chars} characters")
        return "".join(c if unicodedata.category(c)[0] != "C" else " " for c in reason).strip()


@dataclass(frozen=True)
class _Graph:
    """What arguments are checked against: the shown graph's object ids and positions."""

    object_ids: set[str]
    positions: dict[str, Vec3]


def _finite_positions(positions: Mapping[str, Any]) -> dict[str, Vec3]:
    # A NaN position would pass every distance check (NaN > limit is False): finite ones only.
    points = {str(i): finite_vec3(p) for i, p in positions.items()}
    return {i: p for i, p in points.items() if p is not None}


def _check_arguments(spec: ActionSpec, arguments: dict, graph: _Graph) -> dict[str, Any]:
    known = {a.name for a in spec.args}
    unknown = sorted(set(arguments) - known)
    if unknown:
        raise ActionRejected(f"{spec.name}: unknown arguments {_show(unknown)}")
    clean = {}
    for arg in spec.args:
        if arg.name not in arguments:
            if arg.required:
                raise ActionRejected(f"{spec.name}: missing argument '{arg.name}'")
            continue
        clean[arg.name] = _check_value(spec.name, arg, arguments[arg.name], graph)
    return clean


def _check_value(action: str, arg: ArgSpec, value: Any, graph: _Graph) -> Any:
    where = f"{action}.{arg.name}"
    if arg.type == "position":
        try:
            point = check_position(
                where, value, graph.positions, arg.max_distance_m, arg.max_offset_m
            )
        except PositionRejected as exc:
            raise ActionRejected(str(exc)) from None
        return list(point)  # floats: what the robot gets, also in arguments_json
    if arg.type == "boolean":
        if not isinstance(value, bool):
            raise ActionRejected(f"{where} must be true or false, got {_show(value)}")
        return value
    if arg.type in ("number", "integer"):
        return _check_number(where, arg, value)
    if not isinstance(value, str):
        raise ActionRejected(f"{where} must be a string, got {_show(value)}")
    if arg.type == "object_id":
        if value not in graph.object_ids:
            raise ActionRejected(f"{where} {_show(value)} is not an object of the scene graph used")
    elif arg.enum and value not in arg.enum:
        raise ActionRejected(f"{where} {_show(value)} is not one of {list(arg.enum)}")
    elif len(value) > arg.max_length or not value.isprintable():
        raise ActionRejected(f"{where} must be printable text of at most {arg.max_length} chars")
    return value


def _check_number(where: str, arg: ArgSpec, value: Any) -> float | int:
    # bool is an int subclass in Python: true must not pass as 1.
    kinds = (int,) if arg.type == "integer" else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ActionRejected(f"{where} must be {'an integer' if kinds == (int,) else 'a number'}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ActionRejected(f"{where} must be finite")
    if not arg.min <= value <= arg.max:
        raise ActionRejected(f"{where} {_show(value)} is out of range [{arg.min:g}, {arg.max:g}]")
    return value


def _show(value: Any) -> str:
    """A short printable rendering of untrusted model output for messages."""
    text = json.dumps(value, ensure_ascii=True) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---- loading ---------------------------------------------------------------------------------
def load_action_set(
    data: Mapping[str, Any],
    source: str = "<actions>",
    groups: Collection[str] = (ALL_GROUPS,),
    max_reason_chars: int = 500,
) -> ActionSet:
    """Validate an ``actions`` mapping (parsed YAML) and keep the enabled groups."""
    if not isinstance(data, Mapping) or not data:
        raise ActionSetError(f"{source}: 'actions' must be a non-empty mapping of action names")
    specs = {name: _action(source, name, body) for name, body in data.items()}
    enabled = set(groups)
    if ALL_GROUPS not in enabled:
        specs = {n: s for n, s in specs.items() if s.group in enabled}
    if not specs:
        raise ActionSetError(f"{source}: no action is in the enabled groups {sorted(enabled)}")
    return ActionSet(specs, max_reason_chars)


def _action(source: str, name: Any, body: Any) -> ActionSpec:
    where = f"{source}: action {name!r}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise ActionSetError(f"{where}: names are lower_snake_case, at most 32 characters")
    body = {} if body is None else body
    if not isinstance(body, Mapping):
        raise ActionSetError(f"{where}: must be a mapping with {sorted(_ACTION_KEYS)}")
    _no_unknown(where, body, _ACTION_KEYS)
    args = body.get("args") or {}
    if not isinstance(args, Mapping):
        raise ActionSetError(f"{where}: 'args' must be a mapping of argument names")
    return ActionSpec(
        name=name,
        description=_text(where, body.get("description", "")),
        group=_text(where, body.get("group", "default")) or "default",
        args=tuple(_arg(f"{where} arg {a!r}", a, spec) for a, spec in args.items()),
    )


def _arg(where: str, name: Any, body: Any) -> ArgSpec:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ActionSetError(f"{where}: names are lower_snake_case, at most 32 characters")
    if not isinstance(body, Mapping):
        raise ActionSetError(f"{where}: must be a mapping with 'type' and its bounds")
    _no_unknown(where, body, _ARG_KEYS)
    kind = body.get("type")
    if kind not in ARG_TYPES:
        raise ActionSetError(f"{where}: 'type' must be one of {list(ARG_TYPES)}, got {kind!r}")
    spec = ArgSpec(
        name=name,
        type=kind,
        description=_text(where, body.get("description", "")),
        required=_flag(where, body.get("required", True)),
        **_bounds(where, kind, body),
    )
    return spec


def _bounds(where: str, kind: str, body: Mapping) -> dict[str, Any]:
    extra = (_BOUND_KEYS - _BOUNDS_OF.get(kind, set())) & set(body)
    if extra:
        raise ActionSetError(f"{where}: {sorted(extra)} do not apply to type {kind}")
    if kind in ("number", "integer"):
        low, high = body.get("min"), body.get("max")
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
        if not numbers or not (_finite(low) and _finite(high)) or low > high:
            raise ActionSetError(f"{where}: numbers need finite 'min' <= 'max' (float range)")
        return {"min": low, "max": high}
    if kind == "string":
        enum = body.get("enum") or ()
        if not isinstance(enum, (list, tuple)) or not all(isinstance(e, str) and e for e in enum):
            raise ActionSetError(f"{where}: 'enum' must be a list of non-empty strings")
        max_length = body.get("max_length", 64)
        if isinstance(max_length, bool) or not isinstance(max_length, int):
            raise ActionSetError(f"{where}: 'max_length' must be an integer")
        if not 1 <= max_length <= _MAX_STRING:
            raise ActionSetError(f"{where}: 'max_length' must be in 1..{_MAX_STRING}")
        return {"enum": tuple(enum), "max_length": max_length}
    if kind == "position":
        return _position_bounds(where, body)
    return {}


def _position_bounds(where: str, body: Mapping) -> dict[str, Any]:
    out = {}
    for key, default in (
        ("max_distance_m", DEFAULT_MAX_DISTANCE_M),
        ("max_offset_m", DEFAULT_MAX_OFFSET_M),
    ):
        value = body.get(key, default)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not _finite(value) or not 0 < value <= LIMIT_M:
            raise ActionSetError(f"{where}: '{key}' must be a number in (0, {LIMIT_M:g}] metres")
        out[key] = float(value)
    return out


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond the float range (YAML allows any length)
        return False


def _no_unknown(where: str, body: Mapping, allowed: set[str]) -> None:
    unknown = sorted(str(k) for k in set(body) - allowed)
    if unknown:
        raise ActionSetError(f"{where}: unknown keys {unknown} (allowed: {sorted(allowed)})")


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ActionSetError(f"{where}: descriptions and groups must be strings")
    return " ".join(value.split())


def _flag(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ActionSetError(f"{where}: 'required' must be true or false")
    return value
