"""The perception node's live parameters: who applies each one (no rclpy here).

Every parameter ParamSpec marks live has exactly one group below, and `apply_live` applies a
whole `ros2 param set` or refuses it with a reason before anything changed. A test checks that
the groups cover exactly the live parameters, and one test per parameter shows its effect.
"""

from __future__ import annotations

from sgclip_ros.core.concepts import ConceptError, load_concepts
from sgclip_ros.core.input_checks import StampGuard
from sgclip_ros.nodes.perception_setup import graph_settings, window_config, worker_settings
from sgclip_ros.ros.params import SPECS, resolve_share_path

WINDOW = frozenset({"window_size", "window_stride", "window_max_age_s"})
GRAPH = frozenset({"attribute_threshold", "relation_threshold", "top_k_labels"})
DETECTION = frozenset(
    {
        "detection_wait_s",
        "detection_stamp_tolerance_s",
        "detection_image_size",
        "depth_stamp_tolerance_s",
        "depth_wait_s",
    }
)
STAMPS = frozenset({"max_stamp_age_s", "max_stamp_future_s"})
PREDICTOR = frozenset({"max_objects", "max_crops_per_frame"})
CONCEPTS = frozenset({"concepts_file"})
# Read from the parameter each time they are used (per frame or per published graph).
READ_WHEN_USED = frozenset({"max_pixels", "publish_annotated", "annotated_relations"})
# Switching one on creates its publishers; all are also read per published graph.
OUTPUTS = frozenset({"publish_detections_2d", "publish_detections_3d", "publish_markers"})
LIVE_GROUPS = (WINDOW, GRAPH, DETECTION, STAMPS, PREDICTOR, CONCEPTS, READ_WHEN_USED, OUTPUTS)
LIVE = frozenset().union(*LIVE_GROUPS)


class LiveChangeRefused(ValueError):
    """A live parameter set refused as a whole; the message is the reason rclpy reports."""


def apply_live(node, values: dict) -> None:
    """Check, then apply, the live parameters in ``values`` (name -> new value) on ``node``.

    Raises LiveChangeRefused (nothing applied) when a value or a combination is invalid."""
    unknown = [name for name in values if name in SPECS and SPECS[name].live and name not in LIVE]
    if unknown:  # a live spec without an applier would claim an effect it does not have
        raise LiveChangeRefused(f"no live handler for {', '.join(unknown)}")
    current = {name: node.p(name) for name in LIVE}
    current.update(values)
    try:
        window = window_config(current)
        graph = graph_settings(current)
        settings = worker_settings(current)
        StampGuard(current["max_stamp_age_s"], current["max_stamp_future_s"])
        concepts = _concepts(values)
    except (ValueError, ConceptError) as exc:
        raise LiveChangeRefused(str(exc)) from exc
    changed = values.keys()
    if WINDOW & changed:
        node.queue_predictor_change(lambda pred: pred.set_window_config(window))
    if GRAPH & changed:
        node.queue_predictor_change(lambda pred: pred.set_graph_settings(graph))
    if "max_objects" in changed:
        n = int(current["max_objects"])
        node.queue_predictor_change(lambda pred: pred.set_max_objects(n))
    if "max_crops_per_frame" in changed:
        cap = int(current["max_crops_per_frame"])
        node.queue_predictor_change(lambda pred: pred.set_max_crops_per_frame(cap))
    if DETECTION & changed and node.worker is not None:
        node.worker.set_settings(settings)
    if STAMPS & changed:
        for guard in node.stamp_guards():
            guard.set_limits(current["max_stamp_age_s"], current["max_stamp_future_s"])
    if concepts is not None:
        node.request_concepts(concepts, str(values["concepts_file"]))
    outputs = getattr(node, "outputs", None)
    for name in sorted(OUTPUTS & changed):
        if values[name] and outputs is not None:
            outputs.enable(name)


def _concepts(values: dict):
    """The concept lists of a new concepts_file (read and checked now; encoded later)."""
    if "concepts_file" not in values:
        return None
    return load_concepts(resolve_share_path(values["concepts_file"]))
