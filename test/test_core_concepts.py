"""Concept files: loading, strict validation with precise messages, and concepts_id."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sgclip_ros.core.concepts import (
    MAX_ENTRIES,
    MAX_ENTRY_CHARS,
    ConceptError,
    ConceptSet,
    concepts_from_dict,
    load_concepts,
)
from sgclip_ros.core.temporal import TEMPORAL_PREDICATES

REPO = Path(__file__).resolve().parent.parent
CONCEPT_DIR = REPO / "config" / "concepts"

VALID = {
    "categories": ["cup", "table", "person"],
    "unary": ["red", "open"],
    "binary": ["on top of", "next to"],
}


def write_yaml(tmp_path: Path, data: object, name: str = "concepts.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def with_changes(**changes: object) -> dict:
    return {**VALID, **changes}


# ---------------------------------------------------------------- valid files


def test_minimal_file_loads_with_defaults(tmp_path):
    concepts = load_concepts(write_yaml(tmp_path, VALID))
    assert concepts.categories == ("cup", "table", "person")
    assert concepts.unary == ("red", "open")
    assert concepts.binary == ("on top of", "next to")
    assert (concepts.unary_mode, concepts.binary_mode) == ("softmax", "softmax")
    assert concepts.no_relation is False
    assert concepts.category_pooling == "mean"
    assert concepts.top_k_pairs == 0
    assert concepts.pairs_of_interest == ()
    assert concepts.temporal == ()


def test_all_options_load_and_entries_are_stripped(tmp_path):
    data = with_changes(
        categories=["  cup ", "table"],
        unary_mode="contrast",
        binary_mode="sigmoid",
        no_relation=True,
        category_pooling="max",
        top_k_pairs=18,
        pairs_of_interest=[["cup", "table"], ["table", "cup"]],
        temporal=["moving", "approaching"],
        name=" kitchen ",
    )
    concepts = load_concepts(write_yaml(tmp_path, data))
    assert concepts.categories == ("cup", "table")
    assert concepts.unary_mode == "contrast"
    assert concepts.binary_mode == "sigmoid"
    assert concepts.no_relation is True
    assert concepts.category_pooling == "max"
    assert concepts.top_k_pairs == 18
    assert concepts.pairs_of_interest == (("cup", "table"), ("table", "cup"))
    assert concepts.temporal == ("moving", "approaching")
    assert concepts.name == "kitchen"


def test_empty_unary_and_binary_lists_are_allowed():
    concepts = concepts_from_dict(with_changes(unary=[], binary=[]))
    assert concepts.unary == () and concepts.binary == ()


def test_limits_are_inclusive():
    longest = "x" * MAX_ENTRY_CHARS
    many = [f"thing {i}" for i in range(MAX_ENTRIES)]
    concepts = concepts_from_dict(with_changes(categories=many, unary=[longest]))
    assert len(concepts.categories) == MAX_ENTRIES
    assert concepts.unary == (longest,)


def test_to_dict_round_trips_through_yaml(tmp_path):
    original = concepts_from_dict(
        with_changes(pairs_of_interest=[["cup", "table"]], temporal=["still"], name="n")
    )
    reloaded = load_concepts(write_yaml(tmp_path, original.to_dict()))
    assert reloaded == original
    assert reloaded.concepts_id == original.concepts_id


def test_shapes_file_matches_shapesworld():
    concepts = load_concepts(CONCEPT_DIR / "shapes.yaml")
    assert concepts.categories == ("circle", "square", "triangle", "star")
    assert concepts.unary == ("red", "green", "blue", "yellow")
    assert concepts.binary == ("left of", "right of", "above", "below", "touching")
    assert concepts.binary_mode == "sigmoid"
    assert set(concepts.temporal) == set(TEMPORAL_PREDICATES)


def test_household_file_is_a_broad_indoor_set():
    concepts = load_concepts(CONCEPT_DIR / "household.yaml")
    assert 30 <= len(concepts.categories) <= 60
    assert 10 <= len(concepts.unary) <= 25
    assert 8 <= len(concepts.binary) <= 20
    # YAML 1.1 turns bare on/off into booleans; the file must quote them.
    assert {"on", "off"} <= set(concepts.unary)


def test_every_shipped_file_loads():
    files = sorted(CONCEPT_DIR.glob("*.yaml"))
    assert len(files) >= 2
    ids = {load_concepts(path).concepts_id for path in files}
    assert len(ids) == len(files)


# ---------------------------------------------------------------- validation


ENTRY_CASES = [
    # (changes, key, entry index, offending value, words of the problem)
    ({"unary": ["red", "green", "blue", "re d\n"]}, "unary", 3, "re d\n", "control character"),
    ({"binary": ["on\ttop"]}, "binary", 0, "on\ttop", "control character"),
    ({"categories": ["cup", "\x7fcup"]}, "categories", 1, "\x7fcup", "control character"),
    ({"unary": ["red", ""]}, "unary", 1, "", "empty"),
    ({"unary": ["   "]}, "unary", 0, "   ", "empty"),
    ({"binary": ["y" * (MAX_ENTRY_CHARS + 1)]}, "binary", 0, "y" * 65, "65 characters"),
    ({"categories": ["Cup", "table", "cup "]}, "categories", 2, "cup ", "duplicates entry 0"),
    ({"unary": ["red", 7]}, "unary", 1, 7, "must be a string"),
    ({"categories": ["cup", None]}, "categories", 1, None, "must be a string"),
    ({"temporal": ["moving", "flying"]}, "temporal", 1, "flying", "not one of"),
    ({"temporal": ["still", "Still"]}, "temporal", 1, "Still", "duplicates"),
    ({"pairs_of_interest": [["cup", "table"], ["cup"]]}, "pairs_of_interest", 1, ["cup"], "pair"),
    ({"pairs_of_interest": [["cup", "sofa"]]}, "pairs_of_interest", 0, ["cup", "sofa"],
     "'sofa' is not in categories"),
    ({"pairs_of_interest": [["cup", "table"], ["cup", "table"]]}, "pairs_of_interest", 1,
     ["cup", "table"], "duplicates entry 0"),
    ({"pairs_of_interest": ["cup"]}, "pairs_of_interest", 0, "cup", "pair"),
]


@pytest.mark.parametrize(("changes", "key", "index", "value", "problem"), ENTRY_CASES)
def test_entry_errors_name_file_key_and_entry(tmp_path, changes, key, index, value, problem):
    path = write_yaml(tmp_path, with_changes(**changes), name="field_test.yaml")
    with pytest.raises(ConceptError) as info:
        load_concepts(path)
    message = str(info.value)
    assert message.startswith(f"{path}: key '{key}' entry {index} ({value!r}):")
    assert problem in message


def test_error_message_has_the_documented_shape():
    data = with_changes(unary=["red", "green", "blue", "re d\n"])
    with pytest.raises(ConceptError) as info:
        concepts_from_dict(data, "config/concepts/x.yaml")
    assert str(info.value) == (
        "config/concepts/x.yaml: key 'unary' entry 3 ('re d\\n'): contains a control character"
    )


KEY_CASES = [
    # (changes or replacement dict, key named, words of the problem)
    ({"categories": []}, "categories", "must not be empty"),
    ({"unary": "red"}, "unary", "must be a list"),
    ({"binary": {"on": 1}}, "binary", "must be a list"),
    ({"unary": [f"u{i}" for i in range(MAX_ENTRIES + 1)]}, "unary", "257 entries"),
    ({"unary_mode": "contrastive"}, "unary_mode", "not one of"),
    ({"binary_mode": "multilabel"}, "binary_mode", "not one of"),
    ({"category_pooling": "median"}, "category_pooling", "not one of"),
    ({"no_relation": "yes please"}, "no_relation", "true or false"),
    ({"no_relation": 1}, "no_relation", "true or false"),
    ({"top_k_pairs": -1}, "top_k_pairs", "integer >= 0"),
    ({"top_k_pairs": 2.5}, "top_k_pairs", "integer >= 0"),
    ({"top_k_pairs": True}, "top_k_pairs", "integer >= 0"),
    ({"pairs_of_interest": "cup table"}, "pairs_of_interest", "must be a list"),
    ({"name": 5}, "name", "must be a string"),
    ({"name": "kitchen\n"}, "name", "control character"),
]


@pytest.mark.parametrize(("changes", "key", "problem"), KEY_CASES)
def test_key_errors_name_file_and_key(tmp_path, changes, key, problem):
    path = write_yaml(tmp_path, with_changes(**changes), name="field_test.yaml")
    with pytest.raises(ConceptError) as info:
        load_concepts(path)
    message = str(info.value)
    assert message.startswith(f"{path}: key '{key}'")
    assert problem in message


def test_unknown_key_is_an_error_with_a_suggestion(tmp_path):
    path = write_yaml(tmp_path, with_changes(unray=["red"]))
    with pytest.raises(ConceptError, match="unknown key 'unray'.*did you mean 'unary'") as info:
        load_concepts(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("missing", ["categories", "unary", "binary"])
def test_missing_required_key(tmp_path, missing):
    data = {k: v for k, v in VALID.items() if k != missing}
    path = write_yaml(tmp_path, data)
    with pytest.raises(ConceptError, match=f"missing required key '{missing}'") as info:
        load_concepts(path)
    assert str(info.value).startswith(str(path))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("categories: [cup\nunary: []\n", "invalid YAML"),
        ("- cup\n- table\n", "top level must be a mapping"),
        ("just a string\n", "top level must be a mapping"),
        ("", "empty"),
        ("# only a comment\n", "empty"),
    ],
)
def test_bad_documents_name_the_file(tmp_path, text, problem):
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConceptError, match=problem) as info:
        load_concepts(path)
    assert str(info.value).startswith(f"{path}:")


def test_unreadable_files_name_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConceptError, match="cannot read") as info:
        load_concepts(missing)
    assert str(missing) in str(info.value)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00categories")
    with pytest.raises(ConceptError, match="cannot read"):
        load_concepts(binary)
    with pytest.raises(ConceptError, match="cannot read"):
        load_concepts(tmp_path)  # a directory


def test_python_objects_are_refused_by_safe_load(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("categories: !!python/object/apply:os.system ['true']\n", encoding="utf-8")
    with pytest.raises(ConceptError, match="invalid YAML"):
        load_concepts(path)


def test_concepts_from_dict_rejects_non_mappings():
    with pytest.raises(ConceptError, match="<inline>: top level must be a mapping"):
        concepts_from_dict(["cup"])  # type: ignore[arg-type]


def test_direct_construction_is_validated_and_normalised():
    concepts = ConceptSet(categories=[" cup"], unary=["red"], binary=[])  # type: ignore[arg-type]
    assert concepts.categories == ("cup",)
    hash(concepts)  # frozen and made of tuples
    with pytest.raises(ConceptError, match="key 'unary' entry 1"):
        ConceptSet(categories=("cup",), unary=("red", "RED"), binary=())
    with pytest.raises(ConceptError, match="key 'binary_mode'"):
        ConceptSet(categories=("cup",), unary=(), binary=(), binary_mode="max")


# ---------------------------------------------------------------- concepts_id


def test_concepts_id_is_16_hex_and_ignores_name():
    concepts = concepts_from_dict(VALID)
    assert len(concepts.concepts_id) == 16
    int(concepts.concepts_id, 16)
    renamed = concepts_from_dict(with_changes(name="another name"))
    assert renamed.concepts_id == concepts.concepts_id


def test_concepts_id_is_stable_across_processes():
    code = (
        "from sgclip_ros.core.concepts import load_concepts;"
        f"print(load_concepts({str(CONCEPT_DIR / 'shapes.yaml')!r}).concepts_id)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)},
    )
    assert result.stdout.strip() == load_concepts(CONCEPT_DIR / "shapes.yaml").concepts_id


@pytest.mark.parametrize(
    "changes",
    [
        {"categories": ["cup", "table", "chair"]},
        {"categories": ["table", "cup", "person"]},  # order matters
        {"unary": ["open", "red"]},
        {"binary": ["on top of"]},
        {"unary_mode": "contrast"},
        {"binary_mode": "sigmoid"},
        {"no_relation": True},
        {"category_pooling": "max"},
        {"top_k_pairs": 5},
        {"pairs_of_interest": [["cup", "table"]]},
        {"temporal": ["moving"]},
    ],
)
def test_concepts_id_changes_with_every_scoring_field(changes):
    assert concepts_from_dict(with_changes(**changes)).concepts_id != (
        concepts_from_dict(VALID).concepts_id
    )


def test_concepts_id_does_not_depend_on_whitespace_around_entries():
    padded = with_changes(categories=[" cup", "table ", "person"])
    assert concepts_from_dict(padded).concepts_id == concepts_from_dict(VALID).concepts_id


# ---------------------------------------------------------------- with_lists


def test_with_lists_replaces_only_the_given_lists():
    base = concepts_from_dict(with_changes(binary_mode="sigmoid", top_k_pairs=4, name="b"))
    updated = base.with_lists(unary=["blue", "closed"])
    assert updated.unary == ("blue", "closed")
    assert updated.categories == base.categories and updated.binary == base.binary
    assert (updated.binary_mode, updated.top_k_pairs, updated.name) == ("sigmoid", 4, "b")
    assert updated.concepts_id != base.concepts_id
    assert base.unary == ("red", "open")  # the original is untouched


def test_with_lists_validates_the_new_lists():
    base = concepts_from_dict(VALID)
    with pytest.raises(ConceptError, match="<set_concepts>: key 'categories' entry 1"):
        base.with_lists(categories=["a", "A"])
    with pytest.raises(ConceptError, match="key 'categories': must not be empty"):
        base.with_lists(categories=[])
    assert base.with_lists(binary=[]).binary == ()


def test_with_lists_keeps_pairs_only_while_their_categories_exist():
    base = concepts_from_dict(with_changes(pairs_of_interest=[["cup", "table"]]))
    kept = base.with_lists(categories=["table", "cup", "bowl"])
    assert kept.pairs_of_interest == (("cup", "table"),)
    with pytest.raises(ConceptError, match="'table' is not in categories"):
        base.with_lists(categories=["cup", "bowl"])
    cleared = base.with_lists(categories=["cup", "bowl"], pairs_of_interest=())
    assert cleared.pairs_of_interest == ()
