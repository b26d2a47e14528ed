"""Lint package.xml: valid format 3 (catkin_pkg), and honest dependencies.

Checks that every package CMakeLists.txt finds, every message package the interface files
use and every rclpy-side message module the Python code imports is declared in package.xml.
"""

from __future__ import annotations

import pathlib
import re
import sys

from catkin_pkg.package import InvalidPackage, parse_package

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Packages that are provided by the build tool chain itself rather than declared.
_IMPLICIT = {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"}
_ROS_PY_MODULES = re.compile(
    r"^\s*(?:from|import)\s+(\w+_msgs|\w+_interfaces|rclpy|ament_index_python|launch_ros|launch)\b",
    re.M,
)


def _declared(pkg) -> tuple[set[str], set[str]]:
    build = {d.name for d in pkg.build_depends + pkg.buildtool_depends}
    run = {d.name for d in pkg.exec_depends + pkg.build_export_depends}
    return build, run


def main() -> int:
    try:
        pkg = parse_package(ROOT / "package.xml")
        pkg.validate()
    except InvalidPackage as exc:
        print(f"package.xml: invalid: {exc}")
        return 1
    errors = []
    if pkg.package_format != 3:
        errors.append(f"package.xml: format {pkg.package_format}, expected 3")
    build, run = _declared(pkg)
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for name in re.findall(r"find_package\((\w+)", cmake):
        if name not in build | _IMPLICIT:
            errors.append(
                f"CMakeLists.txt finds '{name}' but package.xml has no build depend on it"
            )
    for iface in (
        sorted(ROOT.glob("msg/*.msg"))
        + sorted(ROOT.glob("srv/*.srv"))
        + sorted(ROOT.glob("action/*.action"))
    ):
        for dep in set(re.findall(r"^\s*(\w+)/\w+", iface.read_text(), re.M)):
            if dep not in build or dep not in run:
                errors.append(f"{iface.relative_to(ROOT)} uses '{dep}', not declared as <depend>")
    sources = sorted((ROOT / "sgclip_ros").rglob("*.py")) + sorted(ROOT.glob("launch/*.py"))
    for src in sources:
        for dep in set(_ROS_PY_MODULES.findall(src.read_text())):
            if dep not in run:
                errors.append(f"{src.relative_to(ROOT)} imports '{dep}', not an exec depend")
    for line in errors:
        print(line)
    verdict = f"{len(errors)} problems" if errors else "OK"
    print(f"package.xml: {pkg.name} {pkg.version}, {verdict}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
