"""Demo listener: print each SceneGraph as readable lines and save the demo's outputs.

    ros2 run sgclip_ros demo_recorder [--out demo_out] [--graph-topic /scene_graph]
        [--image-topic /annotated_image] [--duration 60] [--idle 5]
        [--rgbd-camera TOPIC --rgbd-image-topic TOPIC] [--cameras N]

Writes OUT/scene_graphs.jsonl, OUT/frames/NNNN.png (annotated frames) and, when it stops,
OUT/contact_sheet.png; OUT is relative to the current directory. With an RGB-D camera, its
annotated frames go to OUT/frames_3d/, and OUT/topdown.png (the newest graph with positions,
seen from above) and OUT/scene_3d.png (its contact sheet next to the top-down plot) are added.
Started by the demo (`sgclip_ros.tools.demo`), or alone beside a running perception node.
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
from sgclip_ros.core.topdown import draw_topdown, side_by_side
from sgclip_ros.msg import SceneGraph
from sgclip_ros.nodes.lifecycle_main import ignore_further_interrupts
from sgclip_ros.ros.conversions import scene_graph_from_msg
from sgclip_ros.ros.image_conversion import image_to_rgb


class DemoRecorder:
    """Collects graphs and annotated frames of one node run."""

    def __init__(self, node, out: Path, graph_topic: str, image_topic: str,
                 rgbd_camera: str = "", rgbd_image_topic: str = ""):
        self.out = out
        (out / "frames").mkdir(parents=True, exist_ok=True)
        self.jsonl = open(out / "scene_graphs.jsonl", "w", encoding="utf-8")
        self.graphs = 0
        self.images: list = []
        self.images_3d: list = []
        self.rgbd_camera, self.last_3d = rgbd_camera, None
        self.cameras: set[str] = set()  # the cameras graphs came from
        qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
        self.subscriptions = [
            node.create_subscription(SceneGraph, graph_topic, self.on_graph, qos),
            node.create_subscription(Image, image_topic, self.on_image, qos),
        ]
        if rgbd_image_topic:
            (out / "frames_3d").mkdir(exist_ok=True)
            self.subscriptions.append(
                node.create_subscription(Image, rgbd_image_topic, self.on_image_3d, qos)
            )

    def matched(self) -> bool:
        """Whether every subscription has found its publisher (graphs sent now arrive)."""
        return all(sub.get_publisher_count() > 0 for sub in self.subscriptions)

    def on_graph(self, msg: SceneGraph) -> None:
        graph = scene_graph_from_msg(msg)
        self.graphs += 1
        self.cameras.add(graph.camera)
        print(
            f"--- scene graph {self.graphs}: {len(msg.frame_stamps)} frames, "
            f"{msg.inference_ms:.0f} ms ({msg.backend})",
            flush=True,
        )
        print(format_scene_graph(graph, max_relations=8), flush=True)
        if graph.camera == self.rgbd_camera and any(o.has_position for o in graph.objects):
            self.last_3d = graph
        self.jsonl.write(json.dumps(graph.to_dict()) + "\n")
        self.jsonl.flush()

    def on_image(self, msg: Image) -> None:
        self._save(msg, self.images, "frames")

    def on_image_3d(self, msg: Image) -> None:
        self._save(msg, self.images_3d, "frames_3d")

    def _save(self, msg: Image, images: list, folder: str) -> None:
        rgb = image_to_rgb(msg, 0)
        images.append(rgb)
        _write(self.out / folder / f"{len(images):04d}.png", rgb)

    def close(self) -> None:
        self.jsonl.close()
        if self.images:
            _write(self.out / "contact_sheet.png", _sheet(self.images))
        if self.last_3d is not None:
            topdown = draw_topdown(self.last_3d)
            _write(self.out / "topdown.png", topdown)
            if self.images_3d:
                _write(self.out / "scene_3d.png", side_by_side(_sheet(self.images_3d), topdown))


def _sheet(images: list):
    step = max(1, len(images) // 12)
    return contact_sheet(images[::step][:12], columns=4, tile_width=320)


def _write(path: Path, rgb) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo_out")
    parser.add_argument("--graph-topic", default="/scene_graph")
    parser.add_argument("--image-topic", default="/annotated_image")
    parser.add_argument("--duration", type=float, default=60.0, help="stop after S seconds")
    parser.add_argument("--rgbd-camera", default="", help="camera whose graphs have positions")
    parser.add_argument("--rgbd-image-topic", default="", help="its annotated images")
    parser.add_argument(
        "--idle",
        type=float,
        default=5.0,
        help="stop S seconds after the last graph (once every expected camera sent one)",
    )
    parser.add_argument(
        "--cameras", type=int, default=1, help="how many cameras to hear from before --idle counts"
    )
    parser.add_argument("--ready-file", help="created once every subscription has matched")
    args = parser.parse_args(
        rclpy.utilities.remove_ros_args(argv if argv is not None else sys.argv)[1:]
    )
    rclpy.init(args=argv)
    node = rclpy.create_node("sgclip_demo_recorder")
    recorder = DemoRecorder(
        node, Path(args.out), args.graph_topic, args.image_topic,
        args.rgbd_camera, args.rgbd_image_topic,
    )
    start = last = time.monotonic()
    seen, ready = 0, Path(args.ready_file) if args.ready_file else None
    try:
        while time.monotonic() - start < args.duration:
            rclpy.spin_once(node, timeout_sec=0.1)
            if ready is not None and not ready.exists() and recorder.matched():
                ready.touch()  # the demo starts its cameras only now: no graph is missed
            if recorder.graphs != seen:
                seen, last = recorder.graphs, time.monotonic()
            heard = len(recorder.cameras) >= args.cameras
            if seen and heard and time.monotonic() - last > args.idle:
                break
    except KeyboardInterrupt:
        pass
    finally:
        ignore_further_interrupts()  # Ctrl-C on `ros2 run` arrives twice
        recorder.close()
        node.destroy_node()
        rclpy.try_shutdown()
    print(
        f"recorder: {recorder.graphs} scene graphs, {len(recorder.images)} annotated frames, "
        f"{len(recorder.images_3d)} RGB-D frames in {args.out}/",
        flush=True,
    )
    return 0 if recorder.graphs else 1


if __name__ == "__main__":
    sys.exit(main())
