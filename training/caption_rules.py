"""Rule-based caption -> events -> temporal spec, for the ShapesWorld caption language.

    >>> specs = caption_to_specs("The red circle is left of the blue square, then it touches it.")

Every clause becomes one event (a conjunction of the entities' category/colour atoms and the
clause's relation atoms); the events keep the narrated order ("Before X, Y" narrates Y first).
Sentences about lasting relations ("... stays above ...", "... the whole time") become
``Globally`` constraints; "There is also a green star." becomes ``Globally(green(X))`` with
``Category(X, star)``. Entities get variables A, B, C... in order of first mention.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from training import caption_grammar as G
from training.spec import (
    LOCATIONS,
    Binary,
    Category,
    Event,
    EventTiming,
    Formula,
    Globally,
    Not,
    TemporalSpec,
    Unary,
    compile_events,
    conjoin,
    timing_for_position,
)

PARSER_VERSION = "rules-1"
_COLOUR = "|".join(G.COLOURS)
_CATEGORY = "|".join(G.CATEGORIES)
_PAIR = "|".join(sorted(G.PAIR_SUBJECTS, key=len, reverse=True))
MENTION = re.compile(
    rf"\b(?:the (?:(?P<colour>{_COLOUR}) )?(?P<category>{_CATEGORY})"
    rf"|the (?P<colour_only>{_COLOUR}) one|(?P<pair>{_PAIR})|(?P<it>it))\b"
)
PRESENCE = re.compile(rf"^there is also an? (?P<colour>{_COLOUR}) (?P<category>{_CATEGORY})$")
BEFORE_AFTER = re.compile(r"^(?P<word>before|after) (?!that\b)(?P<rest>.+, .+)$")
CONNECTIVE = re.compile(r"(?:,\s*|\s+)(?:and\s+)?(?:then|later|after that,?)\s+")
_MARKERS = sorted(G.SEQUENCE_MARKERS + tuple(G.LOCATION_WORDS), key=len, reverse=True)
LEADING_MARKER = re.compile(rf"^(?:{'|'.join(_MARKERS)})\b,?\s*")


class CaptionParseError(ValueError):
    """The caption is outside the rule grammar; the message quotes the caption and clause."""


@dataclass
class Entity:
    var: str
    category: str | None
    colour: str | None

    def atoms(self) -> list[Formula]:
        atoms: list[Formula] = []
        if self.category:
            atoms.append(Category(self.var, self.category))
        if self.colour:
            atoms.append(Unary(self.var, self.colour))
        return atoms


@dataclass
class ParsedCaption:
    """Events in narrated order, whole-clip constraints, and the entities mentioned."""

    events: list[Event]
    constraints: list[Formula]
    entities: list[Entity]


@dataclass
class _Clause:
    text: str
    formula: Formula
    duration: str | None = None
    location: str | None = None


@dataclass
class _Context:
    caption: str
    entities: list[Entity] = field(default_factory=list)
    subject: Entity | None = None
    object: Entity | None = None

    def error(self, clause: str, problem: str) -> CaptionParseError:
        return CaptionParseError(f"{self.caption!r}: clause {clause!r}: {problem}")


def _phrase_table() -> dict[str, list[tuple[str, bool]]]:
    """Predicate phrase -> [(relation, negated)]."""
    table: dict[str, list[tuple[str, bool]]] = {}
    for relation in G.STATIVE:
        for phrase in G.STATIVE[relation] + G.MOTION[relation]:
            table[phrase] = [(relation, False)]
    for phrase in G.TOUCH:
        table[phrase] = [("touching", False)]
    for phrase in G.APART + G.TOWARD + (G.APPROACH,):
        table[phrase] = [("touching", True)]
    return table


PHRASES = _phrase_table()
LASTING_PHRASES = {f"{verb} {phrase}": relation for relation, phrases in G.LASTING.items()
                   for phrase in phrases for verb in G.LASTING_VERBS}
SIDE_RELATIONS = {side: relation for relation, side in G.SIDES.items()}


def parse_caption(caption: str) -> ParsedCaption:
    """Parse a ShapesWorld caption; raises CaptionParseError for anything outside the grammar."""
    ctx = _Context(caption)
    text = re.sub(r"\s+", " ", caption.strip().lower())
    clauses: list[_Clause] = []
    constraints: list[Formula] = []
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        sentence = sentence.strip().rstrip(".!?").strip()
        if sentence:
            _parse_sentence(sentence, ctx, clauses, constraints)
    if not clauses:
        raise CaptionParseError(f"{caption!r}: no event to narrate")
    return ParsedCaption(_events(clauses), constraints, ctx.entities)


def caption_to_specs(caption: str, window_size: int = 3) -> list[TemporalSpec]:
    """Parse and compile: one :class:`TemporalSpec` per window of at most 3 events."""
    parsed = parse_caption(caption)
    return compile_events(parsed.events, parsed.constraints, window_size, caption)


def _events(clauses: list[_Clause]) -> list[Event]:
    events = []
    for index, clause in enumerate(clauses):
        timing = timing_for_position(index, len(clauses), clause.duration)
        if clause.location:
            start, end = LOCATIONS[clause.location]
            timing = EventTiming(timing.duration, timing.duration_fraction, clause.location,
                                 (start, end))
        events.append(Event(clause.formula, clause.text, timing))
    return events


def _parse_sentence(sentence: str, ctx: _Context, clauses: list[_Clause],
                    constraints: list[Formula]) -> None:
    presence = PRESENCE.match(sentence)
    if presence:
        entity = _entity(ctx, presence["category"], presence["colour"])
        constraints.append(Globally(conjoin(*entity.atoms())))
        return
    lasting, sentence = _strip_lasting(sentence)
    if lasting or any(f" {verb} " in sentence for verb in G.LASTING_VERBS):
        constraints.append(Globally(_parse_clause(sentence, ctx, lasting=True).formula))
        return
    paired = BEFORE_AFTER.match(sentence)
    if paired:
        first, second = _split_before_after(paired["rest"], ctx)
        clauses += [second, first] if paired["word"] == "before" else [first, second]
        return
    for part in CONNECTIVE.split(sentence):
        clauses.append(_parse_clause(part, ctx))


def _split_before_after(rest: str, ctx: _Context) -> tuple[_Clause, _Clause]:
    """"X, Y" where X may itself hold commas: the first comma that leaves two valid clauses."""
    problem: CaptionParseError | None = None
    for match in re.finditer(r", ", rest):
        trial = copy.deepcopy(ctx)
        try:
            first = _parse_clause(rest[:match.start()], trial)
            second = _parse_clause(rest[match.end():], trial)
        except CaptionParseError as exc:
            problem = problem or exc
            continue
        ctx.entities, ctx.subject, ctx.object = trial.entities, trial.subject, trial.object
        return first, second
    raise problem or ctx.error(rest, "expected 'before|after X, Y'")


def _strip_lasting(sentence: str) -> tuple[bool, str]:
    for prefix in G.LASTING_PREFIXES:
        if sentence.startswith(prefix):
            return True, sentence[len(prefix):].strip()
    for marker in G.LASTING_MARKERS:
        if sentence.endswith(" " + marker):
            return True, sentence[: -len(marker)].strip()
    return False, sentence


def _parse_clause(text: str, ctx: _Context, lasting: bool = False) -> _Clause:
    clause = text.strip(" ,")
    duration = location = None
    for words, value in G.DURATION_WORDS.items():
        if re.search(rf"\b{words}\b", clause):
            duration, clause = value, re.sub(rf"\s*\b{words}\b", "", clause).strip()
    while marker := LEADING_MARKER.match(clause):
        location = G.LOCATION_WORDS.get(marker.group(0).strip(" ,"), location)
        clause = clause[marker.end():]
    mentions = list(MENTION.finditer(clause))
    if not mentions or mentions[0].start() != 0:
        raise ctx.error(text, "must start with a shape mention ('the red circle', 'it', ...)")
    if mentions[0]["pair"]:
        return _Clause(text, _pair_clause(clause, mentions[0], ctx, text), duration, location)
    subject = _resolve(mentions[0], ctx, None, text)
    if len(mentions) < 2:
        raise ctx.error(text, "needs an object ('... the blue square')")
    obj = _resolve(mentions[1], ctx, subject, text)
    if obj is subject:
        raise ctx.error(text, "subject and object are the same shape")
    verb = clause[mentions[0].end():mentions[1].start()].strip()
    tail = clause[mentions[1].end():].strip()
    relations = _relations(verb, tail, lasting, ctx, text)
    ctx.subject, ctx.object = subject, obj
    atoms = [Not(Binary(subject.var, r, obj.var)) if negated else Binary(subject.var, r, obj.var)
             for r, negated in relations]
    return _Clause(text, conjoin(*subject.atoms(), *obj.atoms(), *atoms), duration, location)


def _relations(verb: str, tail: str, lasting: bool, ctx: _Context,
               text: str) -> list[tuple[str, bool]]:
    if verb in LASTING_PHRASES:
        relations = [(LASTING_PHRASES[verb], False)]
    elif verb in PHRASES and (not lasting or verb in _stative_phrases()):
        relations = list(PHRASES[verb])
    else:
        raise ctx.error(text, f"unknown predicate phrase {verb!r}")
    tail = tail.strip(" ,")
    if verb == G.APPROACH and tail in SIDE_RELATIONS:
        relations.insert(0, (SIDE_RELATIONS[tail], False))
    elif tail in (t.strip(" ,") for t in G.TOWARD_TAILS):
        relations.append(("touching", True))
    elif tail:
        raise ctx.error(text, f"unexpected words after the object: {tail!r}")
    return relations


def _stative_phrases() -> set[str]:
    return {phrase for phrases in G.STATIVE.values() for phrase in phrases}


def _pair_clause(clause: str, mention: re.Match, ctx: _Context, text: str) -> Formula:
    verb = clause[mention.end():].strip()
    if verb not in G.PAIR_APART:
        raise ctx.error(text, f"unknown predicate for a pair: {verb!r}")
    if ctx.subject is None or ctx.object is None:
        raise ctx.error(text, f"{mention.group(0)!r} has no antecedent pair")
    s, o = ctx.subject, ctx.object
    return conjoin(*s.atoms(), *o.atoms(), Not(Binary(s.var, "touching", o.var)))


def _resolve(mention: re.Match, ctx: _Context, subject: Entity | None, text: str) -> Entity:
    """The entity a mention refers to; ``subject`` is set when resolving an object."""
    if mention["it"]:
        if subject is None:
            found = ctx.subject
        else:  # object pronoun: the last object, unless that is this clause's subject
            found = ctx.object if ctx.object is not subject else ctx.subject
        if found is None:
            raise ctx.error(text, "'it' has no antecedent")
        return found
    if mention["pair"]:
        raise ctx.error(text, f"{mention.group(0)!r} cannot be an object")
    category = mention["category"]
    colour = mention["colour"] or mention["colour_only"]
    if category and colour:
        return _entity(ctx, category, colour)
    matches = [e for e in ctx.entities if (e.category == category if category
                                           else e.colour == colour)]
    if len(matches) > 1:
        raise ctx.error(text, f"{mention.group(0)!r} is ambiguous")
    return matches[0] if matches else _new_entity(ctx, category, colour)


def _entity(ctx: _Context, category: str, colour: str) -> Entity:
    for entity in ctx.entities:
        if entity.category == category and entity.colour == colour:
            return entity
    return _new_entity(ctx, category, colour)


def _new_entity(ctx: _Context, category: str | None, colour: str | None) -> Entity:
    index = len(ctx.entities)
    var = chr(ord("A") + index) if index < 26 else f"V{index}"
    entity = Entity(var, category, colour)
    ctx.entities.append(entity)
    return entity
