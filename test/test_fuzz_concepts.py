"""Property tests: concept YAML files and dicts on random input.

``load_concepts``, ``concepts_from_dict`` and the ``ConceptSet`` constructor promise that every
bad input is a ConceptError naming the source; whatever they return is a valid, normalised set
that survives a round trip through ``to_dict`` and a YAML file unchanged.
"""

from __future__ import annotations

import pathlib
import tempfile
import unicodedata

import pytest
import yaml
from fuzz_settings import fuzz
from hypothesis import given
from hypothesis import strategies as st

from sgclip_ros.core.concepts import (
    BINARY_MODES,
    CATEGORY_POOLINGS,
    MAX_ENTRIES,
    MAX_ENTRY_CHARS,
    UNARY_MODES,
    ConceptError,
    ConceptSet,
    concepts_from_dict,
    load_concepts,
)
from sgclip_ros.core.temporal import TEMPORAL_PREDICATES

REPO = pathlib.Path(__file__).resolve().parent.parent
FUZZ = fuzz(200)
FIELDS = (
    "categories", "unary", "binary", "unary_mode", "binary_mode", "no_relation",
    "category_pooling", "top_k_pairs", "pairs_of_interest", "temporal", "name",
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=4)
    | st.dates()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(scalars, inner, max_size=3),
    max_leaves=12,
)
maybe_junk = st.integers(0, 4).map(bool)  # True 4 times in 5


@st.composite
def mostly(draw, good, junk=values):
    """``good`` 4 times in 5, else ``junk``."""
    return draw(good) if draw(maybe_junk) else draw(junk)


words = mostly(
    st.sampled_from(["cup", "Cup", " plate ", "red", "on", "ß", "SS", "a\tb", "x\n", "", "  "])
    | st.text(max_size=MAX_ENTRY_CHARS + 4),
    values,
)
word_lists = mostly(st.lists(words, max_size=6), values)
GOOD = {
    "categories": word_lists,
    "unary": word_lists,
    "binary": word_lists,
    "unary_mode": st.sampled_from(UNARY_MODES),
    "binary_mode": st.sampled_from(BINARY_MODES),
    "no_relation": st.booleans(),
    "category_pooling": st.sampled_from(CATEGORY_POOLINGS),
    "top_k_pairs": st.integers(-2, 50),
    "pairs_of_interest": st.lists(st.lists(words, min_size=2, max_size=2), max_size=3),
    "temporal": st.lists(st.sampled_from(TEMPORAL_PREDICATES) | words, max_size=3),
    "name": st.text(max_size=MAX_ENTRY_CHARS + 4),
}


clean_words = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=20
).filter(lambda w: w.strip())
clean_lists = st.lists(clean_words, max_size=6, unique_by=lambda w: w.strip().casefold())


@st.composite
def concept_dicts(draw):
    """A valid concept mapping, then none (half the time) to three random edits of it."""
    data = {
        "categories": draw(clean_lists.filter(bool)),
        "unary": draw(clean_lists),
        "binary": draw(clean_lists),
    }
    for key in FIELDS[3:]:
        if draw(st.booleans()):
            data[key] = draw(GOOD[key])
    cats = [c.strip() for c in data["categories"]]
    pair = st.lists(st.sampled_from(cats), min_size=2, max_size=2, unique=True)
    if len(cats) > 1 and draw(st.booleans()):
        data["pairs_of_interest"] = draw(st.lists(pair, max_size=3, unique_by=tuple))
    if draw(st.booleans()):
        data["name"] = draw(clean_words)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        edit = draw(st.sampled_from(["set", "drop", "add", "word"]))
        if edit == "set":
            key = draw(st.sampled_from(FIELDS))
            data[key] = draw(mostly(GOOD[key]))
        elif edit == "drop":
            data.pop(draw(st.sampled_from(FIELDS)), None)
        elif edit == "add":
            data[draw(st.sampled_from(["categorys", "Unary", "extra"]) | scalars)] = draw(values)
        else:
            key = draw(st.sampled_from(["categories", "unary", "binary", "temporal"]))
            if isinstance(data.get(key), list):
                data[key] = [*data[key], draw(words)]
    return data


# YAML text that PyYAML builds odd Python values from, or refuses in odd ways.
YAML_SNIPPETS = [
    "2001-13-01", "2001-02-30", "!!timestamp foo", "!!bool maybe", "!!int x", "!!int ''",
    "!!int 0x", "!!float .", "!!binary ===", "!!python/none", "!!set [a]", "!!omap [a]",
    "!!str [a]", "&a [*a]", "*undefined", "[" * 300, "{" * 300, "[" * 2000 + "]" * 2000,
    ".nan", ".inf", "~", "0o7",
    "1_000", "0x_1", "'\\ud800'", '"\\ud800"', '"\\x00"', "|\n  multi\n  line\n", "? [a]\n: 1",
    "[a, b", "\t", "%YAML 1.1\n---", "--- |\n", "<<: *a", "!!merge x", "1e400", "9" * 5000,
]


@st.composite
def yaml_texts(draw):
    kind = draw(st.sampled_from(["dump", "snippet", "text", "bytes"]))
    if kind == "dump":
        text = yaml.safe_dump(
            draw(concept_dicts()), allow_unicode=draw(st.booleans()), sort_keys=False
        )
        return text.encode("utf-8", "surrogatepass")
    if kind == "snippet":
        key = draw(st.sampled_from(FIELDS + ("x",)))
        base = "categories: [cup]\nunary: [red]\nbinary: [on]\n"
        snippet = draw(st.sampled_from(YAML_SNIPPETS))
        return (base + f"{key}: {snippet}\n").encode("utf-8", "surrogatepass")
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    return draw(st.binary(max_size=200))


def _check_valid(concepts: ConceptSet) -> None:
    assert concepts.categories
    for key in ("categories", "unary", "binary"):
        entries = getattr(concepts, key)
        assert isinstance(entries, tuple) and len(entries) <= MAX_ENTRIES
        for entry in entries:
            assert isinstance(entry, str) and entry == entry.strip()
            assert 0 < len(entry) <= MAX_ENTRY_CHARS
            assert not any(unicodedata.category(ch) == "Cc" for ch in entry)
        assert len({e.casefold() for e in entries}) == len(entries)
    assert concepts.unary_mode in UNARY_MODES and concepts.binary_mode in BINARY_MODES
    assert concepts.category_pooling in CATEGORY_POOLINGS
    assert isinstance(concepts.top_k_pairs, int) and concepts.top_k_pairs >= 0
    assert all(s in concepts.categories and o in concepts.categories
               for s, o in concepts.pairs_of_interest)
    assert set(concepts.temporal) <= set(TEMPORAL_PREDICATES)
    assert len(concepts.concepts_id) == 16
    # to_dict round-trips, and so does a YAML file written from it
    again = concepts_from_dict(concepts.to_dict())
    assert again == concepts and again.concepts_id == concepts.concepts_id


def _load(raw: bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "concepts.yaml"
        path.write_bytes(raw)
        try:
            return load_concepts(path)
        except ConceptError as exc:
            assert str(path) in str(exc)  # the file is named
            return None


@FUZZ
@given(yaml_texts())
def test_random_concept_files_load_or_raise_concept_error_naming_the_file(raw):
    concepts = _load(raw)
    if concepts is not None:
        _check_valid(concepts)
        text = yaml.safe_dump(concepts.to_dict(), allow_unicode=True)
        assert _load(text.encode("utf-8")) == concepts


@FUZZ
@given(concept_dicts() | values)
def test_random_dicts_give_a_valid_concept_set_or_concept_error(data):
    try:
        concepts = concepts_from_dict(data, "<fuzz>")
    except ConceptError as exc:
        assert str(exc).startswith("<fuzz>")
        return
    _check_valid(concepts)


@FUZZ
@given(concept_dicts())
def test_constructing_a_concept_set_directly_validates_the_same_way(data):
    try:
        expected = concepts_from_dict(data, "<fuzz>")
    except ConceptError:
        expected = None
    kwargs = {k: v for k, v in data.items() if k in FIELDS}
    try:
        concepts = ConceptSet(**kwargs)
    except TypeError:  # a required list is missing: a Python call error, not a concept error
        assert not {"categories", "unary", "binary"} <= set(kwargs)
        return
    except ConceptError:
        assert expected is None or set(kwargs) != set(data)
        return
    _check_valid(concepts)
    if set(kwargs) == set(data):
        assert concepts == expected


@FUZZ
@given(st.sampled_from(["shapes", "household"]), word_lists, word_lists, word_lists)
def test_with_lists_gives_a_valid_copy_or_concept_error(name, categories, unary, binary):
    base = load_concepts(REPO / "config" / "concepts" / f"{name}.yaml")
    try:
        concepts = base.with_lists(categories, unary, binary, pairs_of_interest=())
    except ConceptError as exc:
        assert str(exc).startswith("<set_concepts>")
        return
    _check_valid(concepts)
    assert concepts.unary_mode == base.unary_mode and concepts.name == base.name


@pytest.mark.parametrize("snippet", YAML_SNIPPETS, ids=[f"s{i}" for i in range(len(YAML_SNIPPETS))])
@pytest.mark.parametrize("key", ["categories", "name", "x"])
def test_every_odd_yaml_scalar_gives_a_set_or_concept_error(snippet, key):
    base = "categories: [cup]\nunary: [red]\nbinary: [on]\n"
    concepts = _load((base + f"{key}: {snippet}\n").encode("utf-8", "surrogatepass"))
    if concepts is not None:
        _check_valid(concepts)
