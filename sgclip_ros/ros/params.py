"""Perception-node parameter schema: types, ranges and read-only flags; defaults from YAML.

The values live in one place, ``config/sgclip.yaml``; this module adds what a YAML file cannot
say (ranges, read-only, choices) and builds rclpy ParameterDescriptors from it. No rclpy import:
the descriptor classes come from rcl_interfaces.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

PACKAGE = "sgclip_ros"
# The worst allowed pair-crop count per frame; bench/crop_memory.py measures its peak memory.
MAX_CROPS_PER_FRAME = 1024


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: read-only (rclpy refuses to set it after start), or live (the node's
    on-set callback applies it while running)."""

    name: str
    description: str
    read_only: bool = False
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    validator: Callable[[object], str | None] | None = None  # for values ranges cannot say

    def descriptor(self, value) -> ParameterDescriptor:
        """A ParameterDescriptor with this spec's range (typed after the default value)."""
        text = self.description + (f" One of: {', '.join(self.choices)}." if self.choices else "")
        desc = ParameterDescriptor(name=self.name, description=text, read_only=self.read_only)
        if self.low is not None and isinstance(value, bool) is False:
            if isinstance(value, int):
                desc.integer_range = [
                    IntegerRange(from_value=int(self.low), to_value=int(self.high), step=1)
                ]
            elif isinstance(value, float):
                desc.floating_point_range = [
                    FloatingPointRange(from_value=float(self.low), to_value=float(self.high))
                ]
        return desc

    @property
    def live(self) -> bool:
        return not self.read_only

    def check(self, value) -> str | None:
        """Why ``value`` is not acceptable, or None (ranges are also enforced by rclpy)."""
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}"
        if self.low is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not self.low <= value <= self.high:
                return f"{self.name} must be in [{self.low:g}, {self.high:g}], got {value!r}"
        return self.validator(value) if self.validator else None


def live(name: str, description: str, **fields) -> ParamSpec:
    """A parameter the node applies while running (`ros2 param set`)."""
    return ParamSpec(name, description, read_only=False, **fields)


def fixed(name: str, description: str, **fields) -> ParamSpec:
    """A parameter read once, at configure or activate (read-only)."""
    return ParamSpec(name, description, read_only=True, **fields)


def _image_size(value) -> str | None:
    try:  # rclpy hands integer arrays over as array.array
        values = [int(v) for v in value]
    except (TypeError, ValueError):
        values = []
    if len(values) != 2 or any(not 0 <= v <= 100_000 for v in values):
        return (
            "detection_image_size must be [width, height] in pixels ([0, 0]: the image's), "
            f"got {value!r}"
        )
    if (values[0] == 0) != (values[1] == 0):
        return f"detection_image_size needs both width and height (or both 0), got {list(values)}"
    return None


PERCEPTION_PARAMS = (
    fixed("autostart", "Configure and activate at start-up."),
    fixed(
        "cameras",
        "Camera topics (relative: in the node namespace); resolved '.../compressed' = "
        "CompressedImage.",
    ),
    fixed("detections", "Detection2DArray topic per camera ('' = built-in)."),
    live("detection_wait_s", "Seconds a frame waits for its detections.", low=0.0, high=5.0),
    live(
        "detection_stamp_tolerance_s",
        "Pair a detection set with the nearest frame within this many seconds (0 = exact).",
        low=0.0,
        high=1.0,
    ),
    live(
        "detection_image_size",
        "[width, height] the detector's boxes refer to ([0, 0] = the image's own size).",
        validator=_image_size,
    ),
    fixed("depth_topics", "Aligned depth Image topic per camera (16UC1 mm or 32FC1 m; '' = none)."),
    fixed("camera_info_topics", "CameraInfo topic per camera, required with a depth topic."),
    live(
        "depth_stamp_tolerance_s",
        "Pair depth with the colour frame nearest in stamp within this many seconds.",
        low=0.0,
        high=1.0,
    ),
    live("depth_wait_s", "Seconds a frame waits for its depth.", low=0.0, high=1.0),
    fixed(
        "proposer",
        "Built-in region proposer without detections: colour blobs, or depth (plane + components).",
        choices=("color", "depth"),
    ),
    fixed(
        "reliability",
        "Image subscription reliability.",
        choices=("best_effort", "reliable"),
    ),
    fixed("qos_depth", "Image subscription queue depth.", low=1, high=100),
    live("max_pixels", "Largest accepted width*height.", low=1, high=200_000_000),
    live("max_stamp_age_s", "Stale-frame limit in seconds (0 = off).", low=0.0, high=3600.0),
    live("max_stamp_future_s", "Future-stamp limit in seconds.", low=0.0, high=3600.0),
    fixed("model_root", "Folder all model paths must stay in ('' = package models/)."),
    fixed("model_dir", "Model folder relative to model_root."),
    fixed(
        "backend",
        "Inference backend.",
        choices=("auto", "tensorrt", "onnxruntime", "onnxruntime-int8", "aoti", "torch"),
    ),
    fixed("device", "auto, cpu, cuda or cuda:N."),
    fixed("preprocess", "Crop preprocessing.", choices=("exact", "fast")),
    live("concepts_file", "Concept list YAML (relative: in the package share)."),
    live("window_size", "Frames per window.", low=1, high=64),
    live("window_stride", "New frames between scene graphs.", low=1, high=64),
    live("window_max_age_s", "Max frame age in the window (0 = off).", low=0.0, high=3600.0),
    live("max_objects", "Most objects scored per frame.", low=1, high=64),
    live(
        "max_crops_per_frame",
        "Most object-pair crops encoded per frame (the most confident pairs are kept).",
        low=1,
        high=MAX_CROPS_PER_FRAME,
    ),
    live("attribute_threshold", "Attribute holds at this score.", low=0.0, high=1.0),
    live("relation_threshold", "Relation holds at this score.", low=0.0, high=1.0),
    live("top_k_labels", "Category candidates per object.", low=1, high=20),
    live("publish_annotated", "Publish annotated images."),
    live("publish_detections_2d", "Publish vision_msgs/Detection2DArray."),
    live("publish_detections_3d", "Publish vision_msgs/Detection3DArray (cameras with depth)."),
    live("publish_markers", "Publish visualization_msgs/MarkerArray for RViz."),
    live(
        "annotated_relations", "Relations drawn on annotated images and as markers.", low=0, high=50
    ),
    fixed("diagnostics_period_s", "Seconds between diagnostics.", low=0.1, high=60.0),
)
SPECS = {p.name: p for p in PERCEPTION_PARAMS}


def share_dir() -> Path:
    """The installed share/sgclip_ros folder, or the source tree when not installed."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError, ValueError):
        return Path(__file__).resolve().parents[2]


def resolve_share_path(path: str) -> Path:
    """An absolute path as is; a relative one inside the package share folder."""
    return Path(path) if os.path.isabs(path) else share_dir() / path


def load_defaults(path: str | Path | None = None, node_name: str = "/**") -> dict:
    """The ros__parameters of ``node_name`` (or ``/**``) in the defaults YAML."""
    path = Path(path) if path else share_dir() / "config" / "sgclip.yaml"
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping of node names")
    section = data.get(node_name) or data.get("/**")
    if not isinstance(section, dict) or "ros__parameters" not in section:
        raise ValueError(f"{path}: no '{node_name}: ros__parameters:' section")
    return dict(section["ros__parameters"])
