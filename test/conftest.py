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
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or "0"
    base = 10 + 20 * (int(worker) % 4)
    return base + next(_domains) % 20


@pytest.fixture
def needs_install() -> None:
    """Fail (not skip) when the install space is not sourced: `make test` always sources it."""
    if not _have_generated_interfaces():
        pytest.fail(
            "sgclip_ros.msg is not importable: run through `make test` or source install/setup.sh"
        )
