"""Parameter values -> core configuration, and node state -> diagnostics status (no rclpy)."""

from __future__ import annotations

import math
import time

from sgclip_ros.core.domain import DomainCheck, ModelDomain, check_domain, read_domain
from sgclip_ros.core.graph_builder import GraphSettings
from sgclip_ros.core.health import stalled_for
from sgclip_ros.core.predictor import PredictorConfig
from sgclip_ros.core.window import WindowConfig
from sgclip_ros.ros.inference_worker import WorkerSettings


def window_config(values: dict) -> WindowConfig:
    """WindowConfig from parameter values (raises ValueError naming a bad combination)."""
    return WindowConfig(
        size=int(values["window_size"]),
        stride=int(values["window_stride"]),
        min_frames=1,
        max_age_s=float(values["window_max_age_s"]),
    )


def graph_settings(values: dict) -> GraphSettings:
    return GraphSettings(
        attribute_threshold=float(values["attribute_threshold"]),
        relation_threshold=float(values["relation_threshold"]),
        top_k_labels=int(values["top_k_labels"]),
    )


def worker_settings(values: dict) -> WorkerSettings:
    """The worker's detection settings from parameter values."""
    width, height = (int(v) for v in values["detection_image_size"])
    return WorkerSettings(
        detection_wait_s=float(values["detection_wait_s"]),
        detection_stamp_tolerance_s=float(values["detection_stamp_tolerance_s"]),
        detection_image_size=(width, height),
        depth_stamp_tolerance_s=float(values["depth_stamp_tolerance_s"]),
        depth_wait_s=float(values["depth_wait_s"]),
    )


def build_predictor_config(node) -> PredictorConfig:
    """The predictor configuration from a node's current parameters."""
    names = (
        "window_size",
        "window_stride",
        "window_max_age_s",
        "attribute_threshold",
        "relation_threshold",
        "top_k_labels",
    )
    values = {name: node.p(name) for name in names}
    return PredictorConfig(
        window=window_config(values),
        graph=graph_settings(values),
        max_objects=int(node.p("max_objects")),
        max_crops_per_frame=int(node.p("max_crops_per_frame")),
        preprocess=node.p("preprocess"),
    )


def declared_domain(root: str, model_dir: str, untrained: bool) -> tuple[str, ModelDomain | None]:
    """(name shown in messages, declared domain or None) of the model the node opened.

    Called after load_backend verified the directory against its manifest.
    """
    from sgclip_ros.core.model_store import resolve_in_root

    if untrained:
        return model_dir, None
    directory = resolve_in_root(root, model_dir)
    return directory.name or str(directory), read_domain(directory)


def domain_check(node) -> DomainCheck | None:
    """The node's active concept lists against its model's domain (None before configure)."""
    if node.predictor is None or not node.model_name:
        return None
    return check_domain(node.model_name, node.model_domain, node.predictor.concepts)


def log_domain(node, opening: bool) -> None:
    """On opening a closed-domain model: how to get real weights (info); whenever the active
    lists hold words the model never saw: a warning naming them."""
    check = domain_check(node)
    if check is None:
        return
    if opening and check.closed and not check.warning:
        node.get_logger().info(check.notice())
    if check.warning:
        node.get_logger().warning(check.warning)


def status_snapshot(node):
    """A PerceptionStatus of the node's current state (called on the diagnostics timer)."""
    from sgclip_ros.core.health import PerceptionStatus, cameras_from_meters

    now = node._now_ns()
    topics = node.camera_names()
    worker, choice = node.worker, node.choice
    status = PerceptionStatus(node_name=node.get_fully_qualified_name(), error=node.error)
    status.cameras = cameras_from_meters(
        topics,
        node.drops.snapshot(),
        node.drops.period(),
        node.rates.rates(now),
        processed=worker.processed if worker else {},
        published=worker.published if worker else {},
        received=dict(node.received),
    )
    if choice is not None:
        backend = choice.backend
        status.backend, status.device, status.model_id = (
            backend.name,
            backend.device,
            backend.model_id,
        )
        status.untrained, status.fallback_reasons = choice.untrained, list(choice.fallbacks)
    if node.predictor is not None:
        status.concepts_id = node.predictor.concepts.concepts_id
        status.domain = domain_check(node)
    if worker is not None and worker.depth is not None:
        _depth_health(status, worker.depth)
    if worker is not None:
        status.pending, status.max_pending = worker.pending, worker.max_pending
        _worker_health(status, worker, node.p("window_stride"))
    if node.predictor is not None:
        status.pairs_capped = node.predictor.stats.encode.pairs_capped
    status.concept_changes = vars(node.concept_changes.counts).copy()
    # Per reporting period: a stall shows in the period it happened, not for minutes after.
    status.callback_p99_ms, status.callback_max_ms = node.callback_ms.p99(), node.callback_ms.max()
    node.callback_ms.clear()
    if worker is not None and len(worker.latency):
        status.model_p50_ms = worker.model_ms.p50()
        status.latency_p50_ms = worker.latency.p50()
        status.latency_p99_ms = worker.latency.p99()
        status.latency_mean_ms = worker.latency.mean()
    return status


def _depth_health(status, depth) -> None:
    for camera in status.cameras:
        if depth.has(camera.topic):
            camera.has_depth, camera.depth_paired = True, depth.paired.get(camera.topic, 0)
            camera.depth_problems = dict(depth.problems.get(camera.topic, {}))


def _worker_health(status, worker, stride: int) -> None:
    health = worker.health
    if health.not_stopped:
        status.worker_state = "not stopped"
    elif worker.running:
        status.worker_state = "running" if worker.alive else f"dead: {health.died or 'ended'}"
    status.worker_restarts, status.worker_errors = health.restarts, health.errors
    status.last_worker_error = health.last_error
    status.detections_unmatched = sum(worker.pairing.stats.detections_unmatched.values())
    if worker.running:
        input_hz = max((c.input_hz for c in status.cameras), default=0.0)
        since = (time.monotonic_ns() - health.last_graph_mono_ns) / 1e9
        model_s = worker.model_ms.p50() / 1e3 if len(worker.model_ms) else math.nan
        status.stalled_s = stalled_for(since, input_hz, int(stride), model_s)


def _check_detections_available(detection_topics: list[str]) -> None:
    if any(detection_topics):
        try:
            import vision_msgs.msg  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(
                "detections topics are set but vision_msgs is not installed "
                "(apt install ros-$ROS_DISTRO-vision-msgs), or clear `detections`"
            ) from exc


def _free_device_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
