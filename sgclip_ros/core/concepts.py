"""Concept sets: the category, unary and binary keyword lists SGClip scores, plus scoring options.

A concept set is loaded from a YAML file (``config/concepts/*.yaml``) or a plain dict and is
validated strictly: field files are edited by hand, so a typo in a key or a stray control
character must fail loudly with the file, key and entry named instead of silently changing
what the model scores. ``ConceptSet.concepts_id`` hashes every score-affecting field so a
scene graph can be traced back to the exact lists that produced it.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from sgclip_ros.core.concept_geometry import geometry_from_yaml, geometry_to_yaml
from sgclip_ros.core.geometry import GeometrySettings
from sgclip_ros.core.temporal import TEMPORAL_PREDICATES

MAX_ENTRY_CHARS = 64
MAX_ENTRIES = 256
UNARY_MODES = ("softmax", "contrast")
BINARY_MODES = ("softmax", "sigmoid")
CATEGORY_POOLINGS = ("mean", "max")
REQUIRED_KEYS = ("categories", "unary", "binary")
_DIRECT_SOURCE = "<ConceptSet>"


class ConceptError(ValueError):
    """An invalid concept file or concept list; the message names source, key and entry."""


@dataclass(frozen=True)
class ConceptSet:
    """The keyword lists SGClip scores and how the scores are normalised.

    * ``unary_mode``: "softmax" over the unary list, or "contrast" (each concept c scored as
      a softmax over [c, "not c"], as the reference agent does);
    * ``binary_mode``: "softmax" over the relations, or "sigmoid" (multi-label);
    * ``no_relation``: add a no-relation entry to the binary softmax;
    * ``category_pooling``: "mean" or "max" of per-frame category scores over a track;
    * ``top_k_pairs``: score only the k best ordered pairs (0 = every pair);
    * ``pairs_of_interest``: (subject category, object category) pairs to score (empty = all);
    * ``temporal``: track-level predicates from :data:`TEMPORAL_PREDICATES` to compute;
    * ``geometry``: metric relations from aligned depth and their thresholds (None: none);
    * ``name``: free-text label, not part of :attr:`concepts_id`.

    Constructing one directly validates and normalises it (entries stripped, lists turned into
    tuples) just like :func:`concepts_from_dict`, so an invalid set cannot exist.
    """

    categories: tuple[str, ...]
    unary: tuple[str, ...]
    binary: tuple[str, ...]
    unary_mode: str = "softmax"
    binary_mode: str = "softmax"
    no_relation: bool = False
    category_pooling: str = "mean"
    top_k_pairs: int = 0
    pairs_of_interest: tuple[tuple[str, str], ...] = ()
    temporal: tuple[str, ...] = ()
    geometry: GeometrySettings | None = None
    name: str = ""

    def __post_init__(self) -> None:
        raw = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in _normalised_fields(raw, _DIRECT_SOURCE).items():
            # Frozen dataclass: normalisation has to bypass the generated __setattr__.
            object.__setattr__(self, key, value)

    @property
    def concepts_id(self) -> str:
        """First 16 hex chars of the sha256 of every score-affecting field (not ``name``)."""
        scored = self.to_dict()
        del scored["name"]
        canonical = json.dumps(scored, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, not tuples) that :func:`concepts_from_dict` accepts unchanged."""
        return {
            "categories": list(self.categories),
            "unary": list(self.unary),
            "binary": list(self.binary),
            "unary_mode": self.unary_mode,
            "binary_mode": self.binary_mode,
            "no_relation": self.no_relation,
            "category_pooling": self.category_pooling,
            "top_k_pairs": self.top_k_pairs,
            "pairs_of_interest": [list(pair) for pair in self.pairs_of_interest],
            "temporal": list(self.temporal),
            # Only when set, so the ids of sets without geometry stay what they were.
            **({"geometry": geometry_to_yaml(self.geometry)} if self.geometry else {}),
            "name": self.name,
        }

    def with_lists(
        self,
        categories: Sequence[str] | None = None,
        unary: Sequence[str] | None = None,
        binary: Sequence[str] | None = None,
        *,
        pairs_of_interest: Sequence[Sequence[str]] | None = None,
        source: str = "<set_concepts>",
    ) -> ConceptSet:
        """Validated copy with the given lists replaced (None keeps the current list).

        Kept ``pairs_of_interest`` must still name categories of the new list; otherwise this
        raises, so pass ``pairs_of_interest=()`` to clear them explicitly.
        """
        data = self.to_dict()
        replacements = {
            "categories": categories,
            "unary": unary,
            "binary": binary,
            "pairs_of_interest": pairs_of_interest,
        }
        for key, value in replacements.items():
            if value is not None:
                data[key] = value
        return concepts_from_dict(data, source)


def concepts_from_dict(data: Mapping[str, Any], source: str = "<inline>") -> ConceptSet:
    """Validate a mapping (e.g. parsed YAML) into a :class:`ConceptSet`; raises ConceptError."""
    if not isinstance(data, Mapping):
        raise ConceptError(
            f"{source}: top level must be a mapping of keys, got {type(data).__name__}"
        )
    _check_keys(data, source)
    return ConceptSet(**_normalised_fields(dict(data), source))


def load_concepts(path: str | Path) -> ConceptSet:
    """Load and validate a concept YAML file; every failure is a ConceptError naming the file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConceptError(f"{source}: cannot read concept file: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConceptError(f"{source}: invalid YAML: {exc}") from exc
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as exc:
        # PyYAML's constructors raise these for bad scalars (`2001-13-01`, `!!int x`,
        # `!!bool maybe`, `!!timestamp foo`) and the composer recurses on deep nesting.
        raise ConceptError(f"{source}: invalid YAML: {type(exc).__name__}: {exc}") from exc
    if data is None:
        raise ConceptError(f"{source}: file is empty; expected a mapping with {REQUIRED_KEYS}")
    return concepts_from_dict(data, source)


def _check_keys(data: Mapping[str, Any], source: str) -> None:
    allowed = [f.name for f in fields(ConceptSet)]
    for key in data:
        if not isinstance(key, str):
            raise ConceptError(f"{source}: key {key!r} is not a string")
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConceptError(
                f"{source}: unknown key '{key}' (allowed: {', '.join(allowed)}){hint}"
            )
    for key in REQUIRED_KEYS:
        if key not in data:
            raise ConceptError(f"{source}: missing required key '{key}'")


def _normalised_fields(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """Validate every field of ``raw`` and return the normalised values, keyed like the fields."""
    defaults = {f.name: f.default for f in fields(ConceptSet) if f.name not in REQUIRED_KEYS}
    values = {**defaults, **raw}
    categories = _string_list(values["categories"], "categories", source, allow_empty=False)
    return {
        "categories": categories,
        "unary": _string_list(values["unary"], "unary", source),
        "binary": _string_list(values["binary"], "binary", source),
        "unary_mode": _choice(values["unary_mode"], "unary_mode", UNARY_MODES, source),
        "binary_mode": _choice(values["binary_mode"], "binary_mode", BINARY_MODES, source),
        "no_relation": _boolean(values["no_relation"], "no_relation", source),
        "category_pooling": _choice(
            values["category_pooling"], "category_pooling", CATEGORY_POOLINGS, source
        ),
        "top_k_pairs": _count(values["top_k_pairs"], "top_k_pairs", source),
        "pairs_of_interest": _pairs(values["pairs_of_interest"], categories, source),
        "temporal": _temporal(values["temporal"], source),
        "geometry": _geometry(values["geometry"], source),
        "name": _name(values["name"], source),
    }


def _entry_error(source: str, key: str, index: int, value: Any, problem: str) -> ConceptError:
    return ConceptError(f"{source}: key '{key}' entry {index} ({value!r}): {problem}")


def _key_error(source: str, key: str, problem: str) -> ConceptError:
    return ConceptError(f"{source}: key '{key}': {problem}")


def _clean_string(value: Any, source: str, key: str, index: int) -> str:
    """One stripped, non-empty, printable entry of at most MAX_ENTRY_CHARS characters."""
    if not isinstance(value, str):
        problem = f"must be a string, not {type(value).__name__}"
        raise _entry_error(source, key, index, value, problem)
    # Checked before stripping: a trailing newline is a sign of a broken file, not whitespace.
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise _entry_error(source, key, index, value, "contains a control character")
    text = value.strip()
    if not text:
        raise _entry_error(source, key, index, value, "is empty")
    if len(text) > MAX_ENTRY_CHARS:
        raise _entry_error(
            source, key, index, value, f"is {len(text)} characters long (max {MAX_ENTRY_CHARS})"
        )
    return text


def _sequence(value: Any, key: str, source: str) -> Sequence[Any]:
    # A bare string is iterable too; `unary: red` must not become ('r', 'e', 'd').
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise _key_error(source, key, f"must be a list, not {type(value).__name__}")
    if len(value) > MAX_ENTRIES:
        raise _key_error(source, key, f"has {len(value)} entries (max {MAX_ENTRIES})")
    return value


def _string_list(
    value: Any, key: str, source: str, allow_empty: bool = True
) -> tuple[str, ...]:
    items = _sequence(value, key, source)
    if not items and not allow_empty:
        raise _key_error(source, key, "must not be empty")
    cleaned: list[str] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        text = _clean_string(item, source, key, index)
        folded = text.casefold()
        if folded in first_index:
            raise _entry_error(
                source, key, index, item,
                f"duplicates entry {first_index[folded]} (case-insensitive)",
            )
        first_index[folded] = index
        cleaned.append(text)
    return tuple(cleaned)


def _choice(value: Any, key: str, allowed: tuple[str, ...], source: str) -> str:
    if value not in allowed:
        raise _key_error(source, key, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _boolean(value: Any, key: str, source: str) -> bool:
    if not isinstance(value, bool):
        raise _key_error(source, key, f"must be true or false, not {value!r}")
    return value


def _count(value: Any, key: str, source: str) -> int:
    # bool is an int subclass; `top_k_pairs: true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _key_error(source, key, f"must be an integer >= 0, not {value!r}")
    return value


def _pairs(
    value: Any, categories: tuple[str, ...], source: str
) -> tuple[tuple[str, str], ...]:
    key = "pairs_of_interest"
    items = _sequence(value, key, source)
    known = set(categories)
    pairs: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 2:
            raise _entry_error(source, key, index, item, "must be a [subject, object] pair")
        pair = tuple(_clean_string(name, source, key, index) for name in item)
        for name in pair:
            if name not in known:
                raise _entry_error(source, key, index, item, f"'{name}' is not in categories")
        if pair in pairs:
            raise _entry_error(
                source, key, index, item, f"duplicates entry {pairs.index(pair)}"
            )
        pairs.append(pair)
    return tuple(pairs)


def _temporal(value: Any, source: str) -> tuple[str, ...]:
    names = _string_list(value, "temporal", source)
    for index, name in enumerate(names):
        if name not in TEMPORAL_PREDICATES:
            raise _entry_error(
                source, "temporal", index, name,
                f"is not one of {', '.join(TEMPORAL_PREDICATES)}",
            )
    return names


def _geometry(value: Any, source: str) -> GeometrySettings | None:
    try:
        return geometry_from_yaml(value)
    except ValueError as exc:
        raise _key_error(source, "geometry", str(exc).removeprefix("geometry: ")) from exc


def _name(value: Any, source: str) -> str:
    if not isinstance(value, str):
        raise _key_error(source, "name", f"must be a string, not {type(value).__name__}")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise _key_error(source, "name", f"{value!r} contains a control character")
    text = value.strip()
    if len(text) > MAX_ENTRY_CHARS:
        raise _key_error(source, "name", f"is {len(text)} characters long (max {MAX_ENTRY_CHARS})")
    return text
