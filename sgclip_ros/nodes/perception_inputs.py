"""The perception node's input topics: cameras, their detections, depth and CameraInfo.

Resolved once at configure (a bad name fails configure naming it) and subscribed at activate.
Every per-camera list is in the order of `cameras`; "" (or a shorter list) means none.
"""

from __future__ import annotations

from dataclasses import dataclass

from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from sgclip_ros.ros.conversions import ns_from_time
from sgclip_ros.ros.depth_input import DepthInput
from sgclip_ros.ros.detections import regions_from_detections
from sgclip_ros.ros.topics import is_compressed_topic, resolve_topic


@dataclass(frozen=True)
class CameraTopics:
    """One camera's topics as the parameters name them (rcl resolves and remaps them)."""

    image: str
    detections: str = ""
    depth: str = ""
    camera_info: str = ""


def camera_topics(node) -> dict[str, CameraTopics]:
    """Resolved camera topic -> its CameraTopics.

    The resolved name (namespace and remappings applied) is the camera's identity: it picks
    Image or CompressedImage, names the camera in every SceneGraph and in /diagnostics."""
    cameras = [c for c in node.p("cameras") if c]
    if not cameras:
        raise ValueError("cameras: no camera topic given")
    per_camera = {name: _padded(node.p(name), len(cameras)) for name in _PER_CAMERA}
    topics = {}
    for k, camera in enumerate(cameras):
        entry = CameraTopics(camera, *(per_camera[name][k] for name in _PER_CAMERA))
        if bool(entry.depth) != bool(entry.camera_info):
            raise ValueError(
                f"cameras: {camera!r} needs both a depth topic and a camera_info topic "
                f"(got depth_topics {entry.depth!r}, camera_info_topics {entry.camera_info!r})"
            )
        for param, name in zip(("cameras", *_PER_CAMERA), vars(entry).values()):
            if name:
                _check_name(node, param, name)
        topics[resolve_topic(node, camera)] = entry
    return topics


_PER_CAMERA = ("detections", "depth_topics", "camera_info_topics")


def _padded(values, n: int) -> list[str]:
    values = [str(v) for v in values]
    return (values + [""] * n)[:n]


def _check_name(node, param: str, name: str) -> None:
    try:
        resolve_topic(node, name)
    except Exception as exc:  # rclpy's name exceptions share no narrower base
        raise ValueError(f"{param}: {name!r} is not a valid topic name") from exc


def depth_input(node, topics: dict[str, CameraTopics]) -> DepthInput | None:
    """The depth pairing of the cameras that have depth (None when none has)."""
    cameras = [cam for cam, t in topics.items() if t.depth]
    if not cameras:
        return None
    return DepthInput(cameras, node.p("depth_stamp_tolerance_s"), node.p("depth_wait_s"))


def subscribe(node, topics: dict[str, CameraTopics], worker) -> list:
    """Subscriptions of every camera's images, detections, depth and CameraInfo."""
    reliability = (
        ReliabilityPolicy.RELIABLE
        if node.p("reliability") == "reliable"
        else ReliabilityPolicy.BEST_EFFORT
    )
    qos = QoSProfile(depth=node.p("qos_depth"), reliability=reliability)
    subs = []
    for camera, t in topics.items():
        kind = CompressedImage if is_compressed_topic(camera) else Image
        # Subscribed by the parameter's name: rcl resolves and remaps it to `camera`.
        subs.append(
            node.create_subscription(kind, t.image, lambda m, c=camera: node.on_image(c, m), qos)
        )
        if t.detections:
            subs.append(_detections(node, camera, t.detections, worker))
        if t.depth:
            subs += _depth(node, camera, t, worker.depth, qos)
    return subs


def _detections(node, camera: str, topic: str, worker):
    from vision_msgs.msg import Detection2DArray  # only needed when detections are used

    def on_detections(msg) -> None:
        stamp = ns_from_time(msg.header.stamp)
        worker.add_detections(camera, stamp, regions_from_detections(msg))

    return node.create_subscription(Detection2DArray, topic, on_detections, 10)


def _depth(node, camera: str, t: CameraTopics, depth: DepthInput, qos) -> list:
    def on_depth(msg) -> None:
        depth.put_depth(camera, ns_from_time(msg.header.stamp), msg)

    def on_info(msg) -> None:
        depth.put_info(camera, msg)

    return [
        node.create_subscription(Image, t.depth, on_depth, qos),
        node.create_subscription(CameraInfo, t.camera_info, on_info, qos),
    ]
