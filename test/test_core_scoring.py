"""Scoring and pooling as the reference defines them, checked against direct formulas."""

from __future__ import annotations

import pytest
import torch

from sgclip_ros.core import scoring
from sgclip_ros.core.concepts import ConceptSet


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


@pytest.fixture
def emb():
    g = torch.Generator().manual_seed(0)
    return _unit(torch.randn(5, 16, generator=g)), _unit(torch.randn(4, 16, generator=g))


def test_category_probs_are_softmax_of_scaled_cosines(emb):
    img, txt = emb
    probs = scoring.category_probs(img, txt, 100.0)
    expected = torch.exp(100.0 * img @ txt.T)
    expected = expected / expected.sum(dim=1, keepdim=True)
    torch.testing.assert_close(probs, expected)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(5))


def test_contrast_mode_scores_each_concept_against_its_negation(emb):
    img, txt = emb  # txt rows: [c0, not c0, c1, not c1]
    probs = scoring.unary_probs(img, txt, 50.0, "contrast")
    assert probs.shape == (5, 2)
    lg = 50.0 * img @ txt.T
    torch.testing.assert_close(probs[:, 1], torch.sigmoid(lg[:, 2] - lg[:, 3]))
    softmax = scoring.unary_probs(img, txt, 50.0, "softmax")
    torch.testing.assert_close(softmax.sum(dim=1), torch.ones(5))


def test_sigmoid_is_multi_label_and_no_relation_column_is_dropped(emb):
    img, txt = emb
    sig = scoring.binary_probs(img, txt, 10.0, "sigmoid", n_binary=4)
    torch.testing.assert_close(sig, torch.sigmoid(10.0 * img @ txt.T))
    soft = scoring.binary_probs(img, txt, 10.0, "softmax", n_binary=3)
    assert soft.shape == (5, 3)
    assert bool((soft.sum(dim=1) < 1.0).all())  # the no-relation column took its share


def test_texts_follow_the_concept_modes():
    concepts = ConceptSet(
        categories=("cup",),
        unary=("red", "open"),
        binary=("on",),
        unary_mode="contrast",
        no_relation=True,
    )
    assert scoring.unary_texts(concepts) == ["red", "not red", "open", "not open"]
    assert scoring.binary_texts(concepts) == ["on", scoring.NO_RELATION]
    sigmoid = ConceptSet(
        categories=("cup",), unary=(), binary=("on",), binary_mode="sigmoid", no_relation=True
    )
    assert scoring.binary_texts(sigmoid) == ["on"]


def test_pooling_mean_and_max():
    frames = torch.tensor([[0.8, 0.2, 0.0], [0.2, 0.2, 0.6]])
    torch.testing.assert_close(
        scoring.pool_categories(frames, "mean"), torch.tensor([0.5, 0.2, 0.3])
    )
    pooled_max = scoring.pool_categories(frames, "max")
    torch.testing.assert_close(pooled_max, torch.tensor([0.8, 0.2, 0.6]) / 1.6)
    with pytest.raises(ValueError, match="no frame"):
        scoring.pool_categories(torch.zeros(0, 3), "mean")
