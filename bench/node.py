"""Perception node latency: camera stamp -> SceneGraph received, against the model's own time.

    python -m bench.node [--json PATH] [--models untrained-tiny,vit-b-32] [--seconds 10]

For each model, a real perception node process receives 640x480 rgb8 frames over Fast DDS
(with the large shared-memory profile in config/fastdds_shm.xml):
- open loop at 30 Hz: frames per second out, and stamp-to-graph latency p50/p99 (which
  includes waiting for the model when it is slower than the camera);
- closed loop (the next frame only after the previous graph): latency minus the predictor's own
  time (`inference_ms`, crops to scores) = the node's overhead (`overhead_ms`, goal <= 5 ms).
Headline keys (the first model): p50_ms, p99_ms, model_ms, overhead_ms; every model's figures
are under "models".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_shm.xml"))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from bench.core import make_clip  # noqa: E402
from sgclip_ros.ros.params import load_defaults  # noqa: E402
from sgclip_ros.tools.procs import ros_env, start_module, stop  # noqa: E402

TOPIC = "/bench/image_raw"


def _model_dir(name: str, root: Path) -> str:
    """'untrained-tiny' as is; 'vit-b-32' as a freshly saved random ViT-B-32 model dir."""
    if name == "untrained-tiny":
        return name
    from sgclip_ros.core.model import build_model, save_model
    from sgclip_ros.core.model_config import load_model_config
    from sgclip_ros.core.model_store import write_manifest

    out = root / name
    save_model(build_model(load_model_config(f"sgclip-{name}"), seed=0), out)
    write_manifest(out, {"model": name, "note": "random weights, for timing only"})
    return name


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class Bench:
    """A perception node process and an rclpy client that feeds and times it."""

    def __init__(self, model_dir: str, root: Path, domain: int, log: Path):
        import rclpy
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from sgclip_ros.msg import SceneGraph

        params = load_defaults(REPO / "config" / "sgclip.yaml")
        params.update(
            cameras=[TOPIC],
            model_root=str(root),
            model_dir=model_dir,
            reliability="reliable",
            max_stamp_age_s=0.0,
            window_size=8,
        )
        params_file = root / f"params-{model_dir}.yaml"
        params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
        self._log = open(log, "w")
        self.proc = start_module(
            "sgclip_ros.nodes.perception_node",
            ["--ros-args", "--params-file", str(params_file)],
            ros_env(domain),
            stdout=self._log,
            stderr=self._log,
        )
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("bench_node_client", context=self.context)
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(Image, TOPIC, qos)
        self.received: list[tuple[int, float, float]] = []  # (stamp ns, latency ms, model ms)
        self.node.create_subscription(SceneGraph, "/scene_graph", self._on_graph, 10)
        frames, _ = make_clip(30, 4)
        from sgclip_ros.ros.image_conversion import rgb_to_image_msg

        self.msgs = [rgb_to_image_msg(f) for f in frames]
        from rclpy.executors import SingleThreadedExecutor

        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def _on_graph(self, msg) -> None:
        now = self.node.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        self.received.append((stamp, (now - stamp) / 1e6, float(msg.inference_ms)))

    def _send(self, i: int) -> int:
        msg = self.msgs[i % len(self.msgs)]
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(msg)
        return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec

    def _spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.002, max(0.0, end - time.monotonic())))

    def warm_up(self, timeout: float = 180.0) -> None:
        end = time.monotonic() + timeout
        i = 0
        while len(self.received) < 3 and time.monotonic() < end:
            self._send(i)
            i += 1
            self._spin(0.1)
        if len(self.received) < 3:
            raise RuntimeError(f"the node published no scene graph; see {self._log.name}")

    def open_loop(self, seconds: float, hz: float = 30.0) -> dict:
        self.received.clear()
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < seconds:
            self._send(i)
            i += 1
            self._spin(max(0.0, start + i / hz - time.monotonic()))
        self._spin(2.0)
        lat = [r[1] for r in self.received]
        return {
            "sent": i,
            "graphs": len(lat),
            "fps": len(lat) / seconds,
            "p50_ms": _percentile(lat, 50),
            "p99_ms": _percentile(lat, 99),
        }

    def closed_loop(self, n: int) -> dict:
        """Each frame is sent once the previous one's graph is back: no queueing in the node."""
        self._drain()
        self.received.clear()
        for i in range(n):
            stamp = self._send(i)
            end = time.monotonic() + 60
            while all(r[0] != stamp for r in self.received) and time.monotonic() < end:
                self.executor.spin_once(timeout_sec=0.001)
        lat = [r[1] for r in self.received]
        model = [r[2] for r in self.received]
        over = [a - b for a, b in zip(lat, model)]
        return {
            "latency_p50_ms": _percentile(lat, 50),
            "model_ms": statistics.median(model),
            "overhead_ms": statistics.median(over),
            "overhead_p99_ms": _percentile(over, 99),
        }

    def _drain(self, quiet_s: float = 1.0) -> None:
        """Spin until no graph has arrived for ``quiet_s`` (the open loop's tail is done)."""
        count, last = len(self.received), time.monotonic()
        while time.monotonic() - last < quiet_s:
            self.executor.spin_once(timeout_sec=0.01)
            if len(self.received) != count:
                count, last = len(self.received), time.monotonic()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        import rclpy

        rclpy.shutdown(context=self.context)
        stop(self.proc)
        self._log.close()


def run(models: list[str], seconds: float, closed: int) -> dict:
    result: dict = {
        "models": {},
        "image": "640x480 rgb8",
        "camera_hz": 30,
        "fastdds_profile": os.environ["FASTDDS_DEFAULT_PROFILES_FILE"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for k, name in enumerate(models):
            bench = Bench(_model_dir(name, root), root, 60 + k, root / f"{name}.log")
            try:
                bench.warm_up()
                figures = bench.open_loop(seconds)
                figures.update(bench.closed_loop(closed))
            finally:
                bench.close()
            result["models"][name] = figures
            print(
                f"{name:16s} "
                + "  ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in figures.items()
                ),
                flush=True,
            )
    head = result["models"][models[0]]
    result.update(
        p50_ms=head["p50_ms"],
        p99_ms=head["p99_ms"],
        model_ms=head["model_ms"],
        overhead_ms=head["overhead_ms"],
        fps=head["fps"],
        headline_model=models[0],
    )
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--json", help="write every figure to this JSON file")
    parser.add_argument("--models", default="untrained-tiny,vit-b-32")
    parser.add_argument("--seconds", type=float, default=10.0, help="open-loop duration per model")
    parser.add_argument("--closed", type=int, default=20, help="closed-loop frames per model")
    args = parser.parse_args(argv)
    result = run(args.models.split(","), args.seconds, args.closed)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
