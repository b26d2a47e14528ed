"""The Kilted and Jazzy wheel sets differ only in their ROS wheels, and every pin is pinned."""

from __future__ import annotations

from pathlib import Path

from packaging.requirements import Requirement

REQ = Path(__file__).resolve().parent.parent / "requirements"


def _requirements(name: str) -> dict[str, Requirement]:
    lines = (REQ / name).read_text().splitlines()
    parsed = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return {r.name.lower(): r for r in parsed}


def _non_ros(reqs: dict[str, Requirement]) -> dict[str, str]:
    return {name: str(r.specifier) for name, r in reqs.items() if not name.startswith("ros-")}


def test_jazzy_and_kilted_share_every_non_ros_pin():
    assert _non_ros(_requirements("jazzy.txt")) == _non_ros(_requirements("runtime.txt"))


def test_every_direct_dependency_is_pinned_in_its_constraints():
    for direct, constraints in [
        ("runtime.txt", "constraints.txt"),
        ("jazzy.txt", "constraints-jazzy.txt"),
    ]:
        pins = _requirements(constraints)
        for name, req in _requirements(direct).items():
            assert str(req.specifier).startswith("=="), f"{direct}: {req} is not an exact pin"
            if name.startswith("ros-"):
                continue  # the wheels' own metadata names differ (rclpy for ros-rclpy)
            assert name in pins, f"{constraints} does not pin {name}"
            assert pins[name].specifier == req.specifier, f"{direct} and {constraints}: {name}"


def test_jazzy_pins_jazzy_wheels_only():
    names = _requirements("jazzy.txt")
    ros = [n for n in names if n.startswith("ros-")]
    assert ros and all(n.startswith("ros-jazzy-") for n in ros), ros
