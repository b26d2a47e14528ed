"""Property tests: vision_msgs detections -> Regions -> the predictor, on random detections.

``regions_from_detections`` runs in a subscription callback, so it must never raise and may
only return usable regions (finite boxes of positive size). The predictor's ``add_frame``
documents ValueError for input it refuses (duplicate track ids, a mask of the wrong shape);
anything else it returns must be a consistent scene graph.
"""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fuzz_settings import fuzz
from hypothesis import given, settings
from hypothesis import strategies as st

from sgclip_ros.core.backend import TorchBackend
from sgclip_ros.core.concepts import ConceptSet
from sgclip_ros.core.model import build_model
from sgclip_ros.core.model_config import load_model_config
from sgclip_ros.core.predictor import PredictorConfig, SGClipPredictor
from sgclip_ros.core.regions import scale_regions
from sgclip_ros.core.window import WindowConfig
from sgclip_ros.ros.detections import regions_from_detections

try:  # built by `make build`; the converter is duck-typed, so stand-ins serve without it
    import vision_msgs.msg as VISION_MSGS
except ImportError:
    VISION_MSGS = None

FUZZ = fuzz(200)
SLOW = settings(FUZZ, max_examples=100)  # each example runs the tiny model on CPU
TRACK_IDS = ["", "car7", "ped3", "car7 ", "7", "\u00e9t\u00e9"]  # few ids: duplicates happen
maybe_junk = st.integers(0, 4).map(bool)  # True 4 times in 5


@st.composite
def mostly(draw, good, junk):
    """``good`` 4 times in 5, else ``junk``."""
    return draw(good) if draw(maybe_junk) else draw(junk)


odd_floats = st.floats() | st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308])
coords = mostly(st.floats(-5, 45), odd_floats)  # frames are at most 40x40
sizes = mostly(st.floats(0.5, 40), odd_floats)
scores = mostly(st.floats(0, 1), st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 2.0]))
labels = st.sampled_from(["car", "person", "", "cup"]) | st.text(max_size=8)


@st.composite
def detection_arrays(draw, max_size: int = 6):
    """Random detections (boxes, ids, hypotheses) in the vision_msgs 4.x layout: a real
    Detection2DArray where vision_msgs is importable, else a duck-typed stand-in."""
    ns = SimpleNamespace
    dets = []
    for _ in range(draw(st.integers(0, max_size))):
        center = ns(position=ns(x=draw(coords), y=draw(coords)), theta=draw(odd_floats))
        bbox = ns(center=center, size_x=draw(sizes), size_y=draw(sizes))
        results = [
            ns(hypothesis=ns(class_id=draw(labels), score=draw(scores)))
            for _ in range(draw(st.integers(0, 3)))
        ]
        track = draw(st.sampled_from(TRACK_IDS) | st.text(max_size=6))
        dets.append(ns(id=track, bbox=bbox, results=results))
    return _as_message(ns(detections=dets)) if VISION_MSGS else ns(detections=dets)


def _as_message(duck):
    msg = VISION_MSGS.Detection2DArray()
    for d in duck.detections:
        det = VISION_MSGS.Detection2D(id=d.id)
        det.bbox.center.position.x = d.bbox.center.position.x
        det.bbox.center.position.y = d.bbox.center.position.y
        det.bbox.center.theta = d.bbox.center.theta
        det.bbox.size_x, det.bbox.size_y = d.bbox.size_x, d.bbox.size_y
        for r in d.results:
            hyp = VISION_MSGS.ObjectHypothesisWithPose()
            hyp.hypothesis.class_id = r.hypothesis.class_id
            hyp.hypothesis.score = r.hypothesis.score
            det.results.append(hyp)
        msg.detections.append(det)
    return msg


def _as_v3(msg) -> SimpleNamespace:
    """The same detections in the vision_msgs 3.x layout (center.x, results[i].id)."""
    ns = SimpleNamespace
    return ns(detections=[
        ns(
            id=d.id,
            bbox=ns(center=ns(x=d.bbox.center.position.x, y=d.bbox.center.position.y, theta=0.0),
                    size_x=d.bbox.size_x, size_y=d.bbox.size_y),
            results=[ns(id=r.hypothesis.class_id, score=r.hypothesis.score) for r in d.results],
        )
        for d in msg.detections
    ])


def _check_regions(regions, msg) -> None:
    assert isinstance(regions, list) and len(regions) <= len(msg.detections)
    for region in regions:
        box = region.box
        assert all(math.isfinite(v) for v in box.as_list()), box
        assert box.x2 > box.x1 and box.y2 > box.y1, box
        assert region.track_id is None or (isinstance(region.track_id, str) and region.track_id)
        assert region.label is None or isinstance(region.label, str)
        assert isinstance(region.confidence, float) and math.isfinite(region.confidence)
        assert region.mask is None


@FUZZ
@given(detection_arrays())
def test_detections_give_finite_positive_regions_and_never_raise(msg):
    regions = regions_from_detections(msg)
    _check_regions(regions, msg)
    usable = [
        d for d in msg.detections
        if all(math.isfinite(v) for v in (d.bbox.center.position.x, d.bbox.center.position.y))
        and 0 < d.bbox.size_x < math.inf and 0 < d.bbox.size_y < math.inf
    ]
    assert len(regions) <= len(usable)
    # the 3.x message layout gives exactly the same regions
    assert regions_from_detections(_as_v3(msg)) == regions


# ---- into the predictor ---------------------------------------------------------------------
CONCEPTS = ConceptSet(
    categories=("car", "person", "cup"), unary=("red", "moving"), binary=("left of", "on")
)


@pytest.fixture(scope="module")
def predictor():
    # One thread: these tiny forwards run 10x slower when torch's pool fights for 2 busy cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        backend = TorchBackend(build_model(load_model_config("sgclip-tiny"), seed=0), "tiny")
        config = PredictorConfig(window=WindowConfig(size=3), max_objects=4)
        yield SGClipPredictor(backend, CONCEPTS, config)
    finally:
        torch.set_num_threads(threads)


@st.composite
def masks(draw, height: int, width: int):
    """None, or a random mask: mostly the frame's shape, sometimes another shape or dtype."""
    kind = draw(st.sampled_from(["none", "none", "frame", "frame", "odd"]))
    if kind == "none":
        return None
    seed = draw(st.integers(0, 2**32 - 1))
    shape = (height, width)
    if kind == "odd":
        shape = draw(st.sampled_from([
            (height + 1, width), (height, max(width - 1, 0)), (width, height), (height, width, 1),
            (0, 0), (height * width,),
        ]))
    dtype = draw(st.sampled_from([bool, np.uint8, np.float32]))
    return (np.random.default_rng(seed).random(shape) < 0.5).astype(dtype)


@st.composite
def frames(draw):
    """1-2 frames of one camera: an image, regions from random detections, random masks."""
    height, width = draw(mostly(st.integers(8, 40), st.integers(1, 8))), draw(st.integers(1, 40))
    out = []
    for _ in range(draw(st.integers(1, 2))):
        seed = draw(st.integers(0, 2**32 - 1))
        image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
        msg = draw(detection_arrays(max_size=5))
        regions = regions_from_detections(msg)
        if draw(st.booleans()):  # a detector at another resolution (detection_image_size)
            regions = scale_regions(regions, draw(st.floats(0.1, 4)), draw(st.floats(0.1, 4)))
        regions = [dataclasses.replace(r, mask=draw(masks(height, width))) for r in regions]
        out.append((image, regions))
    return out


def _expected_error(regions, height: int, width: int) -> bool:
    """Whether add_frame may refuse these regions: mask shapes, or duplicate external ids."""
    bad_mask = any(r.mask is not None and r.mask.shape != (height, width) for r in regions)
    ids = [r.track_id for r in regions if r.track_id]
    return bad_mask or len(set(ids)) < len(ids)


@SLOW
@given(stream=frames())
def test_detections_through_the_predictor_give_a_graph_or_value_error(predictor, stream):
    predictor.reset("cam")
    given_ids: set[str] | None = set()  # None once the built-in tracker named some objects
    for t, (image, regions) in enumerate(stream):
        height, width = image.shape[:2]
        try:
            graph = predictor.add_frame("cam", image, (t + 1) * 100_000_000, regions, "optical")
        except ValueError as exc:
            assert _expected_error(regions, height, width), exc
            continue
        if regions and all(r.track_id for r in regions) and given_ids is not None:
            given_ids |= {r.track_id for r in regions}
        else:
            given_ids = None
        if graph is None:
            continue
        assert graph.camera == "cam" and graph.stamp_ns == (t + 1) * 100_000_000
        assert json.loads(graph.to_json(), parse_constant=_no_constants)  # strict JSON
        ids = [o.id for o in graph.objects]
        assert len(ids) == len(set(ids)) and len(ids) <= 4 * len(graph.frame_stamps_ns)
        if given_ids is not None:
            assert set(ids) <= given_ids
        for obj in graph.objects:
            assert obj.label in CONCEPTS.categories and 0 <= obj.score <= 1
            for ob in obj.observations:
                assert 0 <= ob.box.x1 < ob.box.x2 <= width and 0 <= ob.box.y1 < ob.box.y2 <= height
                assert math.isfinite(ob.confidence)
        for fact in graph.attributes:
            assert fact.attribute in CONCEPTS.unary and 0 <= fact.score <= 1
            assert fact.object_id in ids
        for fact in graph.relations:
            assert fact.predicate in CONCEPTS.binary and 0 <= fact.score <= 1
            assert {fact.subject_id, fact.object_id} <= set(ids)


def _no_constants(name: str):
    raise AssertionError(f"the scene graph JSON holds {name}")
