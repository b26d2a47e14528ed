"""Relation-vocabulary knowledge applied to caption specifications (no scene-graph labels).

Two facts about relation words that an LLM states as readily as it parses a caption:

* **converse**: ``A left of B`` says ``B right of A`` (``touching`` is its own converse);
* **exclusive**: ``A left of B`` says ``not A right of B`` at the same moment.

:func:`augment` rewrites every binary atom of a spec with them, so each narrated fact also
supervises the reversed pair and contradicts its exclusive partners on the same frames. It
turns a caption's few positive relation atoms into dense, precise evidence for and against.
"""

from __future__ import annotations

from collections.abc import Iterable

from training import spec as S


def converse_map(pairs: dict[str, str]) -> dict[str, str]:
    """Both directions of a converse table (``{"left of": "right of"}`` gives both ways)."""
    out = dict(pairs)
    out.update({b: a for a, b in pairs.items()})
    return out


def exclusive_map(groups: Iterable[Iterable[str]]) -> dict[str, list[str]]:
    """relation -> the relations that cannot hold together with it (same pair, same frame)."""
    out: dict[str, list[str]] = {}
    for group in groups:
        names = list(group)
        for name in names:
            out.setdefault(name, []).extend(n for n in names if n != name)
    return out


def _binary(atom: S.Binary, converse: dict[str, str], exclusive: dict[str, list[str]]
            ) -> list[S.Formula]:
    facts = [atom]
    if atom.name in converse:
        facts.append(S.Binary(atom.obj, converse[atom.name], atom.subj))
    parts: list[S.Formula] = list(facts)
    for fact in facts:
        parts += [S.Not(S.Binary(fact.subj, other, fact.obj))
                  for other in exclusive.get(fact.name, [])]
    return parts


def _negated(atom: S.Binary, converse: dict[str, str]) -> list[S.Formula]:
    parts: list[S.Formula] = [S.Not(atom)]
    if atom.name in converse:
        parts.append(S.Not(S.Binary(atom.obj, converse[atom.name], atom.subj)))
    return parts


def augment_formula(formula: S.Formula, converse: dict[str, str],
                    exclusive: dict[str, list[str]]) -> S.Formula:
    """``formula`` with each binary atom expanded by its converse and exclusive partners."""
    if isinstance(formula, S.Binary):
        return S.conjoin(*_binary(formula, converse, exclusive))
    if isinstance(formula, S.Not) and isinstance(formula.arg, S.Binary):
        return S.conjoin(*_negated(formula.arg, converse))
    if isinstance(formula, S.And):
        return S.conjoin(*(augment_formula(a, converse, exclusive) for a in formula.args))
    if isinstance(formula, S.Sequence):
        return S.Sequence(*(augment_formula(e, converse, exclusive) for e in formula.events))
    if isinstance(formula, S.Until):
        return S.Until(augment_formula(formula.left, converse, exclusive),
                       augment_formula(formula.right, converse, exclusive))
    if isinstance(formula, (S.Finally, S.Globally, S.Next)):
        return type(formula)(augment_formula(formula.arg, converse, exclusive))
    return formula


def augment(spec: S.TemporalSpec, converse: dict[str, str],
            exclusive: dict[str, list[str]]) -> S.TemporalSpec:
    """The spec with :func:`augment_formula` applied to its formula and to its events."""
    events = tuple(S.Event(augment_formula(e.formula, converse, exclusive), e.description,
                           e.timing) for e in spec.events)
    return S.TemporalSpec(augment_formula(spec.formula, converse, exclusive), events,
                          spec.caption, spec.window)
