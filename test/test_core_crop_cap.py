"""Bounded pair crops: max_crops_per_frame keeps the most confident pairs; chunked encoding."""

from __future__ import annotations

import dataclasses
import itertools

import cv2
import numpy as np
import pytest
import torch

from sgclip_ros.core import frame_encoder
from sgclip_ros.core.backend import TorchBackend
from sgclip_ros.core.backend_select import UNTRAINED_TINY, load_backend
from sgclip_ros.core.concepts import ConceptSet
from sgclip_ros.core.frame_encoder import FrameEncoder, FrameInput
from sgclip_ros.core.graph_builder import ConceptTexts, GraphSettings, RoleText
from sgclip_ros.core.model import build_model
from sgclip_ros.core.model_config import load_model_config, tower_index
from sgclip_ros.core.predictor import PredictorConfig, SGClipPredictor
from sgclip_ros.core.proposer import ColorBlobProposer
from sgclip_ros.core.regions import Region
from sgclip_ros.core.scene_graph import Box
from sgclip_ros.core.text_cache import TextEmbeddingCache
from sgclip_ros.core.tracker import IoUTracker
from sgclip_ros.core.window import WindowConfig

SHAPES = ConceptSet(
    categories=("circle", "square", "triangle", "star"),
    unary=("red", "green", "blue", "yellow"),
    binary=("left of", "right of", "above", "below", "touching"),
)
N = 12  # objects per frame: 132 ordered pairs
CAP = 20
PERIOD = 100_000_000


@pytest.fixture(scope="module")
def backend():
    return load_backend("torch", "", UNTRAINED_TINY, "cpu").backend


def _frame(t: int, n: int = N) -> tuple[np.ndarray, list[Region]]:
    """``n`` differently coloured squares in a row; they drift right with ``t``."""
    image = np.full((120, 40 + 30 * n, 3), 235, np.uint8)
    regions = []
    for k in range(n):
        x, y = 10 + 30 * k + t, 15 + 7 * (k % 5)
        color = ((53 * k) % 256, (97 * k + 40) % 256, (151 * k + 80) % 256)
        cv2.rectangle(image, (x, y), (x + 21, y + 21), color, -1)
        regions.append(Region(Box(x, y, x + 22, y + 22), track_id=f"t{k}"))
    return image, regions


def _predictor(backend, concepts=SHAPES, **config) -> SGClipPredictor:
    settings = GraphSettings(relation_threshold=0.0)  # report every scored pair
    config = PredictorConfig(window=WindowConfig(size=1), graph=settings, max_objects=64, **config)
    return SGClipPredictor(backend, concepts, config)


def _add(predictor, t: int, n: int = N):
    image, regions = _frame(t, n)
    return predictor.add_frame("cam", image, (t + 1) * PERIOD, regions)


def _kept(predictor) -> list[tuple[str, str]]:
    record = predictor.stream("cam").window.frames[-1]
    return [(record.track_ids[s], record.track_ids[o]) for s, o in record.pairs.tolist()]


def _expected_top(graph, k: int) -> set[tuple[str, str]]:
    """The k pairs of highest product of best category probabilities, from the graph's objects."""
    best = {o.id: torch.tensor(o.score, dtype=torch.float32) for o in graph.objects}
    pairs = list(itertools.permutations(sorted(best, key=lambda i: int(i[1:])), 2))
    score = [float(best[s] * best[o]) for s, o in pairs]
    order = sorted(range(len(pairs)), key=lambda p: -score[p])  # sorted() is stable
    return {pairs[p] for p in order[:k]}


def _relation_pairs(graph) -> set[tuple[str, str]]:
    return {(r.subject_id, r.object_id) for r in graph.relations if r.predicate in SHAPES.binary}


def test_the_cap_keeps_the_most_confident_pairs_in_their_order(backend):
    predictor = _predictor(backend, max_crops_per_frame=CAP)
    for t in range(3):
        before = dataclasses.replace(predictor.stats.encode)
        graph = _add(predictor, t)
        stats = predictor.stats.encode
        assert stats.pair_crops - before.pair_crops == CAP
        assert stats.pairs_capped - before.pairs_capped == N * (N - 1) - CAP
        kept = _kept(predictor)
        assert len(kept) == CAP and set(kept) == _expected_top(graph, CAP)
        order = [(int(s[1:]), int(o[1:])) for s, o in kept]
        assert order == sorted(order)  # (i, j) order, as select_pairs keeps it
        # The graph scores exactly the kept pairs (threshold 0: every scored pair is a fact).
        assert _relation_pairs(graph) == set(kept)
        assert len(graph.objects) == N


def test_no_pair_is_dropped_under_the_cap(backend):
    predictor = _predictor(backend, max_crops_per_frame=N * (N - 1))
    graph = _add(predictor, 0)
    assert predictor.stats.encode.pair_crops == N * (N - 1)
    assert predictor.stats.encode.pairs_capped == 0
    assert len(_relation_pairs(graph)) == N * (N - 1)


def _top_k(k: int) -> ConceptSet:
    return dataclasses.replace(SHAPES, top_k_pairs=k)


def test_the_cap_applies_on_top_of_top_k_pairs(backend):
    reference = _predictor(backend, max_crops_per_frame=CAP)
    _add(reference, 0)
    top_30 = _predictor(backend, _top_k(30), max_crops_per_frame=CAP)
    _add(top_30, 0)
    assert top_30.stats.encode.pair_crops == CAP
    assert top_30.stats.encode.pairs_capped == 30 - CAP  # top_k_pairs dropped the others
    assert _kept(top_30) == _kept(reference)
    top_10 = _predictor(backend, _top_k(10), max_crops_per_frame=CAP)
    graph = _add(top_10, 0)
    assert top_10.stats.encode.pair_crops == 10 and top_10.stats.encode.pairs_capped == 0
    assert set(_kept(top_10)) == _expected_top(graph, 10)


def test_the_cap_applies_after_pairs_of_interest(backend):
    plain = _predictor(backend, max_crops_per_frame=10_000)
    graph = _add(plain, 0)
    label = {o.id: o.label for o in graph.objects}
    wanted = sorted({(label[s], label[o]) for s, o in _kept(plain)})[:2]
    matching = [(s, o) for s, o in _kept(plain) if (label[s], label[o]) in wanted]
    assert len(matching) > 3
    concepts = dataclasses.replace(SHAPES, pairs_of_interest=tuple(wanted))
    capped = _predictor(backend, concepts, max_crops_per_frame=3)
    _add(capped, 0)
    assert capped.stats.encode.pair_crops == 3
    assert capped.stats.encode.pairs_capped == len(matching) - 3
    assert set(_kept(capped)) <= set(matching)


def test_set_max_crops_per_frame_applies_from_the_next_frame(backend):
    predictor = _predictor(backend, max_crops_per_frame=CAP)
    added = []
    for t, cap in enumerate([None, 50, 1000, 1]):
        if cap is not None:
            predictor.set_max_crops_per_frame(cap)
            assert predictor.config.max_crops_per_frame == cap
        before = predictor.stats.encode.pair_crops
        _add(predictor, t)
        added.append(predictor.stats.encode.pair_crops - before)
    assert added == [CAP, 50, N * (N - 1), 1]
    assert predictor.stats.encode.pairs_capped == (132 - 20) + (132 - 50) + 0 + (132 - 1)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8", None])
def test_invalid_caps_are_rejected_with_the_parameter_name(backend, bad):
    with pytest.raises(ValueError, match="max_crops_per_frame"):
        PredictorConfig(max_crops_per_frame=bad)
    predictor = _predictor(backend, max_crops_per_frame=CAP)
    with pytest.raises(ValueError, match="max_crops_per_frame"):
        predictor.set_max_crops_per_frame(bad)
    assert predictor.config.max_crops_per_frame == CAP
    _add(predictor, 0)
    assert predictor.stats.encode.pair_crops == CAP


def test_the_default_cap_keeps_every_pair_of_sixteen_objects(backend):
    assert PredictorConfig().max_crops_per_frame == 256
    predictor = SGClipPredictor(backend, SHAPES, PredictorConfig(max_objects=16))
    _add(predictor, 0, n=16)
    assert predictor.stats.encode.pair_crops == 16 * 15
    assert predictor.stats.encode.pairs_capped == 0


# ---- chunked encoding --------------------------------------------------------------------------
def _texts(backend, concepts: ConceptSet) -> ConceptTexts:
    """Every role's text embeddings, as the predictor computes them."""
    cache = TextEmbeddingCache()

    def role(name: str, texts: tuple) -> RoleText:
        tower = tower_index(name, backend.towers)
        emb = cache.get(backend, tower, list(texts))
        return RoleText(list(texts), emb, tower, backend.logit_scale(tower))

    return ConceptTexts(
        concepts,
        role("category", concepts.categories),
        role("unary", concepts.unary),
        role("binary", concepts.binary),
    )


class _RecordingBackend(TorchBackend):
    """Remembers how many crops each forward held."""

    def __init__(self, towers: int):
        config = dataclasses.replace(load_model_config("sgclip-tiny"), towers=towers)
        super().__init__(build_model(config, seed=0), f"tiny-{towers}")
        self.batches: list[int] = []

    def encode_images(self, tower, pixels):
        self.batches.append(len(pixels))
        return super().encode_images(tower, pixels)


def _encode(backend, chunk: int, cap: int | None):
    """Three cameras at once (12, 9 and 6 objects) through one FrameEncoder."""
    encoder = FrameEncoder(
        backend, ColorBlobProposer(), 64, max_crops_per_frame=cap, crop_chunk=chunk
    )
    inputs = []
    for n in range(3):
        image, regions = _frame(n, N - 3 * n)
        inputs.append(FrameInput(f"cam{n}", image, PERIOD, regions))
    records = encoder.encode(inputs, [IoUTracker() for _ in inputs], _texts(backend, SHAPES))
    return encoder, records


# Forwards without chunking: one per tower, plus one for the capped frames' pairs.
WHOLE_FORWARDS = {(1, None): 1, (3, None): 3, (1, 40): 2, (3, 40): 4}


@pytest.mark.parametrize("towers", [1, 3])
@pytest.mark.parametrize("cap", [None, 40])
def test_chunked_forwards_match_one_forward_per_tower(towers, cap, monkeypatch):
    backend = _RecordingBackend(towers)
    whole, expected = _encode(backend, 100_000, cap)
    assert whole.stats.image_forwards == WHOLE_FORWARDS[towers, cap]
    assert whole.stats.pairs_capped == (0 if cap is None else (132 - 40) + (72 - 40))
    pair_calls: list[int] = []
    real = frame_encoder.pair_crops

    def counting(frame, boxes, masks, pairs):
        pair_calls.append(len(pairs))
        return real(frame, boxes, masks, pairs)

    monkeypatch.setattr(frame_encoder, "pair_crops", counting)
    backend.batches = []
    chunked, records = _encode(backend, 7, cap)
    # No forward and no pair-crop call holds more than a chunk: memory is bounded by it.
    assert max(backend.batches) <= 7 and max(pair_calls) <= 7
    assert chunked.stats.image_forwards == len(backend.batches) > whole.stats.image_forwards
    assert chunked.stats.pair_crops == whole.stats.pair_crops == sum(pair_calls)
    assert chunked.stats.crops_per_tower == whole.stats.crops_per_tower
    for got, want in zip(records, expected, strict=True):
        assert torch.equal(got.pairs, want.pairs)
        torch.testing.assert_close(got.pair_emb, want.pair_emb, rtol=1e-5, atol=1e-6)
        assert got.object_emb.keys() == want.object_emb.keys()
        for tower, emb in want.object_emb.items():
            torch.testing.assert_close(got.object_emb[tower], emb, rtol=1e-5, atol=1e-6)
