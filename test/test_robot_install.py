"""docs/install.md, requirements/robot.txt: the robot install steps, as far as this machine allows.

No Ubuntu, apt ROS or Jetson here: the commands are checked to name what exists, robot.txt to be
satisfied by the pinned development environment (so the tests run what robots install), and the
venv layout by running an installed node executable under a --system-site-packages venv.
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys
import sysconfig

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = pathlib.Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "install.md"
ROBOT = REPO / "requirements" / "robot.txt"
WORKSPACE_SRC = "src/sgclip_ros/"  # where the doc clones this repository
CONSTRAINTS = sorted((REPO / "requirements").glob("constraints*.txt"))


def _commands() -> list[str]:
    """Command lines of the doc's ```bash blocks, comments stripped, continuations joined."""
    blocks = re.findall(r"^```bash\n(.*?)^```", DOC.read_text(), re.M | re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.split(" #", 1)[0].strip() for line in lines if line.strip()]


def _robot_requirements() -> list[Requirement]:
    reqs = []
    for number, raw in enumerate(ROBOT.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line:
            assert not line.startswith("-"), f"robot.txt:{number}: options/includes not expected"
            reqs.append(Requirement(line))  # raises InvalidRequirement naming the line
    return reqs


def _pins(path: pathlib.Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name.split("[")[0])] = version.split(";")[0].strip()
    return pins


# ---- the documented commands -------------------------------------------------------------------


def test_doc_has_every_step_of_the_robot_install():
    commands = "\n".join(_commands())
    for step in (
        "rosdep install --from-paths src --ignore-src -y",
        "python3 -m venv --system-site-packages venv",
        "source venv/bin/activate",
        f"pip install -r {WORKSPACE_SRC}requirements/robot.txt",
        "colcon build",
        "source install/setup.bash",
        "ros2 launch sgclip_ros perception.launch.py",
    ):
        assert step in commands, f"docs/install.md has no command '{step}'"
    order = [commands.index(s) for s in ("rosdep install", "pip install -r", "colcon build")]
    assert order == sorted(order), "docs/install.md: rosdep, then pip, then colcon build"


def test_doc_commands_name_existing_files_and_arguments():
    url = re.search(r'<url type="repository">(.*?)</url>', (REPO / "package.xml").read_text())
    for command in _commands():
        for path in re.findall(rf"{WORKSPACE_SRC}(\S+)", command):
            assert (REPO / path).exists(), f"docs/install.md names {WORKSPACE_SRC}{path}: missing"
        if command.startswith("git clone"):
            assert url and url.group(1) in command, f"clone URL != package.xml <url>: {command}"
        launch = re.match(r"ros2 launch sgclip_ros (\S+)(.*)", command)
        if launch:
            text = (REPO / "launch" / launch.group(1)).read_text()  # raises if missing
            for arg in re.findall(r"(\w+):=", launch.group(2)):
                assert re.search(rf'DeclareLaunchArgument\(\s*"{arg}"', text), \
                    f"{launch.group(1)} declares no launch argument '{arg}'"
        run = re.match(r"ros2 run sgclip_ros (\S+)", command)
        if run:
            assert (REPO / "bin" / run.group(1)).is_file(), f"no executable bin/{run.group(1)}"


def test_doc_links_point_to_existing_pages():
    for target in re.findall(r"\]\(([^)#:]+)\)", DOC.read_text()):
        assert (DOC.parent / target).exists(), f"docs/install.md links to missing {target}"


# ---- robot.txt ---------------------------------------------------------------------------------


def test_robot_txt_parses_and_covers_the_pip_only_imports():
    names = [canonicalize_name(r.name) for r in _robot_requirements()]
    assert len(names) == len(set(names)), f"robot.txt lists a package twice: {names}"
    for needed in ("torch", "torchvision", "open-clip-torch", "safetensors"):
        assert needed in names, f"robot.txt has no '{needed}'"
    for apt_owned in ("numpy", "opencv-python", "opencv-python-headless", "scipy", "pyyaml"):
        assert apt_owned not in names, f"robot.txt must leave '{apt_owned}' to rosdep/apt"


@pytest.mark.parametrize("constraints", CONSTRAINTS, ids=lambda p: p.name)
def test_robot_txt_is_satisfied_by_the_pinned_dev_environment(constraints):
    pins = _pins(constraints)
    for req in _robot_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"robot.txt needs '{req}', which {constraints.name} does not pin"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"robot.txt needs '{req}' but {constraints.name} pins {name}=={pins[name]}: the "
            "tests would not run what robots install"
        )


def test_setup_py_install_requires_are_provided_on_a_robot():
    """Every install_requires of setup.py is in robot.txt or comes from a package.xml key."""
    tree = ast.parse((REPO / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, "id", "") == "setup")
    kw = next(k for k in call.keywords if k.arg == "install_requires")
    robot = {canonicalize_name(r.name) for r in _robot_requirements()}
    by_key = {"numpy": "python3-numpy", "pyyaml": "python3-yaml", "scipy": "python3-scipy",
              "opencv-python-headless": "python3-opencv", "opencv-python": "python3-opencv"}
    xml = (REPO / "package.xml").read_text()
    for spec in ast.literal_eval(kw.value):
        name = canonicalize_name(Requirement(spec).name)
        if name in robot:
            continue
        key = by_key.get(name)
        assert key and f"<exec_depend>{key}</exec_depend>" in xml, (
            f"setup.py requires '{spec}', provided neither by robot.txt nor by a package.xml key"
        )


def test_pip_finds_robot_txt_satisfied_offline():
    """`pip install -r robot.txt` in this venv has nothing to do, without any index."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index",
         "--disable-pip-version-check", "-r", str(ROBOT)],
        capture_output=True, text=True, timeout=300,
    )
    if "No module named pip" in result.stderr:
        pytest.skip("this venv has no pip")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Would install" not in result.stdout, result.stdout


# ---- the venv layout: installed executables run on the activated venv's python ----------------


def _installed_executables() -> pathlib.Path:
    base = pathlib.Path(os.environ.get("SGCLIP_INSTALL_BASE", REPO / "install"))
    return base / "sgclip_ros" / "lib" / "sgclip_ros"


@pytest.mark.ros
def test_installed_node_runs_on_the_activated_system_site_packages_venv(tmp_path, needs_install):
    lib = _installed_executables()
    scripts = sorted(p for p in lib.glob("*") if p.is_file())
    assert scripts, f"no executables in {lib}"
    for script in scripts:
        first = script.read_text().splitlines()[0]
        assert first == "#!/usr/bin/env python3", f"{script.name}: shebang {first!r}"

    base_python = getattr(sys, "_base_executable", sys.executable)
    venv = tmp_path / "venv"
    subprocess.run([base_python, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True, timeout=120)
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    site = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # Stands in for what `pip install -r robot.txt` puts there: runs when the site dir loads.
    (pathlib.Path(site) / "_sgclip_probe.pth").write_text(
        'import os, sys; p = os.environ.get("SGCLIP_PROBE"); p and open(p, "w").write(sys.prefix)\n'
    )
    base_site = subprocess.run([base_python, "-c", "import site; print(site.getsitepackages()[0])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    seen = subprocess.run([str(venv / "bin" / "python"), "-c", "import sys; print(sys.path)"],
                          capture_output=True, text=True, check=True).stdout
    assert repr(base_site) in seen, f"the venv does not see the system site-packages: {seen}"
    env = dict(os.environ)
    # On a robot `source /opt/ros/.../setup.bash` puts rclpy on PYTHONPATH; here it is this venv.
    ros_site = sysconfig.get_paths()["purelib"]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ros_site, env.get("PYTHONPATH")) if p)

    def run(path_first: list[str], probe: pathlib.Path):
        env.update(PATH=os.pathsep.join([*path_first, os.environ["PATH"]]),
                   SGCLIP_PROBE=str(probe))
        return subprocess.run([str(lib / "scene_graph_echo"), "--help"], env=env,
                              capture_output=True, text=True, timeout=120)

    active = run([str(venv / "bin")], tmp_path / "active.txt")
    assert active.returncode == 0, active.stdout + active.stderr
    assert "usage: scene_graph_echo" in active.stdout
    prefix = (tmp_path / "active.txt").read_text()
    assert pathlib.Path(prefix) == venv, f"node ran on {prefix}, not the activated venv"

    inactive = run([], tmp_path / "inactive.txt")
    assert inactive.returncode == 0, inactive.stdout + inactive.stderr
    assert not (tmp_path / "inactive.txt").exists(), "venv packages loaded without activation"
