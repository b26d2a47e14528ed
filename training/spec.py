"""Temporal specifications: what a caption says happened, as a formula over per-frame facts.

A caption becomes a list of :class:`Event` s (each a *state formula*: a conjunction of atoms
that holds at single frames) that happen in order, optionally with constraints that hold over
the whole clip. :func:`compile_events` turns them into :class:`TemporalSpec` s, one per window
of at most 3 events, as the reference (LASER ``GPTSpecs_2.to_str_windowed``) does.

Atoms: ``Category(var, name)`` (track-level, time invariant), ``Unary(var, name)`` and
``Binary(subj, name, obj)`` (per frame). Connectives: ``And``, ``Not`` (over state formulas only,
like the reference's NegUnary/NegBinary). Temporal operators: ``Finally``, ``Globally``,
``Until``, ``Next`` and ``Sequence(e1, ..., ek)``: events hold on ordered, disjoint, contiguous
frame intervals. The semantics live in :mod:`training.logic`.

Deviations from the reference, on purpose:
* The reference compiles a window to ``Until(Finally(e1), Until(Finally(e2), Finally(e3)))``
  and enforces ``t1 < t2 < t3`` only when reading out the aligned time stamps; ``Sequence``
  states the order in the formula itself (:func:`reference_until_formula` builds their form).
* Entity names are ``Category`` atoms on variables (each variable is grounded to one track for
  the whole spec) instead of ``Const`` terms that any object of that name can ground.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field
from typing import Any

DURATIONS = {"short": 0.25, "medium": 0.5, "long": 0.75}
LOCATIONS = {"early": (0.0, 1.0 / 3.0), "mid": (1.0 / 3.0, 2.0 / 3.0), "late": (2.0 / 3.0, 1.0)}
WINDOW_SIZE = 3


class SpecError(ValueError):
    """A malformed formula or spec; the message names the offending path or node."""


@dataclass(frozen=True)
class Top:
    """The formula that always holds (used where a hoisted category atom stood)."""


@dataclass(frozen=True)
class Category:
    """Track-level atom: the track bound to ``var`` is of category ``name``."""

    var: str
    name: str


@dataclass(frozen=True)
class Unary:
    """Per-frame atom: unary predicate ``name`` holds for ``var`` at the frame."""

    var: str
    name: str


@dataclass(frozen=True)
class Binary:
    """Per-frame atom: ``subj`` ``name`` ``obj`` holds at the frame (e.g. A "left of" B)."""

    subj: str
    name: str
    obj: str


@dataclass(frozen=True, init=False)
class And:
    """Conjunction of any number of formulas, evaluated at the same start frame."""

    args: tuple[Formula, ...]

    def __init__(self, *args: Formula) -> None:
        object.__setattr__(self, "args", tuple(args))


@dataclass(frozen=True)
class Not:
    """Negation of a state formula (no temporal operator inside)."""

    arg: Formula


@dataclass(frozen=True)
class Finally:
    """``arg`` holds at some frame at or after the start."""

    arg: Formula


@dataclass(frozen=True)
class Globally:
    """``arg`` holds at every frame from the start to the last frame."""

    arg: Formula


@dataclass(frozen=True)
class Next:
    """``arg`` holds from the next frame (false at the last frame)."""

    arg: Formula


@dataclass(frozen=True)
class Until:
    """``right`` holds at some frame t >= start and ``left`` at every frame in [start, t)."""

    left: Formula
    right: Formula


@dataclass(frozen=True, init=False)
class Sequence:
    """Events (state formulas) hold on ordered, disjoint, contiguous intervals, in that order.

    Gaps between intervals are allowed: a caption does not narrate every frame.
    """

    events: tuple[Formula, ...]

    def __init__(self, *events: Formula) -> None:
        object.__setattr__(self, "events", tuple(events))


Atom = Category | Unary | Binary
Formula = (
    Top | Category | Unary | Binary | And | Not | Finally | Globally | Next | Until | Sequence
)
_TEMPORAL = (Finally, Globally, Next, Until, Sequence)
_UNARY_TEMPORAL = {"finally": Finally, "globally": Globally, "next": Next}


def children(formula: Formula) -> tuple[Formula, ...]:
    """The direct sub-formulas of ``formula``."""
    if isinstance(formula, And):
        return formula.args
    if isinstance(formula, Sequence):
        return formula.events
    if isinstance(formula, Until):
        return (formula.left, formula.right)
    if isinstance(formula, (Not, Finally, Globally, Next)):
        return (formula.arg,)
    return ()


def walk(formula: Formula) -> Iterator[Formula]:
    """Every node of ``formula``, parents before children."""
    yield formula
    for child in children(formula):
        yield from walk(child)


def is_state(formula: Formula) -> bool:
    """True when ``formula`` has no temporal operator (it is evaluated at a single frame)."""
    return not any(isinstance(node, _TEMPORAL) for node in walk(formula))


def variables(formula: Formula) -> tuple[str, ...]:
    """Variable names in order of first appearance."""
    seen: dict[str, None] = {}
    for node in walk(formula):
        if isinstance(node, (Category, Unary)):
            seen.setdefault(node.var)
        elif isinstance(node, Binary):
            seen.setdefault(node.subj)
            seen.setdefault(node.obj)
    return tuple(seen)


def keywords(formula: Formula) -> dict[str, list[str]]:
    """Sorted category, unary and binary names the formula uses (the concept lists it needs)."""
    found: dict[str, set[str]] = {"categories": set(), "unary": set(), "binary": set()}
    kinds = {Category: "categories", Unary: "unary", Binary: "binary"}
    for node in walk(formula):
        kind = kinds.get(type(node))
        if kind:
            found[kind].add(node.name)
    return {key: sorted(names) for key, names in found.items()}


def conjoin(*formulas: Formula) -> Formula:
    """And of the formulas with nested Ands flattened, Tops and duplicates dropped, order kept.

    Dropping duplicates matters: the logic multiplies an atom's probability once per occurrence.
    """
    items = tuple(dict.fromkeys(part for formula in formulas for part in _conjuncts(formula)))
    if not items:
        return Top()
    return items[0] if len(items) == 1 else And(*items)


def _conjuncts(formula: Formula) -> Iterator[Formula]:
    if isinstance(formula, And):
        for arg in formula.args:
            yield from _conjuncts(arg)
    elif not isinstance(formula, Top):
        yield formula


def validate(formula: Formula, path: str = "formula") -> None:
    """Raise SpecError unless ``formula`` is well formed.

    Rules: names and variables are non-empty strings; ``Not`` and ``Sequence`` events take
    state formulas; ``Category`` atoms must be *required* (not under ``Not``, not on the left of
    ``Until``) so :mod:`training.logic` can hoist them to the track assignment.
    """
    _validate(formula, path, category_ok=True)


def _validate(formula: Formula, path: str, category_ok: bool) -> None:
    if isinstance(formula, (Category, Unary)):
        _check_names(path, formula.var, formula.name)
        if isinstance(formula, Category) and not category_ok:
            raise SpecError(f"{path}: Category atom under Not or on the left of Until")
        return
    if isinstance(formula, Binary):
        _check_names(path, formula.subj, formula.name, formula.obj)
        return
    if isinstance(formula, Top):
        return
    if isinstance(formula, (Not, Sequence)):
        for index, child in enumerate(children(formula)):
            if not is_state(child):
                raise SpecError(f"{path}[{index}]: {type(formula).__name__} needs a state formula")
    if isinstance(formula, And) and not formula.args:
        raise SpecError(f"{path}: And without arguments")
    if isinstance(formula, Sequence) and not formula.events:
        raise SpecError(f"{path}: Sequence without events")
    if not isinstance(formula, _TEMPORAL + (And, Not)):
        raise SpecError(f"{path}: not a formula: {formula!r}")
    for index, child in enumerate(children(formula)):
        required = category_ok and not isinstance(formula, Not)
        if isinstance(formula, Until) and index == 0:
            required = False
        _validate(child, f"{path}[{index}]", required)


def _check_names(path: str, *names: Any) -> None:
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise SpecError(f"{path}: names and variables must be non-empty strings, got {name!r}")


@dataclass(frozen=True)
class EventTiming:
    """Expected duration and location of an event, as fractions of the clip (reference fields
    ``duration``, ``duration precise``, ``video location``, ``video location precise``)."""

    duration: str = "medium"
    duration_fraction: float = 0.5
    location: str = "mid"
    location_range: tuple[float, float] = (1.0 / 3.0, 2.0 / 3.0)

    def __post_init__(self) -> None:
        if self.duration not in DURATIONS:
            raise SpecError(f"duration {self.duration!r} is not one of {sorted(DURATIONS)}")
        if self.location not in LOCATIONS:
            raise SpecError(f"location {self.location!r} is not one of {sorted(LOCATIONS)}")
        start, end = (float(v) for v in self.location_range)
        if not 0.0 <= start <= end <= 1.0 or not 0.0 < float(self.duration_fraction) <= 1.0:
            raise SpecError(
                f"bad timing fractions: {self.location_range}, {self.duration_fraction}"
            )
        object.__setattr__(self, "location_range", (start, end))
        object.__setattr__(self, "duration_fraction", float(self.duration_fraction))


def timing_for_position(index: int, count: int, duration: str | None = None) -> EventTiming:
    """Default timing of event ``index`` of ``count`` when the caption gives none: the events
    split the clip evenly, in order."""
    start, end = index / count, (index + 1) / count
    centre = (start + end) / 2
    location = "early" if centre < 1 / 3 else "mid" if centre < 2 / 3 else "late"
    duration = duration or ("long" if count == 1 else "medium" if count == 2 else "short")
    return EventTiming(duration, end - start, location, (start, end))


@dataclass(frozen=True)
class Event:
    """One narrated event: a state formula plus its description and expected timing."""

    formula: Formula
    description: str = ""
    timing: EventTiming = field(default_factory=EventTiming)


@dataclass(frozen=True)
class TemporalSpec:
    """A formula to check on one video, and the events whose time alignment it reports.

    ``events`` are the events of the formula's ``Sequence`` (in order) when it has one;
    ``window`` is their [start, end) index range in the caption's full event list.
    """

    formula: Formula
    events: tuple[Event, ...] = ()
    caption: str = ""
    window: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        validate(self.formula)
        sequence, _ = split_sequence(self.formula)
        count = len(sequence.events) if sequence is not None else 0
        if self.events and len(self.events) != count:
            raise SpecError(f"spec has {len(self.events)} events but its Sequence has {count}")

    def to_json(self) -> dict[str, Any]:
        return {
            "formula": formula_to_json(self.formula),
            "events": [event_to_json(event) for event in self.events],
            "caption": self.caption,
            "window": list(self.window) if self.window is not None else None,
        }

    @classmethod
    def from_json(cls, data: Any, path: str = "spec") -> TemporalSpec:
        data = _mapping(data, path)
        window = data.get("window")
        return cls(
            formula=formula_from_json(data.get("formula"), f"{path}.formula"),
            events=tuple(event_from_json(e, f"{path}.events[{i}]")
                         for i, e in enumerate(_list(data.get("events", []), f"{path}.events"))),
            caption=str(data.get("caption", "")),
            window=tuple(window) if window is not None else None,
        )


def split_sequence(formula: Formula) -> tuple[Sequence | None, tuple[Formula, ...]]:
    """(the top-level Sequence, the other top-level conjuncts); (None, (formula,)) if none."""
    if isinstance(formula, Sequence):
        return formula, ()
    if isinstance(formula, And):
        sequences = [arg for arg in formula.args if isinstance(arg, Sequence)]
        if len(sequences) == 1:
            return sequences[0], tuple(a for a in formula.args if a is not sequences[0])
    return None, (formula,)


def compile_events(
    events: SequenceABC[Event],
    constraints: SequenceABC[Formula] = (),
    window_size: int = WINDOW_SIZE,
    caption: str = "",
) -> list[TemporalSpec]:
    """One spec per window of at most ``window_size`` consecutive events (reference
    ``chunk_list``): ``And(Sequence(e_i, ...), *constraints)``. Constraints (e.g. a Globally
    fact) are copied into every window."""
    if not events:
        raise SpecError("a caption needs at least one event")
    specs = []
    for start in range(0, len(events), window_size):
        window = tuple(events[start:start + window_size])
        formula = conjoin(Sequence(*(e.formula for e in window)), *constraints)
        specs.append(TemporalSpec(formula, window, caption, (start, start + len(window))))
    return specs


def reference_until_formula(event_formulas: SequenceABC[Formula]) -> Formula:
    """The reference's form of a window: ``Until(Finally(e1), Until(Finally(e2), Finally(e3)))``.

    Under its own semantics this does not order the events (``Until`` may switch at once);
    the reference orders them only when it reads out ``aligned_t1 < aligned_t2 < aligned_t3``.
    """
    formulas = [Finally(f) for f in event_formulas]
    result = formulas[-1]
    for formula in reversed(formulas[:-1]):
        result = Until(formula, result)
    return result


# ----------------------------------------------------------------------------- JSON


def formula_to_json(formula: Formula) -> dict[str, Any]:
    """Plain-dict form: ``{"op": "binary", "subj": "A", "name": "left of", "obj": "B"}`` etc."""
    if isinstance(formula, Top):
        return {"op": "true"}
    if isinstance(formula, (Category, Unary)):
        return {"op": type(formula).__name__.lower(), "var": formula.var, "name": formula.name}
    if isinstance(formula, Binary):
        return {"op": "binary", "subj": formula.subj, "name": formula.name, "obj": formula.obj}
    if isinstance(formula, And):
        return {"op": "and", "args": [formula_to_json(a) for a in formula.args]}
    if isinstance(formula, Sequence):
        return {"op": "sequence", "events": [formula_to_json(e) for e in formula.events]}
    if isinstance(formula, Until):
        return {"op": "until", "left": formula_to_json(formula.left),
                "right": formula_to_json(formula.right)}
    if isinstance(formula, (Not, Finally, Globally, Next)):
        return {"op": type(formula).__name__.lower(), "arg": formula_to_json(formula.arg)}
    raise SpecError(f"not a formula: {formula!r}")


def formula_from_json(data: Any, path: str = "formula") -> Formula:
    """Inverse of :func:`formula_to_json`; raises SpecError naming the JSON path."""
    data = _mapping(data, path)
    op = data.get("op")
    if op == "true":
        return Top()
    if op in ("category", "unary"):
        cls = Category if op == "category" else Unary
        return cls(_string(data, "var", path), _string(data, "name", path))
    if op == "binary":
        return Binary(_string(data, "subj", path), _string(data, "name", path),
                      _string(data, "obj", path))
    if op in ("and", "sequence"):
        key = "args" if op == "and" else "events"
        items = _list(data.get(key), f"{path}.{key}")
        parts = [formula_from_json(item, f"{path}.{key}[{i}]") for i, item in enumerate(items)]
        return And(*parts) if op == "and" else Sequence(*parts)
    if op == "until":
        return Until(formula_from_json(data.get("left"), f"{path}.left"),
                     formula_from_json(data.get("right"), f"{path}.right"))
    if op == "not" or op in _UNARY_TEMPORAL:
        cls = Not if op == "not" else _UNARY_TEMPORAL[op]
        return cls(formula_from_json(data.get("arg"), f"{path}.arg"))
    raise SpecError(f"{path}.op: unknown operator {op!r}")


def event_to_json(event: Event) -> dict[str, Any]:
    timing = event.timing
    return {
        "formula": formula_to_json(event.formula),
        "description": event.description,
        "duration": timing.duration,
        "duration_precise": timing.duration_fraction,
        "video_location": timing.location,
        "video_location_precise": list(timing.location_range),
    }


def event_from_json(data: Any, path: str = "event") -> Event:
    data = _mapping(data, path)
    try:
        timing = EventTiming(
            data.get("duration", "medium"),
            float(data.get("duration_precise", DURATIONS.get(data.get("duration"), 0.5))),
            data.get("video_location", "mid"),
            tuple(data.get("video_location_precise", LOCATIONS.get(data.get("video_location"),
                                                                    (1 / 3, 2 / 3)))),
        )
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{path}: bad timing: {exc}") from exc
    formula = formula_from_json(data.get("formula"), f"{path}.formula")
    return Event(formula, str(data.get("description", "")), timing)


def specs_to_json(specs: SequenceABC[TemporalSpec]) -> list[dict[str, Any]]:
    return [spec.to_json() for spec in specs]


def specs_from_json(data: Any, path: str = "specs") -> list[TemporalSpec]:
    return [TemporalSpec.from_json(item, f"{path}[{i}]")
            for i, item in enumerate(_list(data, path))]


def _mapping(data: Any, path: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected an object, got {type(data).__name__}")
    return data


def _list(data: Any, path: str) -> list[Any]:
    if not isinstance(data, list):
        raise SpecError(f"{path}: expected a list, got {type(data).__name__}")
    return data


def _string(data: dict[str, Any], key: str, path: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{path}.{key}: expected a non-empty string, got {value!r}")
    return value
