"""Captions for ShapesWorld clips, narrated from the ground-truth relations (not the plan).

The narrated pair's per-frame relation sets are turned into ordered events: the first state,
then every change (touch starts, the motion-axis relation flips, touch ends). Each event is
checked to have a witness frame after the previous event's, so the caption's order of events
is true of the clip. Events become clauses in varied templates (synonyms, pronouns, short
mentions, "First/Next/Finally", "Before X, Y"), plus optional sentences about lasting
relations of other shapes and about shapes that are merely present.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training import caption_grammar as G

MAX_EVENTS = 4
NarratedEvent = tuple[str, ...]  # ("rel", r) | ("approach", r) | ("touch",) | ("apart",)


class NarrationError(RuntimeError):
    """The clip has no order of events worth narrating; the generator draws another."""


def event_holds(event: NarratedEvent, relations: set[str]) -> bool:
    """Whether a narrated event is true in one frame's relation set."""
    kind = event[0]
    if kind == "rel":
        return event[1] in relations
    if kind == "approach":
        return event[1] in relations and "touching" not in relations
    if kind == "touch":
        return "touching" in relations
    return "touching" not in relations  # apart


def narrate_events(states: Sequence[set[str]], horizontal: bool) -> list[NarratedEvent]:
    """Ordered events of the subject relative to the object, from per-frame relation sets."""
    axis = G.AXES[horizontal]

    def axis_relation(relations: set[str]) -> str | None:
        return next((r for r in axis if r in relations), None)

    changes: list[NarratedEvent] = []
    last_axis, touching = axis_relation(states[0]), "touching" in states[0]
    for relations in states[1:]:
        now_touching, now_axis = "touching" in relations, axis_relation(relations)
        if now_touching and not touching:
            changes.append(("touch",))
        if now_axis is not None and now_axis != last_axis:
            changes.append(("rel", now_axis))
            last_axis = now_axis
        if touching and not now_touching:
            changes.append(("apart",))
        touching = now_touching
    first = _first_event(states[0], axis_relation(states[0]), changes)
    return _witnessed([first, *changes], states)[:MAX_EVENTS] if first else []


def _first_event(relations: set[str], axis: str | None,
                 changes: list[NarratedEvent]) -> NarratedEvent | None:
    if "touching" in relations:
        return ("touch",)
    if axis is None:
        return None
    approaching = bool(changes) and changes[0] == ("touch",)
    return ("approach", axis) if approaching else ("rel", axis)


def _witnessed(events: list[NarratedEvent], states: Sequence[set[str]]) -> list[NarratedEvent]:
    """Keep events, in order, that hold at some frame after the previous kept event's frame."""
    kept, frame = [], -1
    for event in events:
        later = [t for t in range(frame + 1, len(states)) if event_holds(event, states[t])]
        if later and (not kept or kept[-1] != event):
            kept.append(event)
            frame = later[0]
    return kept


class Mentions:
    """Noun phrases for the clip's shapes: full, short (when unambiguous) and pronoun."""

    def __init__(self, labels: Sequence[tuple[str, str]], rng: np.random.Generator) -> None:
        self.labels = labels  # (category, colour) per shape
        self.rng = rng

    def full(self, index: int) -> str:
        category, colour = self.labels[index]
        return f"the {colour} {category}"

    def later(self, index: int, pronoun_ok: bool = True) -> str:
        """A mention of an already-mentioned shape."""
        category, colour = self.labels[index]
        options = [self.full(index)]
        if sum(c == category for c, _ in self.labels) == 1:
            options.append(f"the {category}")
        if sum(k == colour for _, k in self.labels) == 1:
            options.append(f"the {colour} one")
        if pronoun_ok:
            options += ["it", "it"]
        return self._pick(options)

    def _pick(self, options: Sequence[str]) -> str:
        return options[int(self.rng.integers(len(options)))]


def clause(event: NarratedEvent, subject: str, obj: str, rng: np.random.Generator,
           first: bool = False, brief: bool = False, pair_ok: bool = True) -> str:
    """One clause of the caption for ``event``, e.g. "it bumps into the blue square".

    ``first``: the opening clause (stative phrases only); ``pair_ok``: "they separate" may
    replace an "apart" clause (only where "they" has an antecedent)."""

    def pick(options: Sequence[str]) -> str:
        return options[int(rng.integers(len(options)))]

    kind = event[0]
    if kind == "rel":
        phrases = G.STATIVE[event[1]] + (() if first else G.MOTION[event[1]])
        return f"{subject} {pick(phrases)} {obj}"
    if kind == "approach":
        if rng.random() < 0.5:
            return f"{subject} {G.APPROACH} {obj} {G.SIDES[event[1]]}"
        return f"{subject} {pick(G.STATIVE[event[1]])} {obj} {pick(G.TOWARD_TAILS)}".replace(
            " ,", ",")
    if kind == "touch":
        verb = pick(G.TOUCH)
        return f"{subject} {'briefly ' if brief else ''}{verb} {obj}"
    if pair_ok and not first and rng.random() < 0.3:
        return f"{pick(G.PAIR_SUBJECTS)} {pick(G.PAIR_APART)}"
    return f"{subject} {pick(G.APART)} {obj}"


def narrative(events: list[NarratedEvent], mentions: Mentions, subject: int, obj: int,
              brief_touch: bool) -> str:
    """The events as one paragraph in one of several styles."""
    rng = mentions.rng
    style = int(rng.integers(4 if len(events) == 2 else 3))
    if style == 3:  # "Before X, Y." / "After X, Y." with full mentions in the first clause
        return _before_after(events, mentions, subject, obj, brief_touch)
    clauses = []
    for index, event in enumerate(events):
        first = index == 0
        s_ref = mentions.full(subject) if first else mentions.later(subject)
        o_ref = mentions.full(obj) if first else mentions.later(obj)
        clauses.append(clause(event, s_ref, o_ref, rng, first, brief_touch))
    if style == 2:
        markers = ["First,"] + ["Next,"] * (len(clauses) - 2) + ["Finally,"]
        return " ".join(f"{m} {c}." for m, c in zip(markers, clauses, strict=True))
    text = ("At first, " if style == 1 else "") + clauses[0]
    for later in clauses[1:]:
        text += G.CONNECTIVES[int(rng.integers(len(G.CONNECTIVES)))] + later
    return _sentences(text + ".")


def _before_after(events, mentions: Mentions, subject: int, obj: int, brief: bool) -> str:
    rng = mentions.rng
    full_s, full_o = mentions.full(subject), mentions.full(obj)
    if rng.random() < 0.5:
        head = clause(events[1], full_s, full_o, rng, False, brief, pair_ok=False)
        tail = clause(events[0], "it", "it", rng, True, brief)
        return _sentences(f"Before {head}, {tail}.")
    head = clause(events[0], full_s, full_o, rng, True, brief)
    tail = clause(events[1], "it", "it", rng, False, brief)
    return _sentences(f"After {head}, {tail}.")


def lasting_sentence(mentions: Mentions, shape: int, other: int, relation: str) -> str:
    """A relation that holds for the whole clip, e.g. "The green star stays above it"."""
    rng = mentions.rng
    phrase = G.LASTING[relation][int(rng.integers(len(G.LASTING[relation])))]
    style = int(rng.integers(3))
    s_ref, o_ref = mentions.full(shape), mentions.later(other, pronoun_ok=False)
    if style == 0:
        verb = G.LASTING_VERBS[int(rng.integers(len(G.LASTING_VERBS)))]
        return _sentences(f"{s_ref} {verb} {phrase} {o_ref}.")
    if style == 1:
        marker = G.LASTING_MARKERS[int(rng.integers(len(G.LASTING_MARKERS)))]
        return _sentences(f"{s_ref} is {phrase} {o_ref} {marker}.")
    return _sentences(f"{G.LASTING_PREFIXES[0]} {s_ref} is {phrase} {o_ref}.")


def presence_sentence(category: str, colour: str) -> str:
    article = "an" if colour[0] in "aeiou" else "a"
    return f"There is also {article} {colour} {category}."


def _sentences(text: str) -> str:
    """Capitalise the first letter of each sentence."""
    parts = text.split(". ")
    return ". ".join(p[:1].upper() + p[1:] for p in parts)
