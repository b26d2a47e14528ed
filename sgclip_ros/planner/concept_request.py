"""Step 1 of the ESCA loop: the model's concept reply -> concept lists for ``set_concepts``.

The reply names targets, attributes, relations and related objects. Entries that the
perception node would refuse (not text, too long, control characters) are dropped here, lists
are deduplicated and capped, configured extras are appended, and the result is checked with the
same validation the perception node uses (:class:`sgclip_ros.core.concepts.ConceptSet`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sgclip_ros.core.concepts import MAX_ENTRY_CHARS, ConceptError, ConceptSet
from sgclip_ros.planner.prompt import CONCEPT_KEYS


class ConceptReplyError(ValueError):
    """The concept reply gave no usable object category."""


@dataclass(frozen=True)
class ConceptLists:
    categories: tuple[str, ...]
    unary: tuple[str, ...]
    binary: tuple[str, ...]


def _entries(reply: dict, key: str) -> list[str]:
    value = reply.get(key, [])
    if isinstance(value, str):
        value = [value]  # a lone word instead of a list: harmless to accept
    if not isinstance(value, list):
        raise ConceptReplyError(f"'{key}' must be a list of strings")
    return [v for v in value if isinstance(v, str)]


def _clean(words: Sequence[str], limit: int) -> list[str]:
    """Stripped, printable, short, case-insensitively unique words; at most ``limit``."""
    out, seen = [], set()
    for word in words:
        word = " ".join(word.split())
        if not word or len(word) > MAX_ENTRY_CHARS or not word.isprintable():
            continue
        if word.lower() not in seen:
            seen.add(word.lower())
            out.append(word)
    return out[:limit]


def concept_lists(
    reply: Any,
    max_per_list: int,
    extra: tuple[Sequence[str], Sequence[str], Sequence[str]] = ((), (), ()),
) -> ConceptLists:
    """Concept lists from a parsed concept reply, plus ``extra`` (categories, unary, binary)."""
    if not isinstance(reply, dict) or not any(k in reply for k in CONCEPT_KEYS):
        raise ConceptReplyError(f"the concept reply has none of the keys {list(CONCEPT_KEYS)}")
    categories = _clean(
        _entries(reply, "targets") + _entries(reply, "related_objects"), max_per_list
    )
    unary = _clean(_entries(reply, "attributes"), max_per_list)
    binary = _clean(_entries(reply, "relations"), max_per_list)
    if not categories:
        raise ConceptReplyError("the concept reply names no object category")
    lists = ConceptLists(
        tuple(_clean(categories + list(extra[0]), 2 * max_per_list + len(extra[0]))),
        tuple(_clean(unary + list(extra[1]), max_per_list + len(extra[1]))),
        tuple(_clean(binary + list(extra[2]), max_per_list + len(extra[2]))),
    )
    try:  # the perception node's own rules, so set_concepts does not refuse them
        ConceptSet(categories=lists.categories, unary=lists.unary, binary=lists.binary)
    except ConceptError as exc:
        raise ConceptReplyError(f"unusable concept lists: {exc}") from None
    return lists
