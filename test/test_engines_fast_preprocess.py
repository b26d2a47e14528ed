"""The optional device-side fast preprocessing: same geometry, near-identical pixels."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.core import make_clip
from sgclip_ros.core.backend import TorchBackend
from sgclip_ros.core.concepts import load_concepts
from sgclip_ros.core.crops import object_crops, pair_crops
from sgclip_ros.core.frame_encoder import all_pairs
from sgclip_ros.core.graph_builder import GraphSettings
from sgclip_ros.core.model import build_model
from sgclip_ros.core.model_config import PreprocessConfig, load_model_config
from sgclip_ros.core.predictor import PredictorConfig, SGClipPredictor
from sgclip_ros.core.preprocess import preprocess_crops
from sgclip_ros.core.preprocess_fast import preprocess_crops_fast, source_window
from sgclip_ros.core.regions import Region
from sgclip_ros.core.scene_graph import Box


def _crops():
    frames, boxes = make_clip(2, 3, seed=5)
    crops = []
    for frame, frame_boxes in zip(frames, boxes):
        f, b = torch.from_numpy(frame), torch.tensor(frame_boxes)
        crops += object_crops(f, b) + pair_crops(f, b, None, all_pairs(len(frame_boxes)))
    return crops


def test_fast_pixels_are_within_a_few_levels_of_the_exact_ones():
    cfg = PreprocessConfig(image_size=224)
    crops = _crops()
    exact, fast = preprocess_crops(crops, cfg), preprocess_crops_fast(crops, cfg, "cpu")
    assert fast.shape == exact.shape == (len(crops), 3, 224, 224) and fast.dtype == torch.float32
    levels = ((exact - fast) * torch.tensor(cfg.std).view(1, 3, 1, 1) * 255).abs()
    # The bounds config/sgclip.yaml and docs/engines.md state (measured: max 7, mean 0.0016).
    assert float(levels.mean()) < 0.05 and float(levels.max()) <= 16


def test_very_long_crops_resample_only_their_kept_window():
    cfg = PreprocessConfig(image_size=32)
    assert source_window(4, 400, cfg) == (0, 4, 198, 202)
    crop = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (4, 400, 3), np.uint8))
    assert preprocess_crops_fast([crop], cfg).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="uint8"):
        preprocess_crops_fast([crop.float()], cfg)


def test_a_predictor_with_fast_preprocessing_gives_nearly_the_same_graph():
    backend = TorchBackend(build_model(load_model_config("sgclip-tiny"), seed=0), "tiny")
    concepts = load_concepts("config/concepts/shapes.yaml")
    settings = GraphSettings(attribute_threshold=0.0, relation_threshold=0.0)
    frames, boxes = make_clip(3, 3, width=200, height=160)
    graphs = {}
    for mode in ("exact", "fast"):
        predictor = SGClipPredictor(backend, concepts, PredictorConfig(graph=settings,
                                                                       preprocess=mode))
        for t, (frame, frame_boxes) in enumerate(zip(frames, boxes)):
            regions = [Region(Box(*map(float, b)), track_id=str(k))
                       for k, b in enumerate(frame_boxes)]
            graphs[mode] = predictor.add_frame("cam", frame, (t + 1) * 10**8, regions)
    exact = {(o.id, p.label): p.score for o in graphs["exact"].objects for p in o.labels}
    fast = {(o.id, p.label): p.score for o in graphs["fast"].objects for p in o.labels}
    assert set(exact) == set(fast) and max(abs(exact[k] - fast[k]) for k in exact) < 0.02
    with pytest.raises(ValueError, match="preprocess must be one of"):
        SGClipPredictor(backend, concepts, PredictorConfig(preprocess="turbo"))
