"""What the perception node reports about itself, and the OK/WARN/ERROR rule (ROS-free).

``sgclip_ros.ros.diagnostics`` turns a PerceptionStatus into a DiagnosticArray; the rule that
decides the level lives here so it is tested without messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum

from sgclip_ros.core.domain import DomainCheck
from sgclip_ros.core.input_checks import EXPECTED_REASONS, drops_by_reason


class Level(IntEnum):
    """Same values as diagnostic_msgs/DiagnosticStatus levels."""

    OK = 0
    WARN = 1
    ERROR = 2


@dataclass
class CameraStatus:
    """One camera: input rate, work done and frames dropped (total and in the last period)."""

    topic: str
    input_hz: float = 0.0
    frames_received: int = 0
    frames_processed: int = 0
    graphs_published: int = 0
    drops: dict[str, int] = field(default_factory=dict)  # reason -> count since start
    period_drops: dict[str, int] = field(default_factory=dict)  # reason -> count, last period
    frame_id: str = ""
    # With a depth topic: frames processed with depth, and depth problems by reason (the
    # frame itself was processed without positions; these are not drops).
    has_depth: bool = False
    depth_paired: int = 0
    depth_problems: dict[str, int] = field(default_factory=dict)


@dataclass
class PerceptionStatus:
    """Everything /diagnostics shows for the node; latencies are NaN until the first graph."""

    node_name: str
    backend: str = ""
    device: str = ""
    model_id: str = ""
    concepts_id: str = ""
    cameras: list[CameraStatus] = field(default_factory=list)
    latency_p50_ms: float = math.nan
    latency_p99_ms: float = math.nan
    latency_mean_ms: float = math.nan
    untrained: bool = False  # a randomly initialised model: graphs are structurally right only
    fallback_reasons: list[str] = field(default_factory=list)  # e.g. "tensorrt: not importable"
    error: str = ""  # an unrecoverable error; makes the level ERROR
    pending: int = 0  # frames waiting for inference now (at most one per camera)
    max_pending: int = 0  # the most ever waiting at once
    model_p50_ms: float = math.nan  # predictor time per graph (encode new crops + score)
    worker_state: str = ""  # "running", "dead: <why>", "not stopped" ("" when not active)
    worker_restarts: int = 0
    worker_errors: int = 0  # exceptions caught in the inference loop (counted, not fatal)
    last_worker_error: str = ""
    stalled_s: float = 0.0  # > 0: seconds without a graph while frames kept arriving
    pairs_capped: int = 0  # object pairs not encoded because of max_crops_per_frame
    detections_unmatched: int = 0  # detection sets whose frame was gone
    concept_changes: dict[str, int] = field(default_factory=dict)  # requested, applied, ...
    # When image callbacks ran after their frame's stamp, over the last reporting period.
    callback_p99_ms: float = math.nan
    callback_max_ms: float = math.nan
    # The active concept words against the model's declared domain (None: no model yet).
    domain: DomainCheck | None = None

    @property
    def frames_processed(self) -> int:
        return sum(c.frames_processed for c in self.cameras)

    @property
    def graphs_published(self) -> int:
        return sum(c.graphs_published for c in self.cameras)

    def drops(self) -> dict[str, int]:
        """reason -> count since start, over all cameras."""
        return _sum_counts(c.drops for c in self.cameras)

    def period_drops(self) -> dict[str, int]:
        """reason -> count in the last reporting period, over all cameras."""
        return _sum_counts(c.period_drops for c in self.cameras)


def _sum_counts(dicts) -> dict[str, int]:
    out: dict[str, int] = {}
    for counts in dicts:
        for reason, n in counts.items():
            out[reason] = out.get(reason, 0) + n
    return out


def drop_message(drops: dict[str, int], top: int = 3) -> str:
    """'dropped 53 frames: bad_size x50, stale_stamp x3' (largest first), or '' for no drops."""
    items = sorted(((r, n) for r, n in drops.items() if n > 0), key=lambda rn: (-rn[1], rn[0]))
    if not items:
        return ""
    total = sum(n for _, n in items)
    shown = ", ".join(f"{reason} x{n}" for reason, n in items[:top])
    more = f" (+{len(items) - top} more reasons)" if len(items) > top else ""
    return f"dropped {total} frame{'s' if total != 1 else ''}: {shown}{more}"


def _faults(drops: dict[str, int]) -> dict[str, int]:
    # Drops the latest-frame policy causes on purpose are reported, not warned about.
    return {r: n for r, n in drops.items() if n > 0 and r not in EXPECTED_REASONS}


def camera_level(camera: CameraStatus) -> tuple[Level, str]:
    """WARN when the camera dropped frames for a fault in the last period, else OK."""
    message = drop_message(_faults(camera.period_drops))
    if message:
        return Level.WARN, message
    return Level.OK, f"ok: {camera.input_hz:.1f} Hz in, {camera.graphs_published} graphs"


def node_level(status: PerceptionStatus) -> tuple[Level, str]:
    """ERROR without a backend/model or with an error set; WARN for drops, an untrained model,
    or concept words outside a closed-domain model's vocabulary."""
    errors = []
    if not status.backend:
        errors.append("no inference backend loaded")
    if not status.model_id:
        errors.append("no model loaded")
    if status.error:
        errors.append(status.error)
    if status.worker_state and status.worker_state != "running":
        errors.append(f"inference thread {status.worker_state}")
    if status.stalled_s > 0:
        errors.append(f"no scene graph for {status.stalled_s:.1f} s while frames arrive")
    if errors:
        return Level.ERROR, "; ".join(errors)
    warnings = []
    if status.untrained:
        warnings.append("untrained model in use: labels and relations are meaningless")
    if status.domain is not None and status.domain.warning:
        warnings.append(status.domain.warning)
    dropped = drop_message(_faults(status.period_drops()))
    if dropped:
        warnings.append(dropped)
    if warnings:
        return Level.WARN, "; ".join(warnings)
    return Level.OK, (
        f"ok: {len(status.cameras)} camera(s), {status.backend} on {status.device or 'cpu'}"
    )


# A worker is stalled after this many expected graph periods without one (and at least
# STALL_MIN_S), while frames keep arriving.
STALL_PERIODS = 10
STALL_MIN_S = 2.0


def stalled_for(since_graph_s: float, input_hz: float, stride: int, model_s: float) -> float:
    """Seconds the worker has been stalled (0.0 when it is not): no graph for STALL_PERIODS
    expected periods while frames arrive. The expected period is the slower of the input (a
    graph every ``stride`` frames) and the model."""
    if input_hz <= 0:
        return 0.0
    model_s = model_s if math.isfinite(model_s) else 0.0
    limit = max(STALL_MIN_S, STALL_PERIODS * max(stride / input_hz, model_s))
    return since_graph_s if since_graph_s > limit else 0.0


def cameras_from_meters(
    topics: list[str],
    drops_total: dict[tuple[str, str], int],
    drops_period: dict[tuple[str, str], int],
    rates: dict[str, float],
    processed: dict[str, int] | None = None,
    published: dict[str, int] | None = None,
    received: dict[str, int] | None = None,
) -> list[CameraStatus]:
    """CameraStatus per topic from DropCounter.snapshot()/period() and RateMeter.rates()."""
    processed, published, received = processed or {}, published or {}, received or {}
    return [
        CameraStatus(
            topic=topic,
            input_hz=rates.get(topic, 0.0),
            frames_received=received.get(topic, 0),
            frames_processed=processed.get(topic, 0),
            graphs_published=published.get(topic, 0),
            drops=drops_by_reason(drops_total, topic),
            period_drops=drops_by_reason(drops_period, topic),
        )
        for topic in topics
    ]
