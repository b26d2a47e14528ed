"""PerceptionStatus -> diagnostic_msgs/DiagnosticArray (pure converter, no node).

One DiagnosticStatus for the node (backend, model, latency, totals) and one per camera (rate,
work, drops). Every figure is a KeyValue with a stable key, so monitors can plot it; each
reject reason has its own ``drops.<reason>`` key even when zero.
"""

from __future__ import annotations

import math

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from sgclip_ros.core.health import (
    CameraStatus,
    Level,
    PerceptionStatus,
    camera_level,
    node_level,
)
from sgclip_ros.core.input_checks import REJECT_REASONS
from sgclip_ros.ros.depth_input import DEPTH_PROBLEMS

_LEVEL_BYTES = {
    Level.OK: DiagnosticStatus.OK,
    Level.WARN: DiagnosticStatus.WARN,
    Level.ERROR: DiagnosticStatus.ERROR,
}
_NS = 1_000_000_000


def _stamp(stamp) -> Time:
    """Accept a builtin_interfaces/Time or integer nanoseconds."""
    if isinstance(stamp, int):
        if stamp < 0:
            raise ValueError(f"stamp must be non-negative, got {stamp} ns")
        return Time(sec=stamp // _NS, nanosec=stamp % _NS)
    return stamp


def _num(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _kv(key: str, value) -> KeyValue:
    return KeyValue(key=key, value=str(value))


def _drop_values(total: dict[str, int], period: dict[str, int]) -> list[KeyValue]:
    values = [
        _kv("drops_total", sum(total.values())),
        _kv("drops_last_period", sum(period.values())),
    ]
    values += [_kv(f"drops.{reason}", total.get(reason, 0)) for reason in REJECT_REASONS]
    return values


def _domain_values(status: PerceptionStatus) -> list[KeyValue]:
    """What the model was trained on, the active words it never saw, how to get real weights."""
    check = status.domain  # None before a model is configured: same keys, nothing known
    unknown = ", ".join(check.unknown) if check else ""
    return [
        _kv("model_name", (check.model if check else "") or "none"),
        _kv("model_domain", check.domain_name if check else "unknown"),
        _kv("domain_unknown_words", unknown or "none"),
        _kv("real_weights", (check.hint if check else "") or "n/a"),
    ]


def node_status_msg(status: PerceptionStatus) -> DiagnosticStatus:
    level, message = node_level(status)
    values = [
        _kv("backend", status.backend or "none"),
        _kv("device", status.device or "none"),
        _kv("model_id", status.model_id or "none"),
        _kv("concepts_id", status.concepts_id or "none"),
        _kv("untrained_model", str(status.untrained).lower()),
        *_domain_values(status),
        _kv("cameras", len(status.cameras)),
        _kv("frames_processed", status.frames_processed),
        _kv("graphs_published", status.graphs_published),
        _kv("latency_p50_ms", _num(status.latency_p50_ms)),
        _kv("latency_p99_ms", _num(status.latency_p99_ms)),
        _kv("latency_mean_ms", _num(status.latency_mean_ms)),
        _kv("model_p50_ms", _num(status.model_p50_ms)),
        _kv("pending", status.pending),
        _kv("max_pending", status.max_pending),
        _kv("callback_p99_ms", _num(status.callback_p99_ms)),
        _kv("callback_max_ms", _num(status.callback_max_ms)),
        _kv("worker", status.worker_state or "inactive"),
        _kv("worker_restarts", status.worker_restarts),
        _kv("worker_errors", status.worker_errors),
        _kv("last_worker_error", status.last_worker_error or "none"),
        _kv("pairs_capped", status.pairs_capped),
        _kv("detections_unmatched", status.detections_unmatched),
        *[_kv(f"concept_changes.{k}", n) for k, n in status.concept_changes.items()],
        _kv("fallback_reasons", "; ".join(status.fallback_reasons) or "none"),
        _kv("error", status.error or "none"),
    ]
    values += _drop_values(status.drops(), status.period_drops())
    return DiagnosticStatus(
        level=_LEVEL_BYTES[level],
        name=f"{status.node_name}: node",
        message=message,
        hardware_id=status.device,
        values=values,
    )


def camera_status_msg(status: PerceptionStatus, camera: CameraStatus) -> DiagnosticStatus:
    level, message = camera_level(camera)
    values = [
        _kv("topic", camera.topic),
        _kv("frame_id", camera.frame_id or "unknown"),
        _kv("input_hz", _num(camera.input_hz, 1)),
        _kv("frames_received", camera.frames_received),
        _kv("frames_processed", camera.frames_processed),
        _kv("graphs_published", camera.graphs_published),
    ]
    values += _drop_values(camera.drops, camera.period_drops)
    if camera.has_depth:
        values.append(_kv("depth_paired", camera.depth_paired))
        values += [_kv(f"depth.{r}", camera.depth_problems.get(r, 0)) for r in DEPTH_PROBLEMS]
    return DiagnosticStatus(
        level=_LEVEL_BYTES[level],
        name=f"{status.node_name}: camera {camera.topic}",
        message=message,
        hardware_id=status.device,
        values=values,
    )


def diagnostics_msg(status: PerceptionStatus, stamp) -> DiagnosticArray:
    """The node's status first, then one status per camera; ``stamp`` is Time or int ns."""
    array = DiagnosticArray()
    array.header.stamp = _stamp(stamp)
    array.status = [node_status_msg(status)] + [
        camera_status_msg(status, camera) for camera in status.cameras
    ]
    return array
