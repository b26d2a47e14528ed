"""Soak: a real perception node fed 30 Hz for minutes, with a lagging detector, concept changes
and parameter changes on a schedule. Memory must stay flat and every frame be accounted for.

    python -m bench.soak --json PATH [--minutes N] [--check]

The node runs in its own process (the shipped shapes_default model unless --model-dir) with two
cameras: `/soak/a/image_raw` (built-in proposer) and `/soak/b/image_raw`, whose detections come
3 frame periods late (as from a detector taking 100 ms). Every 10 s a set_concepts call switches
between concept lists; every 7 s a live parameter changes (both faster in runs under 140 s, so
that every list and setting comes at least twice). RSS of the node process is sampled every 2 s;
its slope is fitted after the warm-up: the first 20% of the run, and at least until every list
and setting has been applied once and the burst below is over (rss_fit_from_s). The first run
with the largest window or crop budget allocates once; a leak grows again on the second pass.

After the first 20% of the run, 20 set_concepts calls go back to back (each when the previous
answered): the image callbacks' latency in those periods is reported against the periods before
(concept_burst_callback_max_ms, baseline_callback_max_ms, concept_burst_callback_ratio).

Keys: rss_slope_mb_per_min, frames_in, graphs_out, drops_by_reason, worker_restarts,
max_callback_ms (the largest per-period max of the node's image callbacks after the frame
stamp), plus frames_received, frames_processed, pending, unaccounted (received -
processed - dropped - pending, per camera: must be 0), lost_in_transport (sent - received).
Goal (--check exits 1 otherwise): rss_slope_mb_per_min < 1 and unaccounted == 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import yaml

from sgclip_ros.ros.params import load_defaults
from sgclip_ros.tools.procs import ros_env, start_module, stop

REPO = Path(__file__).resolve().parent.parent
CAM_A, CAM_B, DETS_B = "/soak/a/image_raw", "/soak/b/image_raw", "/soak/b/detections"
HZ, LAG, BURST = 30.0, 3, 20
RSS_GOAL_MB_PER_MIN = 1.0
CONCEPT_LISTS = (
    (["circle", "square", "triangle", "star"], ["red", "green", "blue"], ["left of", "above"]),
    (["square", "circle"], ["red", "blue"], ["touching"]),
    (["star", "triangle", "circle"], ["green", "yellow"], ["below", "right of"]),
)
PARAM_SCHEDULE = (
    ("relation_threshold", 0.3),
    ("window_size", 4),
    ("relation_threshold", 0.5),
    ("window_size", 8),
    ("max_crops_per_frame", 64),
    ("max_crops_per_frame", 256),
)


def rss_slope_mb_per_min(samples: list[tuple[float, int]], fit_from_s: float | None = None
                         ) -> float:
    """Least-squares slope of RSS (bytes) over time (s), from ``fit_from_s`` after the first
    sample (default: after the first 20% of the run)."""
    if len(samples) < 3:
        return float("nan")
    t0, t1 = samples[0][0], samples[-1][0]
    start = 0.2 * (t1 - t0) if fit_from_s is None else fit_from_s
    kept = [(t, r) for t, r in samples if t >= t0 + start]
    t = np.array([s[0] for s in kept]) / 60.0
    r = np.array([s[1] for s in kept]) / 2**20
    return float(np.polyfit(t, r, 1)[0]) if len(kept) >= 3 else float("nan")


class Soak:
    """The node process and an rclpy client that feeds, detects, reconfigures and listens."""

    def __init__(self, domain: int, workdir: Path, model_dir: str):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        params = load_defaults(REPO / "config" / "sgclip.yaml")
        params.update(
            cameras=[CAM_A, CAM_B],
            detections=["", DETS_B],
            model_dir=model_dir,
            reliability="reliable",
            qos_depth=100,
            max_stamp_age_s=0.0,
            diagnostics_period_s=1.0,
        )
        path = workdir / "soak_params.yaml"
        path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
        self.log = open(workdir / "soak_node.log", "w")
        self.proc = start_module(
            "sgclip_ros.nodes.perception_node",
            ["--ros-args", "--params-file", str(path)],
            ros_env(domain),
            stdout=self.log,
            stderr=self.log,
        )
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("soak_client", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._setup_io()
        self.sent = {CAM_A: 0, CAM_B: 0}
        self.graphs: dict[str, int] = {CAM_A: 0, CAM_B: 0}
        self.diagnostics = None
        self.callback_max: list[tuple[float, float]] = []  # (time, max in that period)
        self.burst: list[float] = []  # start and end of the 20 back-to-back concept changes
        self.started = time.monotonic()  # the feeding start (run sets it)

    def _setup_io(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rcl_interfaces.srv import SetParameters
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        from sgclip_ros.msg import SceneGraph
        from sgclip_ros.srv import SetConcepts

        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.images = {c: self.node.create_publisher(Image, c, qos) for c in (CAM_A, CAM_B)}
        self.dets = self.node.create_publisher(Detection2DArray, DETS_B, qos)
        self.node.create_subscription(SceneGraph, "/scene_graph", self._on_graph, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.concepts = self.node.create_client(SetConcepts, "/set_concepts")
        self.params = self.node.create_client(SetParameters, "/sgclip_perception/set_parameters")

    def _on_graph(self, msg) -> None:
        self.graphs[msg.camera] = self.graphs.get(msg.camera, 0) + 1

    def _on_diag(self, msg) -> None:
        self.diagnostics = msg
        value = _values(msg, ": node").get("callback_max_ms", "n/a")
        if value != "n/a":
            self.callback_max.append((time.monotonic(), float(value)))

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            self.executor.spin_once(timeout_sec=min(left, 0.01))

    def close(self) -> int:
        import rclpy

        code = stop(self.proc, timeout=15)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.log.close()
        return code


def soak_frame(k: int, width: int = 160, height: int = 120):
    """(RGB frame, [(track id, box)]) of three squares sliding back and forth, 1 px a frame."""
    import cv2

    image = np.full((height, width, 3), 235, np.uint8)
    colours = [(220, 30, 30), (30, 60, 220), (30, 180, 30)]
    boxes = []
    for n, colour in enumerate(colours):
        phase = k % 40
        x, y = 8 + 45 * n + (phase if phase < 20 else 40 - phase), 20 + 25 * n
        cv2.rectangle(image, (x, y), (x + 24, y + 24), colour, -1)
        boxes.append((f"track{n}", (x, y, x + 25, y + 25)))
    return image, boxes


def _image(rgb, stamp):
    from sgclip_ros.ros.image_conversion import rgb_to_image_msg

    msg = rgb_to_image_msg(rgb)
    msg.header.stamp, msg.header.frame_id = stamp, "soak_camera"
    return msg


def _detections(stamp, boxes):
    from vision_msgs.msg import Detection2D, Detection2DArray

    arr = Detection2DArray()
    arr.header.stamp, arr.header.frame_id = stamp, "soak_camera"
    for track, (x1, y1, x2, y2) in boxes:
        det = Detection2D(id=track)
        det.bbox.center.position.x, det.bbox.center.position.y = (x1 + x2) / 2, (y1 + y2) / 2
        det.bbox.size_x, det.bbox.size_y = float(x2 - x1), float(y2 - y1)
        arr.detections.append(det)
    return arr


def _set_concepts(soak: Soak, k: int) -> None:
    from sgclip_ros.srv import SetConcepts

    categories, unary, binary = CONCEPT_LISTS[k % len(CONCEPT_LISTS)]
    request = SetConcepts.Request(categories=categories, unary=unary, binary=binary)
    return soak.concepts.call_async(request)


class ConceptBurst:
    """BURST set_concepts calls back to back (each sent when the last answered), once."""

    def __init__(self, soak: Soak, at_s: float):
        self.soak, self.at_s, self.sent, self.future = soak, at_s, 0, None

    def step(self, now_s: float) -> None:
        if now_s < self.at_s or self.sent > BURST or (self.future and not self.future.done()):
            return
        if self.sent == BURST:
            self.soak.burst.append(time.monotonic())
            self.sent += 1
            return
        if self.sent == 0:
            self.soak.burst.append(time.monotonic())
        self.future = _set_concepts(self.soak, self.sent)
        self.sent += 1


def _set_param(soak: Soak, k: int) -> None:
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    name, value = PARAM_SCHEDULE[k % len(PARAM_SCHEDULE)]
    if isinstance(value, float):
        v = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    else:
        v = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    soak.params.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=v)]))


@dataclass(frozen=True)
class Schedule:
    """When a run of ``seconds`` changes concepts and parameters, and when its warm-up ends."""

    seconds: float

    @property
    def concept_period_s(self) -> float:
        return min(10.0, self.seconds / 12)

    @property
    def param_period_s(self) -> float:
        return min(7.0, self.seconds / 20)

    def due(self, k: int, period_s: float) -> int | None:
        """The change number due at frame ``k`` (half a period in, then every period)."""
        n = max(1, round(period_s * HZ))
        return k // n if k % n == n // 2 else None

    def warmup_s(self, burst_end_s: float | None) -> float:
        """Every list and setting applied once, the burst over, and 20% of the run."""
        lists = self.concept_period_s * (len(CONCEPT_LISTS) + 0.5)
        params = self.param_period_s * (len(PARAM_SCHEDULE) + 0.5)
        burst = (burst_end_s or 0.0) + 2.0
        return max(0.2 * self.seconds, lists, params, burst)


def run(soak: Soak, seconds: float) -> list[tuple[float, int]]:
    """Feed both cameras at 30 Hz (detections LAG frames late) with the schedule; RSS samples."""
    from sgclip_ros.ros.conversions import time_from_ns

    node_proc, samples, late = psutil.Process(soak.proc.pid), [], []
    start = soak.started = time.monotonic()
    k, burst, schedule = 0, ConceptBurst(soak, at_s=0.2 * seconds), Schedule(seconds)
    while time.monotonic() - start < seconds:
        burst.step(time.monotonic() - start)
        now = time.monotonic() - start
        stamp = time_from_ns(time.time_ns())
        rgb, boxes = soak_frame(k)
        for camera in (CAM_A, CAM_B):
            soak.images[camera].publish(_image(rgb, stamp))
            soak.sent[camera] += 1
        late.append((stamp, boxes))
        if len(late) > LAG:
            soak.dets.publish(_detections(*late.pop(0)))
        if (n := schedule.due(k, schedule.concept_period_s)) is not None:
            _set_concepts(soak, n)
        if (n := schedule.due(k, schedule.param_period_s)) is not None:
            _set_param(soak, n)
        if k % int(2 * HZ) == 0:
            samples.append((now, node_proc.memory_info().rss))
        k += 1
        soak.spin(max(0.0, start + k / HZ - time.monotonic()))
    for stamp, boxes in late:  # the detector finishes its backlog
        soak.dets.publish(_detections(stamp, boxes))
    return samples


def _values(diagnostics, name_part: str) -> dict[str, str]:
    for status in diagnostics.status if diagnostics else []:
        if name_part in status.name:
            return {kv.key: kv.value for kv in status.values}
    return {}


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def report(soak: Soak, samples, seconds: float) -> dict:
    """The soak's figures from the node's last /diagnostics and the client's own counts."""
    node = _values(soak.diagnostics, ": node")
    drops: dict[str, int] = {}
    cameras = {}
    for camera in (CAM_A, CAM_B):
        values = _values(soak.diagnostics, f"camera {camera}")
        dropped = {k[6:]: _int(v) for k, v in values.items() if k.startswith("drops.")}
        for reason, n in dropped.items():
            drops[reason] = drops.get(reason, 0) + n
        cameras[camera] = {
            "sent": soak.sent[camera],
            "received": _int(values.get("frames_received")),
            "processed": _int(values.get("frames_processed")),
            "dropped": sum(dropped.values()),
            "graphs_received": soak.graphs.get(camera, 0),
        }
    pending = _int(node.get("pending"))
    received = sum(c["received"] for c in cameras.values())
    processed = sum(c["processed"] for c in cameras.values())
    burst_end = soak.burst[1] - soak.started if len(soak.burst) > 1 else None
    fit_from = Schedule(seconds).warmup_s(burst_end)
    return {
        "minutes": seconds / 60,
        "rss_slope_mb_per_min": rss_slope_mb_per_min(samples, fit_from),
        "rss_fit_from_s": round(fit_from, 1),
        "rss_mb_first": samples[0][1] / 2**20 if samples else None,
        "rss_mb_last": samples[-1][1] / 2**20 if samples else None,
        "rss_samples_mb": [[round(t - samples[0][0], 1), round(r / 2**20, 2)] for t, r in samples],
        "frames_in": sum(soak.sent.values()),
        "frames_received": received,
        "frames_processed": processed,
        "graphs_out": sum(soak.graphs.values()),
        "drops_by_reason": {k: v for k, v in sorted(drops.items()) if v},
        "pending": pending,
        "unaccounted": received - processed - sum(drops.values()) - pending,
        "lost_in_transport": sum(soak.sent.values()) - received,
        "worker_restarts": _int(node.get("worker_restarts")),
        "worker_errors": _int(node.get("worker_errors")),
        "max_callback_ms": max((v for _, v in soak.callback_max), default=float("nan")),
        **_burst_figures(soak),
        "concept_changes": {
            k[16:]: _int(v) for k, v in node.items() if k.startswith("concept_changes.")
        },
        "cameras": cameras,
    }


def _burst_figures(soak: Soak) -> dict:
    """Callback latency (max per diagnostics period) during the 20 back-to-back concept changes,
    against the periods before them (the baseline, same run)."""
    if len(soak.burst) < 2:
        return {"concept_burst_done": False}
    start, end = soak.burst[0], soak.burst[1] + 1.0  # the period that holds the last change
    during = [v for t, v in soak.callback_max if start <= t <= end]
    before = [v for t, v in soak.callback_max if t < start]
    during_max, before_max = max(during, default=float("nan")), max(before, default=float("nan"))
    return {
        "concept_burst_done": True,
        "concept_burst_s": soak.burst[1] - soak.burst[0],
        "concept_burst_callback_max_ms": during_max,
        "baseline_callback_max_ms": before_max,
        "concept_burst_callback_ratio": during_max / before_max if before_max else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--json", required=True, help="write every figure to this JSON file")
    parser.add_argument("--minutes", type=float, default=10.0, help="feeding time (CI: 1)")
    parser.add_argument("--model-dir", default="shapes_default")
    parser.add_argument("--domain", type=int, default=47, help="ROS_DOMAIN_ID for the run")
    parser.add_argument("--check", action="store_true", help="exit 1 unless the goal is met")
    args = parser.parse_args(argv)
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        soak = Soak(args.domain, Path(tmp), args.model_dir)
        try:
            if not _wait_for_node(soak, 120):
                print("soak: the node did not start; see its log", file=sys.stderr)
                print(Path(tmp, "soak_node.log").read_text()[-3000:], file=sys.stderr)
                return 2
            samples = run(soak, seconds)
            soak.spin(3.0)  # the last frames finish waiting; two diagnostics periods pass
            figures = report(soak, samples, seconds)
        finally:
            code = soak.close()
    figures["node_exit_code"] = code
    Path(args.json).write_text(json.dumps(figures, indent=2, default=float))
    print(json.dumps({k: v for k, v in figures.items() if k != "cameras"}, indent=2))
    met = figures["rss_slope_mb_per_min"] < RSS_GOAL_MB_PER_MIN and figures["unaccounted"] == 0
    print(
        f"soak goal (RSS slope < {RSS_GOAL_MB_PER_MIN} MB/min, every frame accounted for): "
        f"{'met' if met else 'NOT met'}"
    )
    return 0 if met or not args.check else 1


def _wait_for_node(soak: Soak, timeout: float) -> bool:
    """Until the node reports its cameras in /diagnostics and both image topics are matched."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        soak.spin(0.2)
        matched = all(p.get_subscription_count() > 0 for p in soak.images.values())
        if (
            matched
            and _values(soak.diagnostics, f"camera {CAM_B}")
            and soak.concepts.service_is_ready()
        ):
            return True
    return False


if __name__ == "__main__":
    sys.exit(main())
