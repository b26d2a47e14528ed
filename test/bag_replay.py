"""Record a live camera topic into a rosbag2 bag and play it back with /clock, over real DDS.

Stand-ins for `ros2 bag record` and `ros2 bag play --clock`: rosbag2 is not on PyPI, so these
use `rosbags` for the files and rclpy for the topics. The player publishes each message at its
recorded pace and the recorded time on /clock (at each message and 20 Hz in between), as
`ros2 bag play --clock 20` does.
"""

from __future__ import annotations

import time
from pathlib import Path

from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

IMAGE = "sensor_msgs/msg/Image"


def record(client, topic: str, path: Path, publish_frame, frames: int, period_s: float) -> list:
    """Publish ``frames`` frames with ``publish_frame(i)`` and record what arrives on ``topic``.

    Returns the recorded header stamps (ns). Log times are the receive times, as rosbag2's."""
    from sensor_msgs.msg import Image

    received: list = []
    client.node.create_subscription(
        Image, topic, lambda msg: received.append((time.time_ns(), msg)), 100
    )
    client.spin_for(0.5)  # discovery
    for i in range(frames):
        publish_frame(i)
        client.spin_for(period_s)
    client.spin_for(0.5)
    store = get_typestore(Stores.ROS2_HUMBLE)
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(topic, IMAGE, typestore=store)
        for log_ns, msg in received:
            writer.write(conn, log_ns, serialize_message(msg))
    return [m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec for _, m in received]


def play_with_clock(client, path: Path, clock_hz: float = 20.0) -> int:
    """Publish the bag's images at their recorded pace, with the recorded time on /clock."""
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    clock_pub = client.node.create_publisher(Clock, "/clock", 10)
    publishers: dict = {}
    with Reader(path) as reader:
        messages = [(c.topic, log, bytes(raw)) for c, log, raw in reader.messages()]
    for topic, _, _ in messages:
        publishers.setdefault(topic, client.publisher(Image, topic, reliable=True, depth=100))
    client.spin_for(1.0)  # discovery of the subscriber
    start_wall, start_log = time.monotonic(), messages[0][1]
    for topic, log_ns, raw in messages:
        # /clock ticks up to this message's time, then the message goes out.
        while True:
            elapsed = time.monotonic() - start_wall
            now_ns = start_log + int(elapsed * 1e9)
            clock_pub.publish(_clock(Clock, min(now_ns, log_ns)))
            if now_ns >= log_ns:
                break
            client.spin_for(min(1.0 / clock_hz, (log_ns - now_ns) / 1e9))
        publishers[topic].publish(deserialize_message(raw, Image))
    for _ in range(int(clock_hz * 3)):  # let the last window finish on a ticking clock
        elapsed = time.monotonic() - start_wall
        clock_pub.publish(_clock(Clock, start_log + int(elapsed * 1e9)))
        client.spin_for(1.0 / clock_hz)
    return len(messages)


def _clock(clock_type, ns: int):
    msg = clock_type()
    msg.clock.sec, msg.clock.nanosec = divmod(ns, 1_000_000_000)
    return msg
