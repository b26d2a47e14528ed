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


def sample_scene_graph(n_frames: int = 4, seq: int = 0, positions: bool = False) -> SceneGraph:
    """A two-object graph ("red circle left of blue square") over ``n_frames`` frames.

    ``positions``: as seen by an RGB-D camera (3D fields and a metric relation filled)."""
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
    graph = SceneGraph(
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
    if positions:
        _add_positions(graph, frames)
    return graph


def _add_positions(graph: SceneGraph, frames: list[int]) -> None:
    """The circle 1.5 m ahead moving right at 0.25 m/s; the square to its right, drifting left."""
    for obj, x0, speed in ((graph.objects[0], -0.25, 0.25), (graph.objects[1], 0.5, -0.125)):
        for ob in obj.observations:
            x = x0 + speed * ob.frame_index * _PERIOD_NS * 1e-9
            ob.position = (x, 0.125, 1.5)
            ob.extent_min, ob.extent_max = (x - 0.0625, 0.0625, 1.4375), (x + 0.0625, 0.25, 1.5)
            ob.depth_confidence = 0.875
        obj.position, obj.velocity = obj.observations[-1].position, (speed, -0.5, 0.25)
    graph.relations.append(
        RelationFact("1", "3d left of", "2", 0.984375, 0, len(frames) - 1, frames,
                     [0.984375] * len(frames))
    )
