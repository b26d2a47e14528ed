"""Publish the sample SceneGraph at a fixed rate: `python -m sgclip_ros.tools.sample_publisher`."""

from __future__ import annotations

import argparse
import sys

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy

from sgclip_ros.msg import SceneGraph
from sgclip_ros.ros.conversions import scene_graph_to_msg
from sgclip_ros.tools.sample_graph import sample_scene_graph


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topic", default="scene_graph")
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second")
    parser.add_argument("--duration", type=float, default=30.0, help="stop after S seconds")
    args = parser.parse_args(
        rclpy.utilities.remove_ros_args(argv if argv is not None else sys.argv)[1:]
    )
    rclpy.init(args=argv)
    node = rclpy.create_node("sample_scene_graph_publisher")
    pub = node.create_publisher(
        SceneGraph, args.topic, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    )
    seq = 0

    def publish() -> None:
        nonlocal seq
        pub.publish(scene_graph_to_msg(sample_scene_graph(seq=seq, positions=True)))
        seq += 1

    node.create_timer(1.0 / args.rate, publish)
    end = node.get_clock().now().nanoseconds + int(args.duration * 1e9)
    try:
        while rclpy.ok() and node.get_clock().now().nanoseconds < end:
            rclpy.spin_once(node, timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
