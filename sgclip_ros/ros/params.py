"""Perception-node parameter schema: types, ranges and read-only flags; defaults from YAML.

The values live in one place, ``config/sgclip.yaml``; this module adds what a YAML file cannot
say (ranges, read-only, choices) and builds rclpy ParameterDescriptors from it. No rclpy import:
the descriptor classes come from rcl_interfaces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

PACKAGE = "sgclip_ros"


@dataclass(frozen=True)
class ParamSpec:
    name: str
    description: str
    read_only: bool = False
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

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

    def check(self, value) -> str | None:
        """Why ``value`` is not acceptable, or None (ranges are also enforced by rclpy)."""
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}"
        return None


PERCEPTION_PARAMS = (
    ParamSpec("autostart", "Configure and activate at start-up.", read_only=True),
    ParamSpec(
        "cameras",
        "Camera topics (relative: in the node namespace); resolved '.../compressed' = "
        "CompressedImage.",
        read_only=True,
    ),
    ParamSpec("detections", "Detection2DArray topic per camera ('' = built-in).", read_only=True),
    ParamSpec("detection_wait_s", "Seconds a frame waits for its detections.", low=0.0, high=5.0),
    ParamSpec(
        "reliability",
        "Image subscription reliability.",
        read_only=True,
        choices=("best_effort", "reliable"),
    ),
    ParamSpec("qos_depth", "Image subscription queue depth.", read_only=True, low=1, high=100),
    ParamSpec("max_pixels", "Largest accepted width*height.", low=1, high=200_000_000),
    ParamSpec("max_stamp_age_s", "Stale-frame limit in seconds (0 = off).", low=0.0, high=3600.0),
    ParamSpec("max_stamp_future_s", "Future-stamp limit in seconds.", low=0.0, high=3600.0),
    ParamSpec(
        "model_root", "Folder all model paths must stay in ('' = package models/).", read_only=True
    ),
    ParamSpec("model_dir", "Model folder relative to model_root.", read_only=True),
    ParamSpec(
        "backend",
        "Inference backend.",
        read_only=True,
        choices=("auto", "tensorrt", "onnxruntime", "aoti", "torch"),
    ),
    ParamSpec("device", "auto, cpu, cuda or cuda:N.", read_only=True),
    ParamSpec("preprocess", "Crop preprocessing.", read_only=True, choices=("exact", "fast")),
    ParamSpec("concepts_file", "Concept list YAML (relative: in the package share)."),
    ParamSpec("window_size", "Frames per window.", low=1, high=64),
    ParamSpec("window_stride", "New frames between scene graphs.", low=1, high=64),
    ParamSpec("window_max_age_s", "Max frame age in the window (0 = off).", low=0.0, high=3600.0),
    ParamSpec("max_objects", "Most objects scored per frame.", low=1, high=64),
    ParamSpec("attribute_threshold", "Attribute holds at this score.", low=0.0, high=1.0),
    ParamSpec("relation_threshold", "Relation holds at this score.", low=0.0, high=1.0),
    ParamSpec("top_k_labels", "Category candidates per object.", low=1, high=20),
    ParamSpec("publish_annotated", "Publish annotated images."),
    ParamSpec("annotated_relations", "Relations drawn on annotated images.", low=0, high=50),
    ParamSpec(
        "diagnostics_period_s", "Seconds between diagnostics.", read_only=True, low=0.1, high=60.0
    ),
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
