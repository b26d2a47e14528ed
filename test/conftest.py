"""Shared test fixtures: isolated ROS domains and helpers to find the colcon install space."""

from __future__ import annotations

import itertools
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
_domains = itertools.count(0)


def _have_generated_interfaces() -> bool:
    try:
        import sgclip_ros.msg  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def ros_domain() -> int:
    """A ROS_DOMAIN_ID no other test of this run uses (tests may run in parallel by worker)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:  # one process: 10..89, so a run of tests rarely comes back to a domain
        return 10 + next(_domains) % 80
    base = 10 + 20 * (int(worker[2:] or "0") % 4)
    return base + next(_domains) % 20


@pytest.fixture
def needs_install() -> None:
    """Fail (not skip) when the install space is not sourced: `make test` always sources it."""
    if not _have_generated_interfaces():
        pytest.fail(
            "sgclip_ros.msg is not importable: run through `make test` or source install/setup.sh"
        )


# Test modules that need ROS (rclpy, DDS, generated messages, launch, the ros2 CLI): the set
# `make test ROS_DISTRO=jazzy` runs (`pytest -m ros`). A module may also mark itself.
ROS_FACING = {
    "test_bag_runner",
    "test_colcon_build",
    "test_concept_changes",
    "test_conversions",
    "test_demo",
    "test_detection_lag_node",
    "test_diagnostics",
    "test_image_conversion",
    "test_launch_and_config",
    "test_lifecycle_cycles",
    "test_live_params",
    "test_live_params_depth",
    "test_perception_depth_node",
    "test_perception_detections",
    "test_perception_faults",
    "test_perception_node",
    "test_perception_robustness",
    "test_planner_api_key_env",
    "test_planner_node",
    "test_planner_node_3d",
    "test_roundtrip_dds",
    "test_ros2_cli",
    "test_ros2_launch",
    "test_sim_time_replay",
}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in ROS_FACING:
            item.add_marker(pytest.mark.ros)
