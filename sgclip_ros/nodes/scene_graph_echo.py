"""Print SceneGraph messages as readable lines: `scene_graph_echo [--topic T] [--count N]`."""

from __future__ import annotations

import argparse
import json
import sys

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from sgclip_ros.core.scene_text import format_scene_graph
from sgclip_ros.msg import SceneGraph
from sgclip_ros.nodes.lifecycle_main import ignore_further_interrupts
from sgclip_ros.ros.conversions import scene_graph_from_msg


class SceneGraphEcho(Node):
    """Subscribes to a SceneGraph topic, prints each graph and optionally appends it as JSONL."""

    def __init__(self, topic: str, count: int, jsonl: str | None):
        super().__init__("scene_graph_echo")
        self._remaining = count
        self._jsonl = open(jsonl, "a", encoding="utf-8") if jsonl else None
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(SceneGraph, topic, self._on_graph, qos)
        self.get_logger().info(f"listening on {self.resolve_topic_name(topic)}")

    def _on_graph(self, msg: SceneGraph) -> None:
        graph = scene_graph_from_msg(msg)
        stamp = f"{msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}"
        print(
            f"--- SceneGraph stamp {stamp} frame_id {msg.header.frame_id!r}"
            f" backend {msg.backend} {msg.inference_ms:.1f} ms",
            flush=True,
        )
        print(format_scene_graph(graph), flush=True)
        if self._jsonl:
            self._jsonl.write(json.dumps(graph.to_dict()) + "\n")
            self._jsonl.flush()
        self._remaining -= 1

    @property
    def done(self) -> bool:
        return self._remaining == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topic", default="scene_graph")
    parser.add_argument("--count", type=int, default=-1, help="exit after N graphs (-1: never)")
    parser.add_argument(
        "--timeout", type=float, default=0.0, help="give up after S seconds (0: never)"
    )
    parser.add_argument("--jsonl", help="also append each graph as one JSON line to this file")
    args = parser.parse_args(
        rclpy.utilities.remove_ros_args(argv if argv is not None else sys.argv)[1:]
    )
    rclpy.init(args=argv)
    node = SceneGraphEcho(args.topic, args.count, args.jsonl)
    start = node.get_clock().now()
    try:
        while rclpy.ok() and not node.done:
            rclpy.spin_once(node, timeout_sec=0.1)
            elapsed = (node.get_clock().now() - start).nanoseconds / 1e9
            if args.timeout and elapsed > args.timeout:
                node.get_logger().error(f"no SceneGraph after {args.timeout:.0f} s")
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        ignore_further_interrupts()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
