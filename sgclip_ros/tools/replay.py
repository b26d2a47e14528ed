"""Publish a ShapesWorld clip as sensor_msgs/Image at camera rate (the demo's camera).

    ros2 run sgclip_ros replay [--topic /camera/image_raw] [--rate 5] [--frames 40] [--seed 7]
        [--depth [--depth-topic T] [--info-topic T]]
    python -m sgclip_ros.tools.replay ...   (the same, from a source tree)

Frames come from `sgclip_ros.sim.shapes_scene.render_scene` (installed with the package; the
same frames as `training.synth.render_clip(seed, 0, frames)`). With --depth, an RGB-D camera
instead: `sgclip_ros.sim.rgbd_scene` solids on a floor (320x240), with aligned 16UC1 depth and
CameraInfo on their own topics, all three with the same stamp, as an RGB-D driver publishes.
Stamps are the publishing time; the clip is played once, after a subscriber has appeared.
"""

from __future__ import annotations

import argparse
import sys
import time

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from sgclip_ros.nodes.lifecycle_main import ignore_further_interrupts
from sgclip_ros.ros.image_conversion import rgb_to_image_msg
from sgclip_ros.sim.shapes_scene import MIN_SCENE_FRAMES, render_scene


def render_frames(seed: int, frames: int) -> list:
    """The first ``frames`` RGB frames of ShapesWorld clip 0 of ``seed`` (scenes need >= 4)."""
    return render_scene(seed, 0, frames=max(frames, MIN_SCENE_FRAMES))[:frames]


def render_rgbd(seed: int, frames: int):
    """(colour frames, 16UC1 depth frames, CameraInfo K, width, height) of an RGB-D clip."""
    from sgclip_ros.sim.rgbd_scene import render_rgbd_clip

    clip = render_rgbd_clip(seed, frames=frames, width=320, height=240)
    rgb = [f.rgb for f in clip.frames]
    return rgb, [f.depth_mm for f in clip.frames], clip.k, 320, 240


def depth_image_msg(depth_mm) -> Image:
    """A 16UC1 (millimetres) sensor_msgs/Image."""
    msg = Image(height=depth_mm.shape[0], width=depth_mm.shape[1], encoding="16UC1")
    msg.step, msg.data = depth_mm.shape[1] * 2, depth_mm.astype("<u2").tobytes()
    return msg


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--topic", default="/camera/image_raw")
    parser.add_argument("--frame-id", default="camera_optical_frame")
    parser.add_argument("--rate", type=_positive(float), default=5.0, help="frames per second")
    parser.add_argument("--frames", type=_positive(int), default=40, help="frames in the clip")
    parser.add_argument("--seed", type=int, default=7, help="ShapesWorld clip seed")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for a subscriber")
    parser.add_argument("--depth", action="store_true", help="an RGB-D camera (see above)")
    parser.add_argument("--depth-topic", default="/camera/depth/image_raw")
    parser.add_argument("--info-topic", default="/camera/camera_info")
    args = parser.parse_args(
        rclpy.utilities.remove_ros_args(argv if argv is not None else sys.argv)[1:]
    )
    depth = None
    if args.depth:
        frames, depth, k, width, height = render_rgbd(args.seed, args.frames)
    else:
        frames = render_frames(args.seed, args.frames)
    rclpy.init(args=argv)
    node = rclpy.create_node("shapes_replay")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(Image, args.topic, qos)
    if depth is not None:
        depth_pub = node.create_publisher(Image, args.depth_topic, qos)
        info_pub = node.create_publisher(CameraInfo, args.info_topic, qos)
        info = CameraInfo(width=width, height=height, k=[float(v) for v in k])
    try:
        deadline = time.monotonic() + args.wait
        pubs = [pub] if depth is None else [pub, depth_pub, info_pub]
        while not all(p.get_subscription_count() for p in pubs) and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        start = time.monotonic()
        for i, rgb in enumerate(frames):
            msg = rgb_to_image_msg(rgb)
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.header.frame_id = args.frame_id
            if depth is not None:  # depth and info first: the colour frame then finds them
                info.header = msg.header
                info_pub.publish(info)
                depth_msg = depth_image_msg(depth[i])
                depth_msg.header = msg.header
                depth_pub.publish(depth_msg)
            pub.publish(msg)
            while time.monotonic() < start + (i + 1) / args.rate:
                rclpy.spin_once(node, timeout_sec=0.01)
        node.get_logger().info(f"replayed {len(frames)} frames at {args.rate:g} Hz on {args.topic}")
    except KeyboardInterrupt:
        pass
    finally:
        ignore_further_interrupts()  # Ctrl-C on `ros2 run` arrives twice
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
