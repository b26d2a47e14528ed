"""colcon builds the package into a fresh install space, and both halves import from it."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from readme import readme_shell

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_colcon_build_installs_interfaces_package_and_executables(tmp_path):
    """The README's workspace build, as written, in ~/ros2_ws (HOME is a temporary folder)."""
    venv = pathlib.Path(sys.prefix).resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMENT_", "COLCON_", "CMAKE_"))}
    # As after `source /opt/ros/<distro>/setup.bash` and activating the robot's venv.
    env.update(
        HOME=str(tmp_path),
        VIRTUAL_ENV=str(venv),
        PATH=f"{venv}/bin:{env['PATH']}",
        CMAKE_PREFIX_PATH=str(venv),
        AMENT_PREFIX_PATH=str(venv),
    )
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)  # colcon's Python re-bootstraps itself
    (tmp_path / "ros2_ws" / "src").mkdir(parents=True)
    (tmp_path / "ros2_ws" / "src" / "sgclip_ros").symlink_to(REPO)
    command = readme_shell(
        "cd ~/ros2_ws && colcon build --packages-select sgclip_ros && source install/setup.bash"
    )
    build = subprocess.run(
        ["bash", "-c", command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    ws = tmp_path / "ros2_ws"
    prefix = ws / "install" / "sgclip_ros"
    site = (
        prefix
        / "lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "site-packages"
    )
    for rel in [
        "sgclip_ros/msg/_scene_graph.py",
        "sgclip_ros/srv/_set_concepts.py",
        "sgclip_ros/core/scene_graph.py",
        "sgclip_ros/ros/conversions.py",
    ]:
        assert (site / rel).is_file(), rel
    assert os.access(prefix / "lib" / "sgclip_ros" / "scene_graph_echo", os.X_OK)
    for rel in [
        "share/sgclip_ros/package.xml",
        "share/sgclip_ros/config",
        "share/sgclip_ros/launch",
    ]:
        assert (prefix / rel).exists(), rel

    probe = (
        "import sgclip_ros.msg as m, sgclip_ros.srv as s, sgclip_ros.ros.conversions as c;"
        "print(m.__file__); print(c.__file__);"
        "print(type(m.SceneGraph()).__name__, type(s.SetConcepts.Request()).__name__)"
    )
    # cwd is ws, so nothing from the source tree can shadow the install space.
    run = subprocess.run(
        ["bash", "-c", f". {ws}/install/setup.sh && {sys.executable} -c '{probe}'"],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.split()
    assert lines[0].startswith(str(site)) and lines[1].startswith(str(site))
    assert lines[2:] == ["SceneGraph", "SetConcepts_Request"]
