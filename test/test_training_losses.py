"""Weak-mode losses: negative keywords and their pair scope, relation-vocabulary rules
(converse / exclusive augmentation and the label-free consistency term)."""

from __future__ import annotations

import math

import pytest
import torch

from sgclip_ros.core.concepts import load_concepts
from training import spec as S
from training.logic import PredicateProbs, make_semiring
from training.relation_rules import augment_formula, converse_map, exclusive_map
from training.train_config import ConfigError, LossConfig, config_from_dict
from training.train_losses import (
    RelationRules,
    keyword_losses,
    mentioned_pairs,
    negative_keywords,
    relation_consistency,
    weak_loss,
)

CATS = ["circle", "square", "triangle", "star"]
COLOURS = ["red", "green", "blue", "yellow"]
RELS = ["left of", "right of", "above", "below", "touching"]
CONVERSE = {"left of": "right of", "above": "below", "touching": "touching"}
EXCLUSIVE = [["left of", "right of"], ["above", "below"]]


def probs(binary: torch.Tensor, present: torch.Tensor | None = None) -> PredicateProbs:
    t, n = binary.shape[:2]
    category = torch.full((t, n, len(CATS)), 0.25)
    unary = torch.full((t, n, len(COLOURS)), 0.25)
    if present is None:
        present = torch.ones(t, n, dtype=torch.bool)
    return PredicateProbs(category, unary, binary, CATS, COLOURS, RELS, present)


def left_of_spec() -> S.TemporalSpec:
    """"The red circle stays left of the blue square."""
    return S.TemporalSpec(S.Globally(S.conjoin(
        S.Category("A", "circle"), S.Unary("A", "red"), S.Category("B", "square"),
        S.Unary("B", "blue"), S.Binary("A", "left of", "B"))))


def test_negative_keywords_count_converses_as_used():
    concepts = load_concepts("config/concepts/shapes.yaml")
    neg = negative_keywords([left_of_spec()], concepts, CONVERSE)
    assert [concepts.binary[i] for i in neg.binary] == ["above", "below", "touching"]
    assert [concepts.categories[i] for i in neg.category] == ["triangle", "star"]
    assert [concepts.unary[i] for i in neg.unary] == ["green", "yellow"]


def test_keyword_loss_sums_bce_over_present_pairs_and_respects_the_pair_scope():
    binary = torch.full((2, 3, 3, 5), 0.5)
    binary[:, 0, 1, 4] = 0.9  # the mentioned pair "touches"
    neg = negative_keywords([left_of_spec()], load_concepts("config/concepts/shapes.yaml"),
                            CONVERSE)
    p = probs(binary)
    everything = keyword_losses(p, neg)["neg_binary"]
    # 2 frames x 6 ordered pairs x 3 negative relations, one of them at 0.9 on 2 x 1 pairs.
    expected = 2 * 6 * 3 * -math.log(0.5) + 2 * (-math.log(0.1) + math.log(0.5))
    assert float(everything) == pytest.approx(expected, rel=1e-5)
    pairs = torch.zeros(3, 3, dtype=torch.bool)
    pairs[0, 1] = pairs[1, 0] = True
    scoped = keyword_losses(p, neg, pairs=pairs)["neg_binary"]
    expected = 2 * 2 * 3 * -math.log(0.5) + 2 * (-math.log(0.1) + math.log(0.5))
    assert float(scoped) == pytest.approx(expected, rel=1e-5)
    absent = torch.tensor([[True, True, False], [True, False, True]])
    assert float(keyword_losses(probs(binary, absent), neg, pairs=pairs)["neg_binary"]) == (
        pytest.approx(-math.log(0.1) + 5 * -math.log(0.5), rel=1e-5))  # frame 0 only


def test_mentioned_pairs_follow_the_best_assignment_both_ways():
    spec = left_of_spec()
    mask = mentioned_pairs([spec, S.TemporalSpec(S.Globally(S.Category("C", "star")))],
                           [{"A": 2, "B": 0}, {"C": 1}], 3)
    assert mask.nonzero().tolist() == [[0, 2], [2, 0]]


def test_weak_loss_scope_mentioned_leaves_other_pairs_alone():
    binary = torch.full((3, 3, 3, 5), 0.2)
    binary[:, 0, 1, 0] = 0.9  # track 0 left of track 1
    p = probs(binary)
    p.category[:, 0] = torch.tensor([0.97, 0.01, 0.01, 0.01])
    p.category[:, 1] = torch.tensor([0.01, 0.97, 0.01, 0.01])
    p.unary[:, 0] = torch.tensor([0.97, 0.01, 0.01, 0.01])
    p.unary[:, 1] = torch.tensor([0.01, 0.01, 0.97, 0.01])
    neg = negative_keywords([left_of_spec()], load_concepts("config/concepts/shapes.yaml"),
                            CONVERSE)
    semiring = make_semiring("max")
    _, all_parts = weak_loss(p, [left_of_spec()], [], neg, LossConfig(), semiring)
    _, scoped = weak_loss(p, [left_of_spec()], [], neg,
                          LossConfig(negative_binary_scope="mentioned"), semiring)
    assert scoped["spec"] == pytest.approx(all_parts["spec"])
    assert scoped["neg_binary"] == pytest.approx(all_parts["neg_binary"] * 2 / 6, rel=1e-5)


def test_negative_binary_scope_is_validated():
    with pytest.raises(ConfigError, match="negative_binary_scope"):
        config_from_dict({"loss": {"negative_binary_scope": "some"}})


def test_augment_adds_converse_and_exclusive_partners():
    formula = augment_formula(S.Binary("A", "left of", "B"), converse_map(CONVERSE),
                              exclusive_map(EXCLUSIVE))
    atoms = {repr(a) for a in S.walk(formula) if isinstance(a, (S.Binary, S.Not))}
    assert repr(S.Binary("B", "right of", "A")) in atoms
    assert repr(S.Not(S.Binary("A", "right of", "B"))) in atoms
    assert repr(S.Not(S.Binary("B", "left of", "A"))) in atoms
    negated = augment_formula(S.Not(S.Binary("A", "touching", "B")), converse_map(CONVERSE),
                              exclusive_map(EXCLUSIVE))
    assert repr(S.Not(S.Binary("B", "touching", "A"))) in {repr(a) for a in S.walk(negated)}


def test_relation_rules_from_names_keep_one_entry_per_pair():
    rules = RelationRules.from_names(RELS, converse_map(CONVERSE), exclusive_map(EXCLUSIVE))
    assert rules.converse == [(0, 1), (2, 3), (4, 4)]
    assert rules.exclusive == [(0, 1), (2, 3)]


def test_relation_consistency_is_zero_only_for_consistent_relations():
    rules = RelationRules.from_names(RELS, converse_map(CONVERSE), exclusive_map(EXCLUSIVE))
    consistent = torch.zeros(1, 2, 2, 5)
    consistent[0, 0, 1] = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.3])  # 0 left of and below 1
    consistent[0, 1, 0] = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.3])  # so 1 right of and above 0
    assert float(relation_consistency(probs(consistent), rules)) == pytest.approx(0.0, abs=1e-5)
    broken = consistent.clone()
    broken[0, 1, 0, 1] = 0.0  # the converse of "left of" is missing
    value = relation_consistency(probs(broken), rules)
    assert float(value) == pytest.approx(1.0 / 2, rel=1e-4)  # one squared miss, mean of 2 pairs
    both = consistent.clone()
    both[0, 0, 1, 1] = 1.0  # "left of" and "right of" together
    both[0, 1, 0, 0] = 1.0
    assert float(relation_consistency(probs(both), rules)) > 5.0
    grad_in = broken.clone().requires_grad_()
    relation_consistency(probs(grad_in), rules).backward()
    assert grad_in.grad[0, 1, 0, 1] < 0  # raising the missing converse lowers the loss
