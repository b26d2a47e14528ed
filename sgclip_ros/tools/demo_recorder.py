"""Demo listener: print each SceneGraph as readable lines and save the demo's outputs.

    ros2 run sgclip_ros demo_recorder [--out demo_out] [--graph-topic /scene_graph]
        [--image-topic /annotated_image] [--duration 60] [--idle 5]

Writes OUT/scene_graphs.jsonl, OUT/frames/NNNN.png (annotated frames) and, when it stops,
OUT/contact_sheet.png; OUT is relative to the current directory. Started by the demo
(`sgclip_ros.tools.demo`), or alone beside a running perception node.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from sgclip_ros.core.annotate import contact_sheet
from sgclip_ros.core.scene_text import format_scene_graph
from sgclip_ros.msg import SceneGraph
from sgclip_ros.nodes.lifecycle_main import ignore_further_interrupts
from sgclip_ros.ros.conversions import scene_graph_from_msg
from sgclip_ros.ros.image_conversion import image_to_rgb


class DemoRecorder:
    """Collects graphs and annotated frames of one node run."""

    def __init__(self, node, out: Path, graph_topic: str, image_topic: str):
        self.out = out
        (out / "frames").mkdir(parents=True, exist_ok=True)
        self.jsonl = open(out / "scene_graphs.jsonl", "w", encoding="utf-8")
        self.graphs = 0
        self.images: list = []
        qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(SceneGraph, graph_topic, self.on_graph, qos)
        node.create_subscription(Image, image_topic, self.on_image, qos)

    def on_graph(self, msg: SceneGraph) -> None:
        graph = scene_graph_from_msg(msg)
        self.graphs += 1
        print(
            f"--- scene graph {self.graphs}: {len(msg.frame_stamps)} frames, "
            f"{msg.inference_ms:.0f} ms ({msg.backend})",
            flush=True,
        )
        print(format_scene_graph(graph, max_relations=8), flush=True)
        self.jsonl.write(json.dumps(graph.to_dict()) + "\n")
        self.jsonl.flush()

    def on_image(self, msg: Image) -> None:
        rgb = image_to_rgb(msg, 0)
        self.images.append(rgb)
        path = self.out / "frames" / f"{len(self.images):04d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self.jsonl.close()
        if self.images:
            step = max(1, len(self.images) // 12)
            sheet = contact_sheet(self.images[::step][:12], columns=4, tile_width=320)
            cv2.imwrite(str(self.out / "contact_sheet.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo_out")
    parser.add_argument("--graph-topic", default="/scene_graph")
    parser.add_argument("--image-topic", default="/annotated_image")
    parser.add_argument("--duration", type=float, default=60.0, help="stop after S seconds")
    parser.add_argument(
        "--idle",
        type=float,
        default=5.0,
        help="stop S seconds after the last graph (once one arrived)",
    )
    args = parser.parse_args(
        rclpy.utilities.remove_ros_args(argv if argv is not None else sys.argv)[1:]
    )
    rclpy.init(args=argv)
    node = rclpy.create_node("sgclip_demo_recorder")
    recorder = DemoRecorder(node, Path(args.out), args.graph_topic, args.image_topic)
    start = last = time.monotonic()
    seen = 0
    try:
        while time.monotonic() - start < args.duration:
            rclpy.spin_once(node, timeout_sec=0.1)
            if recorder.graphs != seen:
                seen, last = recorder.graphs, time.monotonic()
            if seen and time.monotonic() - last > args.idle:
                break
    except KeyboardInterrupt:
        pass
    finally:
        ignore_further_interrupts()  # Ctrl-C on `ros2 run` arrives twice
        recorder.close()
        node.destroy_node()
        rclpy.try_shutdown()
    print(
        f"recorder: {recorder.graphs} scene graphs, {len(recorder.images)} annotated frames "
        f"in {args.out}/",
        flush=True,
    )
    return 0 if recorder.graphs else 1


if __name__ == "__main__":
    sys.exit(main())
