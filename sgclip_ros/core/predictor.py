"""The streaming SGClip predictor: fed one frame at a time per stream, emits SceneGraphs.

It owns the preprocessing settings, the cached text embeddings and per-stream state (window,
tracker). Each frame's object and pair crops are encoded once, batched per tower, and kept in
the window; every graph is scored from those cached embeddings.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from sgclip_ros.core import scoring
from sgclip_ros.core.backend import EncoderBackend
from sgclip_ros.core.concepts import ConceptSet
from sgclip_ros.core.frame_encoder import (
    EncodeStats,
    FrameEncoder,
    FrameInput,
    check_max_crops,
)
from sgclip_ros.core.graph_builder import ConceptTexts, GraphSettings, RoleText, build_scene_graph
from sgclip_ros.core.model_config import tower_index
from sgclip_ros.core.proposer import ColorBlobProposer
from sgclip_ros.core.regions import Region
from sgclip_ros.core.scene_graph import SceneGraph
from sgclip_ros.core.text_cache import TextEmbeddingCache
from sgclip_ros.core.tracker import IoUTracker
from sgclip_ros.core.window import SlidingWindow, WindowConfig


@dataclass(frozen=True)
class PredictorConfig:
    window: WindowConfig = WindowConfig()
    graph: GraphSettings = GraphSettings()
    max_objects: int = 16
    tracker_iou: float = 0.3
    tracker_max_missed: int = 5
    # "exact": PIL-exact CPU resize (reference pixels); "fast": approximate resize on the
    # backend device (see sgclip_ros.core.preprocess_fast and docs/engines.md).
    preprocess: str = "exact"
    # Pair crops encoded per frame at most: beyond it only the most confident pairs are kept
    # (bounds time and memory; 16 objects, 240 pairs, fit under the default).
    max_crops_per_frame: int = 256

    def __post_init__(self) -> None:
        check_max_crops(self.max_crops_per_frame)


@dataclass
class StreamState:
    """Everything the predictor keeps for one camera."""

    window: SlidingWindow
    tracker: IoUTracker
    frame_id: str = ""
    last_stamp_ns: int | None = None
    frames_in: int = 0
    graphs_out: int = 0


@dataclass
class PredictorStats:
    encode: EncodeStats = field(default_factory=EncodeStats)
    text_encodes: int = 0


class SGClipPredictor:
    """Promptable streaming scene-graph predictor over any EncoderBackend."""

    def __init__(
        self,
        backend: EncoderBackend,
        concepts: ConceptSet,
        config: PredictorConfig = PredictorConfig(),
        proposer: ColorBlobProposer | None = None,
    ):
        self.backend = backend
        self.config = config
        self._text_cache = TextEmbeddingCache()
        self._encoder = FrameEncoder(
            backend,
            proposer or ColorBlobProposer(),
            config.max_objects,
            config.preprocess,
            max_crops_per_frame=config.max_crops_per_frame,
        )
        self._streams: dict[str, StreamState] = {}
        self._lock = threading.Lock()  # concept swaps may come from another thread
        self._texts = self._encode_concepts(concepts)

    # ---- concepts -------------------------------------------------------------------------
    @property
    def concepts(self) -> ConceptSet:
        return self._texts.concepts

    def set_concepts(self, concepts: ConceptSet) -> str:
        """Activate new concept lists (one text encode per new list); returns the concepts id."""
        texts = self._encode_concepts(concepts)
        with self._lock:
            self._texts = texts
        return concepts.concepts_id

    def _role_text(self, role: str, texts: list[str]) -> RoleText:
        tower = tower_index(role, self.backend.towers)
        emb = self._text_cache.get(self.backend, tower, texts)
        return RoleText(texts, emb, tower, self.backend.logit_scale(tower))

    def _encode_concepts(self, concepts: ConceptSet) -> ConceptTexts:
        unary, binary = scoring.unary_texts(concepts), scoring.binary_texts(concepts)
        return ConceptTexts(
            concepts=concepts,
            category=self._role_text("category", scoring.category_texts(concepts)),
            unary=self._role_text("unary", unary) if unary else None,
            binary=self._role_text("binary", binary) if binary else None,
        )

    # ---- streams --------------------------------------------------------------------------
    def stream(self, camera: str) -> StreamState:
        if camera not in self._streams:
            self._streams[camera] = StreamState(
                window=SlidingWindow(self.config.window),
                tracker=IoUTracker(self.config.tracker_iou, self.config.tracker_max_missed),
            )
        return self._streams[camera]

    def reset(self, camera: str | None = None) -> None:
        """Forget the window and tracks of one camera (or of all)."""
        for name in [camera] if camera is not None else list(self._streams):
            self._streams.pop(name, None)

    def set_window_config(self, window: WindowConfig) -> None:
        """Change window size/stride/age; streams keep the newest frames that still fit."""
        self.config = replace(self.config, window=window)
        for state in self._streams.values():
            state.window.resize(window)

    def set_graph_settings(self, graph: GraphSettings) -> None:
        """Change thresholds / top-k labels; applies to the next graph."""
        self.config = replace(self.config, graph=graph)

    def set_max_objects(self, max_objects: int) -> None:
        if max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {max_objects}")
        self.config = replace(self.config, max_objects=max_objects)
        self._encoder.max_objects = max_objects

    def set_max_crops_per_frame(self, max_crops_per_frame: int) -> None:
        """Change the pair-crop cap per frame; applies from the next frame."""
        check_max_crops(max_crops_per_frame)
        self.config = replace(self.config, max_crops_per_frame=max_crops_per_frame)
        self._encoder.max_crops_per_frame = max_crops_per_frame

    def set_depth_proposer(self, proposer) -> None:
        """Propose regions from depth (e.g. core.depth_proposer.DepthProposer) in frames that
        have depth and no regions; frames without depth keep the colour proposer."""
        self._encoder.depth_proposer = proposer

    @property
    def stats(self) -> PredictorStats:
        return PredictorStats(self._encoder.stats, self._text_cache.encodes)

    # ---- frames ---------------------------------------------------------------------------
    def add_frame(
        self,
        camera: str,
        image: np.ndarray,
        stamp_ns: int,
        regions: list[Region] | None = None,
        frame_id: str = "",
    ) -> SceneGraph | None:
        """Feed one RGB uint8 HxWx3 frame; returns a SceneGraph when a window is due."""
        return self.add_frames([FrameInput(camera, image, stamp_ns, regions, frame_id)])[0]

    def add_frames(self, inputs: list[FrameInput]) -> list[SceneGraph | None]:
        """Feed frames of several cameras at once; their crops share one forward per tower."""
        cameras = [i.camera for i in inputs]
        if len(set(cameras)) != len(cameras):
            raise ValueError("add_frames takes at most one frame per camera per call")
        for item in inputs:
            self._check_stamp(item)
        with self._lock:
            texts = self._texts
        start = time.perf_counter()
        trackers = [self.stream(i.camera).tracker for i in inputs]
        records = self._encoder.encode(inputs, trackers, texts)
        encode_ms = (time.perf_counter() - start) * 1e3 / max(len(inputs), 1)
        return [self._push(item, record, texts, encode_ms) for item, record in zip(inputs, records)]

    def _check_stamp(self, item: FrameInput) -> None:
        last = self.stream(item.camera).last_stamp_ns
        if last is not None and item.stamp_ns <= last:
            raise ValueError(
                f"camera {item.camera!r}: stamp {item.stamp_ns} ns is not after the previous "
                f"frame's {last} ns (call reset() after a clock jump)"
            )

    def _push(self, item: FrameInput, record, texts: ConceptTexts, encode_ms: float):
        state = self.stream(item.camera)
        state.last_stamp_ns = item.stamp_ns
        state.frames_in += 1
        state.frame_id = item.frame_id or state.frame_id
        if not state.window.push(record):
            return None
        start = time.perf_counter()
        graph = build_scene_graph(
            state.window.frames,
            texts,
            self.config.graph,
            camera=item.camera,
            frame_id=state.frame_id,
            backend=self.backend.name,
            inference_ms=0.0,
        )
        graph.inference_ms = encode_ms + (time.perf_counter() - start) * 1e3
        state.graphs_out += 1
        return graph
