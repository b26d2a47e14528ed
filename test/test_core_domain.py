"""Model domains: what the shipped model declares, and which active words a closed model never
saw (the check behind the /diagnostics and bag-runner WARN). ROS-free."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sgclip_ros.core.concepts import concepts_from_dict, load_concepts
from sgclip_ros.core.domain import (
    REAL_WEIGHTS_COMMAND,
    ModelDomain,
    check_domain,
    parse_domain,
    read_domain,
    unknown_words,
)
from sgclip_ros.core.health import Level, PerceptionStatus, node_level
from sgclip_ros.core.model_config import SGClipConfig, load_model_config
from sgclip_ros.core.model_store import verify_model_dir

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models" / "shapes_default"
CONCEPTS = REPO / "config" / "concepts"


def shipped_check(concept_file: str):
    return check_domain("shapes_default", read_domain(SHIPPED),
                        load_concepts(CONCEPTS / concept_file))


def test_shipped_model_declares_shapesworld_with_the_words_it_trained_on():
    verify_model_dir(SHIPPED.parent, SHIPPED.name)  # the manifest covers the declaration
    domain = read_domain(SHIPPED)
    assert domain.name == "shapesworld" and domain.closed
    trained = load_concepts(SHIPPED / "concepts.yaml")
    assert domain.vocabulary == {"categories": trained.categories, "unary": trained.unary,
                                 "binary": trained.binary}
    assert "`shapesworld`, closed" in (SHIPPED / "MODEL_CARD.md").read_text()


def test_household_words_on_shapes_default_warn_naming_model_domain_and_first_words():
    check = shipped_check("household.yaml")
    assert check.unknown[:5] == ("person", "chair", "table", "sofa", "bed")
    # Words it did learn, in their role, are not reported.
    assert not {"red", "green", "blue", "left of", "right of", "above", "touching"} & set(
        check.unknown)
    assert len(check.unknown) == 60 and check.active_words == 67
    warning = check.warning
    assert warning.startswith("model shapes_default (domain shapesworld) never saw 60 of the 67")
    assert "person, chair, table, sofa, bed (+55 more)" in warning
    assert REAL_WEIGHTS_COMMAND in warning


@pytest.mark.parametrize("concept_file", ["shapes.yaml", "shapes_3d.yaml"])
def test_shapes_lists_on_shapes_default_do_not_warn(concept_file):
    check = shipped_check(concept_file)
    assert check.unknown == () and check.warning == ""
    # Opening a closed model still says how to get real weights.
    assert check.closed and REAL_WEIGHTS_COMMAND in check.hint
    assert "closed-domain model (shapesworld, trained on 13 words" in check.notice()


def test_words_are_compared_per_role_and_ignore_case_and_spacing():
    domain = ModelDomain("shapesworld", {"categories": ["circle"], "unary": ["red"],
                                         "binary": ["left of"]})
    concepts = concepts_from_dict({"categories": ["Circle", "red"], "unary": [" RED "],
                                   "binary": ["left  of", "circle"]})
    # "red" was learned as a colour, never as an object; "circle" never as a relation.
    assert unknown_words(domain, concepts) == ["red", "circle"]


def test_open_and_undeclared_domains_never_warn():
    household = load_concepts(CONCEPTS / "household.yaml")
    open_check = check_domain("clip", ModelDomain("open"), household)
    assert open_check.warning == "" and open_check.hint == "" and open_check.notice() == ""
    unknown = check_domain("trained-here", None, household)
    assert unknown.domain_name == "unknown" and unknown.warning == "" and not unknown.closed


@pytest.mark.parametrize("data, problem", [
    ({"name": "shapesworld"}, "must list the words"),
    ({"name": "open", "vocabulary": {"categories": [], "unary": [], "binary": []}},
     "must not list"),
    ({"name": "Shapes World"}, "lower-case name"),
    ({"name": "x", "vocabulary": {"categories": ["a"], "unary": ["b"]}}, "vocabulary.binary"),
    ({"name": "x", "vocabulary": {"categories": "abc", "unary": [], "binary": []}},
     "list of non-empty strings"),
    ({"name": "open", "words": []}, "unknown key"),
    ({"vocabulary": {}}, "domain.name"),
])
def test_malformed_domains_are_refused_with_the_key_named(data, problem):
    with pytest.raises(ValueError, match=problem):
        parse_domain(data)


def test_model_config_round_trips_the_domain_and_omits_it_when_undeclared(tmp_path):
    shipped = load_model_config(SHIPPED / "config.json")
    assert SGClipConfig.from_dict(shipped.to_dict()).domain == shipped.domain
    assert shipped.to_dict()["domain"]["name"] == "shapesworld"
    # Configs without a domain keep exactly the dict they had (engine manifests record it).
    plain = load_model_config("sgclip-tiny")
    assert plain.domain is None and "domain" not in plain.to_dict()
    bad = dict(shipped.to_dict(), domain={"name": "shapesworld"})
    (tmp_path / "c.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="must list the words"):
        load_model_config(tmp_path / "c.json")


def test_node_level_warns_for_unknown_words_only():
    status = PerceptionStatus(node_name="n", backend="torch", model_id="abc",
                              latency_p50_ms=math.nan)
    status.domain = shipped_check("shapes.yaml")
    assert node_level(status)[0] == Level.OK
    status.domain = shipped_check("household.yaml")
    level, message = node_level(status)
    assert level == Level.WARN and "model shapes_default (domain shapesworld)" in message


def test_packaging_a_shapes_model_declares_its_domain(tmp_path):
    """training.model_card (make shapes-default) writes the declaration the shipped model has."""
    from sgclip_ros.core.model import build_model
    from training.checkpoint import export_model_dir
    from training.eval_metrics import METRIC_KEYS
    from training.model_card import card_text, package, shapes_domain

    shapes = load_concepts(CONCEPTS / "shapes.yaml")
    weak = export_model_dir(build_model(load_model_config("sgclip-tiny"), seed=1), shapes,
                            tmp_path / "run")
    rows = {r: {k: 0.5 for k in METRIC_KEYS} for r in ("untrained", "weak", "supervised")}
    out = package(weak, rows, "# card\n", tmp_path / "models" / "shipped")
    verify_model_dir(out.parent, out.name)
    assert read_domain(out) == read_domain(SHIPPED) == shapes_domain(shapes)
    card = card_text(rows, {}, "cmd", "h", shapes_domain(shapes))
    assert "## Domain\n`shapesworld`, closed" in card
    assert "- binary: left of, right of, above, below, touching" in card
