"""Detections stored in a bag (vision_msgs/msg/Detection2DArray) for the offline bag runner.

Each detection topic is read once, before the images, into a stamp-keyed index of core Regions
(converted by `sgclip_ros.ros.detections.regions_from_detections`, the node's own converter).
An image takes the set whose header stamp equals its own; with a tolerance > 0, the nearest set
within it (the earlier one on a tie; a set may serve more than one image).

Type definitions: taken from the bag when it stores them (mcap, and sqlite3 bags of rosbag2
Iron or newer); otherwise (e.g. Humble sqlite3 bags) from the installed vision_msgs package,
``share/vision_msgs/msg/*.msg`` under a prefix of ``AMENT_PREFIX_PATH``.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.interfaces import MessageDefinitionFormat
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

from sgclip_ros.core.regions import Region
from sgclip_ros.ros.detections import regions_from_detections

DETECTIONS = "vision_msgs/msg/Detection2DArray"
_NS = 1_000_000_000


def types_from_bag(conn) -> dict | None:
    """The type definitions a connection carries (with its dependencies), or None."""
    msgdef = conn.msgdef
    if msgdef.format == MessageDefinitionFormat.NONE or not msgdef.data.strip():
        return None
    if msgdef.format == MessageDefinitionFormat.MSG:
        return dict(get_types_from_msg(msgdef.data, conn.msgtype))
    sep = "=" * 80 + "\n"  # IDL, as rosbags.highlevel.AnyReader reads it
    if not msgdef.data.startswith(f"{sep}IDL: "):
        return dict(get_types_from_idl(msgdef.data))
    types: dict = {}
    for part in msgdef.data.split(sep)[1:]:
        types.update(get_types_from_idl(part.split("\n", 1)[1]))
    return types


def installed_vision_msgs(prefixes: str | None = None) -> tuple[dict, Path]:
    """(types, folder) of the first ``<prefix>/share/vision_msgs/msg`` with Detection2DArray.msg.

    ``prefixes`` defaults to ``$AMENT_PREFIX_PATH``; raises LookupError naming where it looked.
    """
    text = os.environ.get("AMENT_PREFIX_PATH", "") if prefixes is None else prefixes
    folders = [Path(p) / "share" / "vision_msgs" / "msg" for p in text.split(os.pathsep) if p]
    for folder in folders:
        if (folder / "Detection2DArray.msg").is_file():
            types: dict = {}
            for path in sorted(folder.glob("*.msg")):
                name = f"vision_msgs/msg/{path.stem}"
                types.update(get_types_from_msg(path.read_text(encoding="utf-8"), name))
            return types, folder
    looked = ", ".join(map(str, folders)) or "AMENT_PREFIX_PATH is empty"
    raise LookupError(f"vision_msgs is not installed (looked in: {looked})")


def detection_typestore(conn):
    """(typestore, source) able to deserialise ``conn``'s Detection2DArray messages."""
    types = types_from_bag(conn)
    if types:
        store, source = get_typestore(Stores.EMPTY), "the bag"
    else:
        try:
            types, folder = installed_vision_msgs()
        except LookupError as exc:
            raise ValueError(
                f"{conn.topic}: the bag stores no definition of {DETECTIONS} and {exc}; "
                "install ros-$ROS_DISTRO-vision-msgs and source its setup file"
            ) from None
        store, source = get_typestore(Stores.ROS2_HUMBLE), str(folder)
    store.register(types)
    if DETECTIONS not in store.types:
        raise ValueError(f"{conn.topic}: no {DETECTIONS} definition in {source}")
    if conn.digest and conn.digest.startswith("RIHS01_"):
        have = store.hash_rihs01(DETECTIONS)
        if have != conn.digest:
            raise ValueError(
                f"{conn.topic}: the bag's {DETECTIONS} (hash {conn.digest}) is not the "
                f"definition in {source} (hash {have})"
            )
    return store, source


@dataclass
class DetectionIndex:
    """The detection sets of one topic, by header stamp (ns)."""

    topic: str
    source: str = ""
    sets: dict[int, list[Region]] = field(default_factory=dict)
    bad: int = 0
    used: int = 0
    _stamps: list[int] = field(default_factory=list)

    def add(self, stamp_ns: int, regions: list[Region]) -> None:
        self.sets[stamp_ns] = regions
        self._stamps = []

    def match(self, stamp_ns: int, tolerance_ns: int = 0) -> list[Region] | None:
        """The set stamped ``stamp_ns``, else the nearest within ``tolerance_ns``, else None."""
        regions = self.sets.get(stamp_ns)
        if regions is None and tolerance_ns > 0 and self.sets:
            if len(self._stamps) != len(self.sets):
                self._stamps = sorted(self.sets)
            i = bisect.bisect_left(self._stamps, stamp_ns)
            near = self._stamps[max(0, i - 1) : i + 1]
            best = min(near, key=lambda s: (abs(s - stamp_ns), s))
            if abs(best - stamp_ns) <= tolerance_ns:
                regions = self.sets[best]
        if regions is not None:
            self.used += 1
        return regions

    def summary(self) -> dict:
        return {
            "topic": self.topic,
            "sets": len(self.sets),
            "bad": self.bad,
            "used": self.used,
            "types_from": self.source,
        }


def pair_topics(image_topics: list[str], detection_arg: str | None) -> dict[str, str]:
    """image topic -> detection topic from ``--topics`` and ``--detections`` (same order)."""
    if not detection_arg:
        return {}
    detections = [t.strip() for t in detection_arg.split(",")]
    if not image_topics:
        raise ValueError("--detections needs --topics: one detection topic per image topic")
    if len(detections) != len(image_topics) or not all(detections):
        raise ValueError(
            f"--detections names {len(detections)} topic(s) for {len(image_topics)} image "
            f"topic(s) in --topics ({','.join(image_topics)}): give one per image topic, "
            "in the same order"
        )
    return dict(zip(image_topics, detections))


def read_detections(reader, pairs: dict[str, str]) -> dict[str, DetectionIndex]:
    """image topic -> DetectionIndex of its detection topic (read from ``reader`` in full)."""
    by_topic = {c.topic: c for c in reader.connections}
    indexes: dict[str, DetectionIndex] = {}
    stores = {}
    for topic in dict.fromkeys(pairs.values()):
        conn = by_topic.get(topic)
        if conn is None:
            have = sorted(c.topic for c in reader.connections if c.msgtype == DETECTIONS)
            raise ValueError(f"no detection topic {topic!r} in the bag; {DETECTIONS}: {have}")
        if conn.msgtype != DETECTIONS:
            raise ValueError(f"--detections {topic}: is {conn.msgtype}, not {DETECTIONS}")
        stores[topic], source = detection_typestore(conn)
        indexes[topic] = DetectionIndex(topic, source)
    if not indexes:
        return {}  # (rosbags reads every topic when given no connections)
    conns = [by_topic[t] for t in indexes]
    for conn, _, raw in reader.messages(connections=conns):
        index = indexes[conn.topic]
        try:
            msg = stores[conn.topic].deserialize_cdr(raw, DETECTIONS)
            stamp = int(msg.header.stamp.sec) * _NS + int(msg.header.stamp.nanosec)
            index.add(stamp, regions_from_detections(msg))
        except Exception:  # a corrupt stored message: counted; its frame goes without it
            index.bad += 1
    return {image: indexes[topic] for image, topic in pairs.items()}
