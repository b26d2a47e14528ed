"""Aligned depth and CameraInfo stored in a bag, for the offline bag runner.

`--depth D1,D2` and `--camera-info C1,C2` name, per `--topics` entry, the camera's aligned depth
Image topic and its CameraInfo topic ("" for a camera without depth). The bag is read once, in
log order: an image of a camera with depth is held until a depth message stamped at or after it
(later depth is only farther in time) and a CameraInfo have been read, or the bag ends, so depth
logged a little after its colour frame still pairs. Pairing, decoding and the problem counts are
the node's (`sgclip_ros.ros.depth_input.DepthInput`), without waiting.
"""

from __future__ import annotations

from collections import deque

from sgclip_ros.ros.depth_input import DepthInput


def pair_depth_topics(topics: list[str], depth: str | None, info: str | None) -> dict:
    """image topic -> (depth topic, camera info topic), for the cameras that have both."""
    if not depth and not info:
        return {}
    depths = [t.strip() for t in (depth or "").split(",")]
    infos = [t.strip() for t in (info or "").split(",")]
    if not topics:
        raise ValueError("--depth/--camera-info need --topics (one entry per image topic)")
    if len(depths) != len(topics) or len(infos) != len(topics):
        raise ValueError(
            f"--depth and --camera-info need one entry per --topics entry ({len(topics)}), "
            f"got {len(depths)} and {len(infos)}"
        )
    pairs = {}
    for image, d, i in zip(topics, depths, infos):
        if bool(d) != bool(i):
            raise ValueError(f"{image}: depth needs both a depth topic and a camera info topic")
        if d:
            pairs[image] = (d, i)
    return pairs


class BagDepth:
    """Holds images of cameras with depth until their depth has been read."""

    def __init__(self, pairs: dict, tolerance_s: float = 0.02):
        self.pairs = pairs
        self.input = DepthInput(list(pairs), tolerance_s, wait_s=0.0)
        self.side = {d: (image, "depth") for image, (d, _) in pairs.items()}
        self.side.update({i: (image, "info") for image, (_, i) in pairs.items()})
        self._held: dict[str, deque] = {image: deque() for image in pairs}
        self._newest: dict[str, int] = {}

    def holds(self, image_topic: str) -> bool:
        return image_topic in self._held

    def add_side(self, topic: str, stamp_ns: int, msg) -> list:
        """A depth or CameraInfo message; returns the held images now ready, oldest first."""
        image, kind = self.side[topic]
        if kind == "info":
            self.input.put_info(image, msg)
            return self._ready(image)
        self.input.put_depth(image, stamp_ns, msg)
        self._newest[image] = max(stamp_ns, self._newest.get(image, stamp_ns))
        return self._ready(image)

    def hold(self, image_topic: str, stamp_ns: int, item) -> list:
        """Hold an image (``item`` is handed back when ready); returns the images now ready."""
        self._held[image_topic].append((stamp_ns, item))
        return self._ready(image_topic)

    def flush(self) -> list:
        """Every image still held (the bag ended): processed with what depth there is."""
        out = [item for held in self._held.values() for _, item in held]
        for held in self._held.values():
            held.clear()
        return out

    def _ready(self, image: str) -> list:
        """Held images with depth at or after their stamp read, once CameraInfo is known."""
        held, newest = self._held[image], self._newest.get(image)
        out = []
        if not self.input.has_info(image):
            return out
        while held and newest is not None and newest >= held[0][0]:
            out.append(held.popleft()[1])
        return out

    def summary(self) -> dict:
        """Per camera: its topics, frames paired with depth and depth problems by reason."""
        return {
            image: {
                "depth": d,
                "camera_info": i,
                "paired": self.input.paired.get(image, 0),
                "problems": dict(self.input.problems.get(image, {})),
            }
            for image, (d, i) in self.pairs.items()
        }
