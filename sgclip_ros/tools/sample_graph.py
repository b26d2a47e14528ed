"""A fully filled example SceneGraph: every field set, values exact in float32.

Used by the foundation demo and by the message round-trip tests, which need a graph in which
every field differs from its default so that a dropped field is noticed.
"""

from __future__ import annotations

from sgclip_ros.core.scene_graph import (
    AttributeFact,
    Box,
    LabelProb,
    ObjectNode,
    Observation,
    RelationFact,
    SceneGraph,
)

_START_NS = 1_700_000_000_250_000_000
_PERIOD_NS = 125_000_000  # 8 Hz


def sample_scene_graph(n_frames: int = 4, seq: int = 0) -> SceneGraph:
    """A two-object graph ("red circle left of blue square") over ``n_frames`` frames."""
    stamps = [_START_NS + (seq + i) * _PERIOD_NS for i in range(n_frames)]
    circle = ObjectNode(
        id="1",
        label="circle",
        score=0.875,
        labels=[LabelProb("circle", 0.875), LabelProb("star", 0.0625)],
        detector_label="blob",
        observations=[
            Observation(i, Box(10.0 + 4 * i, 20.0, 50.0 + 4 * i, 60.0), 0.75)
            for i in range(n_frames)
        ],
    )
    square = ObjectNode(
        id="2",
        label="square",
        score=0.75,
        labels=[LabelProb("square", 0.75), LabelProb("triangle", 0.125)],
        detector_label="blob",
        observations=[Observation(i, Box(120.0, 30.0, 170.0, 80.0), 1.0) for i in range(n_frames)],
    )
    frames = list(range(n_frames))
    return SceneGraph(
        stamp_ns=stamps[-1],
        frame_id="camera_color_optical_frame",
        camera="/camera/image_raw",
        concepts_id="0123456789abcdef",
        frame_stamps_ns=stamps,
        objects=[circle, square],
        attributes=[
            AttributeFact("1", "red", 0.9375, 0, n_frames - 1, frames, [0.9375] * n_frames),
            AttributeFact(
                "2", "blue", 0.8125, 1, n_frames - 1, frames, [0.25] + [0.8125] * (n_frames - 1)
            ),
        ],
        relations=[
            RelationFact(
                "1", "left of", "2", 0.96875, 0, n_frames - 1, frames, [0.96875] * n_frames
            ),
        ],
        inference_ms=12.5,
        backend="sample",
    )
