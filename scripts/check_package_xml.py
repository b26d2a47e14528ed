"""Lint package.xml: valid format 3 (catkin_pkg), honest and installable dependencies.

    python scripts/check_package_xml.py [--root DIR] [--rosdep-snapshot DIR] [--no-rosdep]

Checks that
- every package CMakeLists.txt finds and every message package the interface files use is
  declared in package.xml;
- every import of the installed code (sgclip_ros/, launch/*.py, bin/*) is declared: a ROS
  package or rosdep key in package.xml, a line of requirements/robot.txt, or listed in OPTIONAL
  below with the reason;
- every dependency key resolves offline, as `rosdep install --from-paths src --ignore-src` would
  on a robot, for Humble (Ubuntu jammy) and Jazzy/Kilted (Ubuntu noble): a ROS package released
  into that distribution, or a rosdep key with an apt rule for that Ubuntu release. The rosdep
  database snapshot is --rosdep-snapshot, else $SGCLIP_ROSDEP_SNAPSHOT, else ../shared/rosdep
  next to the repository; without one (and not asked for) that part is skipped with a note.
"""

from __future__ import annotations

import argparse
import ast
import functools
import os
import pathlib
import re
import sys
from dataclasses import dataclass, field

import yaml
from catkin_pkg.package import InvalidPackage, parse_package

ROOT = pathlib.Path(__file__).resolve().parent.parent
SNAPSHOT_ENV = "SGCLIP_ROSDEP_SNAPSHOT"
# (ROS distribution, Ubuntu codename) pairs the package is released for.
PLATFORMS = (("humble", "jammy"), ("jazzy", "noble"), ("kilted", "noble"))
ROBOT_REQUIREMENTS = "requirements/robot.txt"
# Packages that are provided by the build tool chain itself rather than declared.
_IMPLICIT = {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"}
# Import name -> the rosdep key that installs it (apt), for names that differ from the key.
IMPORT_KEYS = {
    "cv2": "python3-opencv",
    "numpy": "python3-numpy",
    "scipy": "python3-scipy",
    "tqdm": "python3-tqdm",
    "yaml": "python3-yaml",
}
# Import name -> the PyPI distribution that provides it (requirements/robot.txt).
IMPORT_DISTS = {"open_clip": "open_clip_torch"}
# Rosdep keys that resolve but install the wrong thing for this package.
UNSUITABLE_KEYS = {
    "python3-torch": "the distribution's CPU-only torch, older than the torch>=2.4 the code "
    "needs; torch comes from requirements/robot.txt (CUDA wheel) or JetPack",
    "python3-torchvision": "built for the distribution's python3-torch; torchvision comes from "
    "requirements/robot.txt or JetPack",
}
# Imports that may be missing at run time without breaking the package, and why.
OPTIONAL = {
    "onnxruntime": "optional backend (falls back to torch); `pip install onnxruntime` (CPU) or "
    "`onnxruntime-gpu` (CUDA) conflict, so the robot picks one (docs/install.md)",
    "tensorrt": "optional backend (falls back); TensorRT 10 comes with JetPack, on x86 it is "
    "pip-installed from NVIDIA's index (docs/install.md)",
}


@dataclass
class Report:
    """Problems found, and what each key resolved to per platform."""

    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    resolved: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    skipped: str = ""  # why key resolution did not run


# ---- rosdep snapshot -------------------------------------------------------------------------


@dataclass
class Snapshot:
    """The rosdep rules (base.yaml + python.yaml) and the ROS packages of each distribution."""

    path: pathlib.Path
    rules: dict
    ros_packages: dict[str, set[str]]


def _load_yaml(path: pathlib.Path):
    """yaml.safe_load, with libyaml's CSafeLoader when present (the snapshot is ~0.7 MB)."""
    safe_loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as stream:
        return yaml.load(stream, Loader=safe_loader)  # a SafeLoader: no arbitrary objects


@functools.lru_cache(maxsize=4)
def load_snapshot(path: pathlib.Path, distros: tuple[str, ...] | None = None) -> Snapshot:
    """Read <path>/rosdep/{base,python}.yaml and <path>/<distro>/distribution.yaml (cached)."""
    rules: dict = {}
    for name in ("base.yaml", "python.yaml"):
        rules.update(_load_yaml(path / "rosdep" / name) or {})
    ros_packages = {}
    for distro in distros or sorted({d for d, _ in PLATFORMS}):
        repos = (_load_yaml(path / distro / "distribution.yaml") or {}).get("repositories", {})
        names: set[str] = set()
        for repo, info in repos.items():
            release = (info or {}).get("release")
            if release and release.get("version"):  # no version: not (yet) released
                names.update(release.get("packages") or [repo])
        ros_packages[distro] = names
    return Snapshot(path, rules, ros_packages)


def find_snapshot(root: pathlib.Path, explicit: str | None) -> tuple[pathlib.Path | None, bool]:
    """(snapshot dir or None, whether it was asked for explicitly)."""
    given = explicit or os.environ.get(SNAPSHOT_ENV)
    if given:
        return pathlib.Path(given).expanduser().resolve(), True
    default = (root / ".." / "shared" / "rosdep").resolve()
    return (default if default.is_dir() else None), False


def resolve_apt(rules: dict, key: str, codename: str, os_name: str = "ubuntu"):
    """(apt packages, "") when ``key`` has an apt rule for os_name:codename, else (None, why).

    Follows rosdep's rule layout: os -> optional {codename | '*'} -> list (default installer,
    apt) | {installer: list | {packages: list}} | null.
    """
    if key not in rules:
        return None, "is not a rosdep key (not in base.yaml or python.yaml)"
    entry = rules[key]
    if not isinstance(entry, dict) or os_name not in entry:
        return None, f"has no rule for {os_name}"
    spec = entry[os_name]
    if isinstance(spec, dict) and (codename in spec or "*" in spec):
        spec = spec[codename] if codename in spec else spec["*"]
    elif isinstance(spec, dict) and not {"apt", "pip", "source"} & spec.keys():
        return None, f"has no rule for {os_name} {codename} (only {sorted(spec)})"
    if spec is None:
        return None, f"is not available on {os_name} {codename} (null rule)"
    if isinstance(spec, dict):
        if "apt" not in spec:
            return None, f"resolves only through {sorted(spec)} on {os_name} {codename}, not apt"
        spec = spec["apt"]
        spec = spec.get("packages", []) if isinstance(spec, dict) else spec
    if isinstance(spec, str):
        spec = spec.split()
    return list(spec or []), ""


def dependency_keys(pkg, distro: str) -> list[str]:
    """Every dependency key of package.xml whose condition holds on ``distro``."""
    pkg.evaluate_conditions({"ROS_VERSION": "2", "ROS_DISTRO": distro, "ROS_PYTHON_VERSION": "3"})
    deps = (
        pkg.buildtool_depends + pkg.build_depends + pkg.build_export_depends
        + pkg.buildtool_export_depends + pkg.exec_depends + pkg.test_depends + pkg.doc_depends
    )
    keys = []
    for dep in deps:
        if dep.evaluated_condition is not False and dep.name not in keys:
            keys.append(dep.name)
    return keys


def check_rosdep(pkg, snapshot: Snapshot, report: Report, platforms=PLATFORMS) -> None:
    """Each key must be a ROS package of the distro or an apt-resolvable rosdep key."""
    for distro, codename in platforms:
        where = f"{distro} (ubuntu:{codename})"
        released = snapshot.ros_packages.get(distro)
        if released is None:
            report.errors.append(f"rosdep snapshot has no {distro}/distribution.yaml")
            continue
        for key in dependency_keys(pkg, distro):
            if key == pkg.name:
                continue
            if key in released:
                apt = [f"ros-{distro}-{key.replace('_', '-')}"]
            else:
                apt, why = resolve_apt(snapshot.rules, key, codename)
                if apt is None:
                    report.errors.append(
                        f"package.xml: '{key}' does not resolve on {where}: it is not a ROS "
                        f"package released into {distro} and {why}"
                    )
                    continue
            report.resolved.setdefault(key, {})[where] = apt
    for key, why in UNSUITABLE_KEYS.items():
        if any(key in dependency_keys(pkg, d) for d, _ in platforms):
            report.errors.append(f"package.xml: '{key}' resolves to {why}")


# ---- imports of the installed code -----------------------------------------------------------


def robot_requirements(path: pathlib.Path) -> dict[str, str]:
    """Canonical distribution name -> requirement line of a pip requirements file."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    reqs: dict[str, str] = {}
    if not path.is_file():
        return reqs
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise ValueError(f"{path.name}:{number}: not a pip requirement: {exc}") from exc
        reqs[canonicalize_name(req.name)] = line
    return reqs


def installed_sources(root: pathlib.Path, package: str) -> list[pathlib.Path]:
    """The Python files CMakeLists.txt installs: the package, launch files and bin/ scripts."""
    files = sorted((root / package).rglob("*.py")) + sorted(root.glob("launch/*.py"))
    for script in sorted((root / "bin").glob("*")):
        shebang = script.read_bytes()[:128].split(b"\n", 1)[0] if script.is_file() else b""
        if b"python" in shebang:
            files.append(script)
    return [f for f in files if "__pycache__" not in f.parts]


def imports_of(path: pathlib.Path) -> list[tuple[str, int]]:
    """(top-level module, line) of every absolute import, including those inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def check_imports(root: pathlib.Path, pkg, report: Report) -> None:
    """Every third-party import is a declared key/ROS package, a robot.txt line or OPTIONAL."""
    from packaging.utils import canonicalize_name

    run = {d.name for d in pkg.exec_depends + pkg.build_export_depends}
    try:
        pip = robot_requirements(root / ROBOT_REQUIREMENTS)
    except ValueError as exc:
        report.errors.append(f"{ROBOT_REQUIREMENTS}: {exc}")
        pip = {}
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    seen: set[str] = set()
    for src in installed_sources(root, pkg.name):
        rel = src.relative_to(root)
        try:
            found = imports_of(src)
        except SyntaxError as exc:
            report.errors.append(f"{rel}: cannot parse: {exc}")
            continue
        for module, line in found:
            if module in stdlib or module == pkg.name:
                continue
            key = IMPORT_KEYS.get(module, module)
            dist = canonicalize_name(IMPORT_DISTS.get(module, module))
            if key in run or dist in pip:
                continue
            if (root / module).is_dir() or (root / f"{module}.py").is_file():
                report.errors.append(
                    f"{rel}:{line} imports '{module}', a directory of the repository that "
                    "CMakeLists.txt does not install: it is missing on a robot"
                )
                continue
            if module in OPTIONAL:
                if module not in seen:
                    report.notes.append(f"optional import '{module}': {OPTIONAL[module]}")
                seen.add(module)
                continue
            report.errors.append(
                f"{rel}:{line} imports '{module}', which is not declared: add <exec_depend>{key}"
                f"</exec_depend> to package.xml (a ROS package or rosdep key) or a line for "
                f"'{dist}' to {ROBOT_REQUIREMENTS}"
            )


# ---- build side (CMake, interface files) -----------------------------------------------------


def check_build(root: pathlib.Path, pkg, report: Report) -> None:
    """find_package() and message packages used by msg/srv/action files are declared."""
    build = {d.name for d in pkg.build_depends + pkg.buildtool_depends}
    run = {d.name for d in pkg.exec_depends + pkg.build_export_depends}
    cmake = root / "CMakeLists.txt"
    for name in re.findall(r"find_package\((\w+)", cmake.read_text() if cmake.is_file() else ""):
        if name not in build | _IMPLICIT:
            report.errors.append(
                f"CMakeLists.txt finds '{name}' but package.xml has no build depend on it"
            )
    for iface in (
        sorted(root.glob("msg/*.msg"))
        + sorted(root.glob("srv/*.srv"))
        + sorted(root.glob("action/*.action"))
    ):
        for dep in sorted(set(re.findall(r"^\s*(\w+)/\w+", iface.read_text(), re.M))):
            if dep not in build or dep not in run:
                report.errors.append(
                    f"{iface.relative_to(root)} uses '{dep}', not declared as <depend>"
                )


def robot_txt_overlaps(root: pathlib.Path, pkg, report: Report) -> None:
    """robot.txt must not pip-install what a declared apt key already provides."""
    from packaging.utils import canonicalize_name

    try:
        pip = robot_requirements(root / ROBOT_REQUIREMENTS)
    except ValueError:
        return  # reported by check_imports
    provided = {
        "python3-numpy": "numpy", "python3-opencv": "opencv-python", "python3-scipy": "scipy",
        "python3-yaml": "pyyaml", "python3-tqdm": "tqdm",
    }
    run = {d.name for d in pkg.exec_depends + pkg.build_export_depends}
    for key, dist in provided.items():
        names = {canonicalize_name(dist), canonicalize_name(dist + "-headless")}
        for name in sorted(names & pip.keys()):
            if key in run:
                report.errors.append(
                    f"{ROBOT_REQUIREMENTS}: '{name}' shadows the apt package of rosdep key "
                    f"'{key}' in the --system-site-packages venv (ABI clashes with ROS's "
                    "cv_bridge/opencv); leave it to rosdep"
                )


# ---- main ------------------------------------------------------------------------------------


def check(root: pathlib.Path, snapshot_arg: str | None = None, use_rosdep: bool = True) -> Report:
    """Run every check on the package at ``root``."""
    report = Report()
    try:
        pkg = parse_package(root / "package.xml")
        pkg.validate()
    except (InvalidPackage, OSError) as exc:
        report.errors.append(f"package.xml: invalid: {exc}")
        return report
    if pkg.package_format != 3:
        report.errors.append(f"package.xml: format {pkg.package_format}, expected 3")
    check_build(root, pkg, report)
    check_imports(root, pkg, report)
    robot_txt_overlaps(root, pkg, report)
    if not use_rosdep:
        report.skipped = "--no-rosdep"
        return report
    path, explicit = find_snapshot(root, snapshot_arg)
    if path is None:
        report.skipped = f"no rosdep snapshot at ../shared/rosdep or ${SNAPSHOT_ENV}"
    elif not (path / "rosdep" / "base.yaml").is_file():
        what = "--rosdep-snapshot/$" + SNAPSHOT_ENV if explicit else "../shared/rosdep"
        report.errors.append(f"rosdep snapshot {path} ({what}) has no rosdep/base.yaml")
    else:
        check_rosdep(pkg, load_snapshot(path), report)
        report.notes.append(f"rosdep keys checked against {path}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=pathlib.Path, default=ROOT, help="package source root")
    parser.add_argument("--rosdep-snapshot", help=f"rosdep snapshot dir (or ${SNAPSHOT_ENV})")
    parser.add_argument("--no-rosdep", action="store_true", help="skip key resolution")
    parser.add_argument("-v", "--verbose", action="store_true", help="print what each key is")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    report = check(root, args.rosdep_snapshot, not args.no_rosdep)
    if args.verbose:
        for key, per_platform in report.resolved.items():
            apt = [f"{where.split()[0]}: {' '.join(p) or '-'}" for where, p in per_platform.items()]
            print(f"{key} -> {'; '.join(apt)}")
    for line in report.notes if args.verbose else []:
        print(f"note: {line}")
    for line in report.errors:
        print(line)
    verdict = f"{len(report.errors)} problems" if report.errors else "OK"
    if report.resolved:
        verdict += ", keys resolve on " + ", ".join(f"{d}/{c}" for d, c in PLATFORMS)
    elif report.skipped:
        verdict += f", key resolution skipped ({report.skipped})"
    print(f"package.xml ({root / 'package.xml'}): {verdict}")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
