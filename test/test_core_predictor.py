"""The streaming predictor: encode-once caching, concept swaps, batching, streams (tiny model)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from sgclip_ros.core.backend import EncoderBackend, TorchBackend
from sgclip_ros.core.concepts import ConceptSet
from sgclip_ros.core.frame_encoder import FrameInput
from sgclip_ros.core.model import build_model
from sgclip_ros.core.model_config import load_model_config
from sgclip_ros.core.predictor import PredictorConfig, SGClipPredictor
from sgclip_ros.core.regions import Region
from sgclip_ros.core.scene_graph import Box
from sgclip_ros.core.window import WindowConfig

SHAPES = ConceptSet(
    categories=("circle", "square", "triangle", "star"),
    unary=("red", "green", "blue", "yellow"),
    binary=("left of", "right of", "above", "below", "touching"),
)
PERIOD = 100_000_000


class CountingBackend(EncoderBackend):
    """Delegates to a real backend and counts every crop and text it encodes, per tower."""

    def __init__(self, inner: EncoderBackend):
        super().__init__(inner.config, inner.model_id)
        self.inner, self.name = inner, "counting"
        self.image_rows: dict[int, int] = {}
        self.image_calls = 0
        self.text_calls = 0

    def encode_images(self, tower, pixels):
        self.image_calls += 1
        self.image_rows[tower] = self.image_rows.get(tower, 0) + len(pixels)
        return self.inner.encode_images(tower, pixels)

    def encode_texts(self, tower, tokens):
        self.text_calls += 1
        return self.inner.encode_texts(tower, tokens)

    def logit_scale(self, tower):
        return self.inner.logit_scale(tower)


def _backend(towers: int = 3) -> CountingBackend:
    config = dataclasses.replace(load_model_config("sgclip-tiny"), towers=towers)
    return CountingBackend(TorchBackend(build_model(config, seed=0), f"tiny-{towers}"))


def _frame(t: int, n: int = 3) -> tuple[np.ndarray, list[Region]]:
    image = np.full((96, 128, 3), 240, np.uint8)
    regions = []
    for k in range(n):
        x, y = 10 + 35 * k + 2 * t, 20 + 10 * k
        cv2.rectangle(image, (x, y), (x + 24, y + 24), (200 * (k == 0), 200 * (k == 1), 200), -1)
        regions.append(Region(Box(x, y, x + 25, y + 25), track_id=f"t{k}"))
    return image, regions


def _feed(predictor, n_frames, camera="cam", start=0, n=3):
    graphs = []
    for t in range(start, start + n_frames):
        image, regions = _frame(t, n)
        graphs.append(predictor.add_frame(camera, image, (t + 1) * PERIOD, regions, "optical"))
    return graphs


def test_each_frame_is_encoded_exactly_once_while_in_the_window():
    backend = _backend()
    predictor = SGClipPredictor(backend, SHAPES, PredictorConfig(window=WindowConfig(size=4)))
    graphs = _feed(predictor, 10)
    assert all(g is not None for g in graphs)
    assert [len(g.frame_stamps_ns) for g in graphs] == [1, 2, 3, 4, 4, 4, 4, 4, 4, 4]
    # 3 objects through the category and unary towers, 6 ordered pairs through the binary one.
    assert backend.image_rows == {0: 30, 1: 30, 2: 60}
    assert backend.image_calls == 30  # one forward per tower per frame
    assert predictor.stats.encode.frames == 10
    last = graphs[-1]
    assert [o.id for o in last.objects] == ["t0", "t1", "t2"]
    assert all(len(o.observations) == 4 for o in last.objects)
    assert last.stamp_ns == 10 * PERIOD and last.frame_id == "optical" and last.camera == "cam"


def test_a_shared_tower_encodes_objects_and_pairs_in_one_forward():
    backend = _backend(towers=1)
    predictor = SGClipPredictor(backend, SHAPES)
    _feed(predictor, 3)
    assert backend.image_rows == {0: 3 * (3 + 6)}
    assert backend.image_calls == 3


def test_a_concept_change_costs_one_text_encode_per_list_and_no_image_encode():
    backend = _backend()
    predictor = SGClipPredictor(backend, SHAPES)
    assert backend.text_calls == 3
    _feed(predictor, 3)
    before_images = dict(backend.image_rows)
    kitchen = SHAPES.with_lists(
        categories=["cup", "plate"], unary=["clean", "dirty"], binary=["on", "next to"]
    )
    assert predictor.set_concepts(kitchen) == kitchen.concepts_id
    assert backend.text_calls == 6 and backend.image_rows == before_images
    graph = _feed(predictor, 1, start=3)[0]
    assert graph.concepts_id == kitchen.concepts_id
    assert {o.label for o in graph.objects} <= {"cup", "plate"}
    assert {a.attribute for a in graph.attributes} <= {"clean", "dirty"}
    # Going back to known lists hits the cache: no text encode at all.
    predictor.set_concepts(SHAPES)
    assert backend.text_calls == 6


def test_two_cameras_share_one_forward_per_tower():
    backend = _backend()
    predictor = SGClipPredictor(backend, SHAPES)
    for t in range(3):
        (a, ra), (b, rb) = _frame(t, 3), _frame(t + 5, 2)
        graphs = predictor.add_frames(
            [
                FrameInput("left", a, (t + 1) * PERIOD, ra, "l"),
                FrameInput("right", b, (t + 1) * PERIOD, rb, "r"),
            ]
        )
        assert [g.camera for g in graphs] == ["left", "right"]
        assert [len(g.objects) for g in graphs] == [3, 2]
    assert backend.image_calls == 3 * 3
    assert backend.image_rows == {0: 3 * 5, 1: 3 * 5, 2: 3 * (6 + 2)}


def test_stamps_must_increase_per_camera_until_reset():
    predictor = SGClipPredictor(_backend(), SHAPES)
    _feed(predictor, 2)
    image, regions = _frame(0)
    with pytest.raises(ValueError, match="not after the previous"):
        predictor.add_frame("cam", image, PERIOD, regions)
    predictor.add_frame("other", image, PERIOD, regions)  # other streams are independent
    predictor.reset("cam")
    assert predictor.add_frame("cam", image, PERIOD, regions) is not None


def test_stride_and_max_age_shape_the_windows():
    config = PredictorConfig(window=WindowConfig(size=4, stride=3, min_frames=2, max_age_s=0.25))
    predictor = SGClipPredictor(_backend(), SHAPES, config)
    graphs = _feed(predictor, 9)
    emitted = [i for i, g in enumerate(graphs) if g is not None]
    assert emitted == [2, 5, 8]
    # 0.25 s at 10 Hz keeps the newest frame and the two before it.
    assert all(len(graphs[i].frame_stamps_ns) == 3 for i in emitted)


def test_top_k_pairs_limits_pair_crops():
    backend = _backend()
    predictor = SGClipPredictor(backend, dataclasses.replace(SHAPES, top_k_pairs=2))
    _feed(predictor, 2)
    assert backend.image_rows[2] == 2 * 2


def test_builtin_proposer_and_tracker_keep_ids_stable():
    predictor = SGClipPredictor(_backend(), SHAPES)
    ids = []
    for t in range(6):
        image, _ = _frame(t)
        graph = predictor.add_frame("cam", image, (t + 1) * PERIOD)
        ids.append([o.id for o in graph.objects])
    assert len(ids[-1]) == 3 and all(i == ids[-1] for i in ids)
    boxes = [o.observations[-1].box for o in graph.objects]
    assert sorted(round(b.x1) for b in boxes) == [20, 55, 90]


def test_bad_images_are_rejected_with_a_clear_error():
    predictor = SGClipPredictor(_backend(), SHAPES)
    with pytest.raises(ValueError, match="uint8"):
        predictor.add_frame("cam", np.zeros((8, 8, 3), np.float32), PERIOD)
    with pytest.raises(ValueError, match="HxWx3"):
        predictor.add_frame("cam", np.zeros((8, 8), np.uint8), PERIOD)
