"""package.xml: every key resolves on Humble (jammy), Jazzy and Kilted (noble); imports declared.

Checked twice against the offline rosdep snapshot (../shared/rosdep): by
scripts/check_package_xml.py, and by the real `rosdep update` + `rosdep install --simulate`
pointed at the snapshot through file:// sources, a file:// rosdistro index and a temp ROS_HOME.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SNAPSHOT = (REPO / ".." / "shared" / "rosdep").resolve()
FAKE_KEY = "python3-not-a-real-key"
PLATFORMS = [("humble", "jammy"), ("jazzy", "noble"), ("kilted", "noble")]

_spec = importlib.util.spec_from_file_location("check_pkg", REPO / "scripts/check_package_xml.py")
checker = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = checker  # dataclasses look their module up
_spec.loader.exec_module(checker)

needs_snapshot = pytest.mark.skipif(
    not (SNAPSHOT / "rosdep" / "base.yaml").is_file(),
    reason=f"no rosdep snapshot at {SNAPSHOT} (CI has it at ../shared/rosdep)",
)


def _package_copy(root: pathlib.Path, extra: str = "", drop: str = "") -> pathlib.Path:
    """A minimal source tree: package.xml (plus ``extra`` deps, minus ``drop``), one module."""
    xml = (REPO / "package.xml").read_text()
    if drop:
        assert drop in xml
        xml = xml.replace(drop, "")
    xml = xml.replace("<test_depend>", f"{extra}\n  <test_depend>", 1)
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.xml").write_text(xml)
    (root / "sgclip_ros").mkdir(exist_ok=True)
    (root / "sgclip_ros" / "__init__.py").write_text("")
    (root / "requirements").mkdir(exist_ok=True)
    shutil.copy(REPO / "requirements" / "robot.txt", root / "requirements" / "robot.txt")
    return root


def _run_cli(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_package_xml.py"), *args],
        capture_output=True, text=True, timeout=120, env=env,
    )


# ---- the checker ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_report():
    """The checker's report on the real package, against the snapshot."""
    return checker.check(REPO, str(SNAPSHOT))


@needs_snapshot
def test_real_package_resolves_on_jammy_and_noble(real_report):
    report = real_report
    assert report.errors == []
    where = {d: f"{d} (ubuntu:{c})" for d, c in PLATFORMS}
    for key in ("python3-numpy", "python3-opencv", "python3-scipy", "python3-yaml"):
        for distro in where:
            assert report.resolved[key][where[distro]] == [key], (key, report.resolved[key])
    for distro in where:
        assert report.resolved["rclpy"][where[distro]] == [f"ros-{distro}-rclpy"]
        assert report.resolved["cv_bridge"][where[distro]] == [f"ros-{distro}-cv-bridge"]
    assert "python3-torch" not in report.resolved
    assert "python3-safetensors" not in report.resolved


@needs_snapshot
def test_cli_passes_on_the_real_package_as_make_lint_runs_it():
    result = _run_cli()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(
        ": OK, keys resolve on humble/jammy, jazzy/noble, kilted/noble"
    ), result.stdout


def test_without_snapshot_resolution_is_skipped_and_said(tmp_path, monkeypatch):
    monkeypatch.delenv("SGCLIP_ROSDEP_SNAPSHOT", raising=False)
    root = _package_copy(tmp_path / "pkg", f"<exec_depend>{FAKE_KEY}</exec_depend>")
    report = checker.check(root)  # no ../shared/rosdep next to this root
    assert report.errors == [] and report.resolved == {}
    assert report.skipped.startswith("no rosdep snapshot"), report.skipped
    result = _run_cli("--root", str(root), env={
        k: v for k, v in os.environ.items() if k != "SGCLIP_ROSDEP_SNAPSHOT"})
    assert result.returncode == 0 and "key resolution skipped (no rosdep snapshot" in \
        result.stdout, result.stdout


@needs_snapshot
def test_made_up_key_fails_naming_key_and_every_platform(tmp_path):
    root = _package_copy(tmp_path / "pkg", f"<exec_depend>{FAKE_KEY}</exec_depend>")
    result = _run_cli("--root", str(root), "--rosdep-snapshot", str(SNAPSHOT))
    assert result.returncode == 1, result.stdout
    bad = [line for line in result.stdout.splitlines() if FAKE_KEY in line]
    for distro, codename in PLATFORMS:
        assert any(f"{distro} (ubuntu:{codename})" in line for line in bad), result.stdout
    assert "is not a rosdep key" in bad[0]


@needs_snapshot
def test_snapshot_from_environment_variable(tmp_path):
    root = _package_copy(tmp_path / "pkg", f"<depend>{FAKE_KEY}</depend>")
    env = dict(os.environ, SGCLIP_ROSDEP_SNAPSHOT=str(SNAPSHOT))
    result = _run_cli("--root", str(root), env=env)
    assert result.returncode == 1 and FAKE_KEY in result.stdout, result.stdout
    missing = dict(os.environ, SGCLIP_ROSDEP_SNAPSHOT=str(tmp_path / "nowhere"))
    result = _run_cli("--root", str(root), env=missing)
    assert result.returncode == 1 and "has no rosdep/base.yaml" in result.stdout, result.stdout


@needs_snapshot
def test_distro_cpu_torch_key_is_refused(tmp_path):
    root = _package_copy(tmp_path / "pkg", "<exec_depend>python3-torch</exec_depend>")
    errors = checker.check(root, str(SNAPSHOT)).errors
    assert any("'python3-torch'" in e and "CPU" in e for e in errors), errors


@needs_snapshot
def test_ros_package_missing_from_a_distro_fails_there_only(tmp_path):
    snapshot = checker.load_snapshot(SNAPSHOT)
    only_humble = sorted(snapshot.ros_packages["humble"] - snapshot.ros_packages["jazzy"]
                         - snapshot.ros_packages["kilted"] - set(snapshot.rules))
    assert only_humble, "snapshot has no Humble-only package to test with"
    root = _package_copy(tmp_path / "pkg", f"<exec_depend>{only_humble[0]}</exec_depend>")
    errors = [e for e in checker.check(root, str(SNAPSHOT)).errors if only_humble[0] in e]
    assert len(errors) == 2, errors
    assert "jazzy (ubuntu:noble)" in errors[0] and "kilted (ubuntu:noble)" in errors[1]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"ubuntu": ["python3-a"]}, ["python3-a"]),
        ({"ubuntu": {"jammy": ["a-jammy"], "*": ["a"]}}, ["a-jammy"]),
        ({"ubuntu": {"*": ["a"], "focal": None}}, ["a"]),
        ({"ubuntu": {"apt": {"packages": ["a"]}}}, ["a"]),
        ({"ubuntu": {"jammy": {"apt": ["a"]}}}, ["a"]),
        ({"ubuntu": {"jammy": None, "*": ["a"]}}, "null rule"),
        ({"ubuntu": {"noble": ["a"]}}, "no rule for ubuntu jammy"),
        ({"ubuntu": {"pip": {"packages": ["a"]}}}, "not apt"),
        ({"debian": ["a"]}, "no rule for ubuntu"),
    ],
)
def test_resolve_apt_follows_rosdep_rule_layout(rule, expected):
    apt, why = checker.resolve_apt({"k": rule}, "k", "jammy")
    if isinstance(expected, list):
        assert (apt, why) == (expected, "")
    else:
        assert apt is None and expected in why


# ---- imports of the installed code ---------------------------------------------------------


def test_undeclared_imports_are_caught_with_file_and_line(tmp_path):
    root = _package_copy(tmp_path / "pkg")
    (root / "sgclip_ros" / "node.py").write_text(
        "import os\nimport cv2\nfrom safetensors import safe_open\n\n"
        "def f():\n    import not_declared_mod.sub\n"
    )
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_text("#!/usr/bin/env python3\nfrom also_undeclared import x\n")
    (root / "launch").mkdir()
    (root / "launch" / "a.launch.py").write_text("from launch_ros.actions import Node\n")
    errors = checker.check(root, use_rosdep=False).errors
    assert any(e.startswith("sgclip_ros/node.py:6 imports 'not_declared_mod'") for e in errors), \
        errors
    assert any(e.startswith("bin/tool:2 imports 'also_undeclared'") for e in errors), errors
    assert len(errors) == 2, errors  # os (stdlib), cv2 (key), safetensors (robot.txt), launch_ros


def test_import_covered_only_by_a_removed_declaration_fails(tmp_path):
    root = _package_copy(tmp_path / "pkg", drop="<exec_depend>python3-scipy</exec_depend>")
    (root / "sgclip_ros" / "t.py").write_text("from scipy.optimize import linear_sum_assignment\n")
    errors = checker.check(root, use_rosdep=False).errors
    assert len(errors) == 1 and "'scipy'" in errors[0] and "python3-scipy" in errors[0], errors
    (root / "requirements" / "robot.txt").write_text("safetensors\n")
    (root / "sgclip_ros" / "t.py").write_text("import open_clip\n")
    errors = checker.check(root, use_rosdep=False).errors
    assert len(errors) == 1 and "'open_clip'" in errors[0] and "open-clip-torch" in errors[0]


def test_repository_only_directory_import_is_caught(tmp_path):
    root = _package_copy(tmp_path / "pkg")
    (root / "training").mkdir()
    (root / "sgclip_ros" / "replay.py").write_text("def f():\n    from training.synth import x\n")
    errors = checker.check(root, use_rosdep=False).errors
    assert errors == [
        "sgclip_ros/replay.py:2 imports 'training', a directory of the repository that "
        "CMakeLists.txt does not install: it is missing on a robot"
    ]


def test_optional_imports_are_noted_not_failed(tmp_path):
    root = _package_copy(tmp_path / "pkg")
    (root / "sgclip_ros" / "b.py").write_text("def f():\n    import onnxruntime, tensorrt\n")
    report = checker.check(root, use_rosdep=False)
    assert report.errors == []
    assert sum("optional import" in n for n in report.notes) == 2, report.notes


def test_robot_txt_must_not_shadow_apt_numpy(tmp_path):
    root = _package_copy(tmp_path / "pkg")
    (root / "requirements" / "robot.txt").write_text("numpy>=2\nopencv-python-headless\n")
    errors = checker.check(root, use_rosdep=False).errors
    assert len(errors) == 2, errors
    assert "'numpy' shadows" in errors[0] and "'opencv-python-headless' shadows" in errors[1]


def test_real_installed_code_imports_are_all_declared():
    report = checker.check(REPO, use_rosdep=False)
    assert report.errors == []
    sources = checker.installed_sources(REPO, "sgclip_ros")
    assert REPO / "bin" / "perception_node" in sources
    assert REPO / "launch" / "perception.launch.py" in sources


# ---- the real rosdep tool, offline -----------------------------------------------------------


@pytest.fixture(scope="module")
def rosdep_env(tmp_path_factory):
    """Environment for `rosdep` reading only the snapshot (file:// URLs), after `rosdep update`."""
    if not (SNAPSHOT / "rosdep" / "base.yaml").is_file():
        pytest.skip(f"no rosdep snapshot at {SNAPSHOT}")
    tmp = tmp_path_factory.mktemp("rosdep")
    sources = tmp / "sources.list.d"
    sources.mkdir()
    yamls = [SNAPSHOT / "rosdep" / name for name in ("base.yaml", "python.yaml")]
    (sources / "20-default.list").write_text("".join(f"yaml {y.as_uri()}\n" for y in yamls))
    index = ["%YAML 1.1", "---", "type: index", "version: 4", "distributions:"]
    for distro, _ in PLATFORMS:
        index += [
            f"  {distro}:",
            f"    distribution: [{(SNAPSHOT / distro / 'distribution.yaml').as_uri()}]",
            "    distribution_status: active",
            "    distribution_type: ros2",
            "    python_version: 3",
        ]
    (tmp / "index-v4.yaml").write_text("\n".join(index) + "\n")
    # rosdep --ignore-src also skips ROS packages found on AMENT_PREFIX_PATH/ROS_PACKAGE_PATH
    # (this venv's wheels): a robot's fresh workspace has none of them, so neither does this.
    drop = ("ROSDEP_", "ROSDISTRO_", "AMENT_PREFIX_PATH", "ROS_PACKAGE_PATH", "ROS_DISTRO")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        ROSDEP_SOURCE_PATH=str(sources),
        ROSDISTRO_INDEX_URL=(tmp / "index-v4.yaml").as_uri(),
        ROS_HOME=str(tmp / "ros_home"),
        ROS_PYTHON_VERSION="3",
    )
    update = _rosdep(env, "update")
    assert update.returncode == 0, update.stdout + update.stderr
    for distro, _ in PLATFORMS:
        assert f'Add distro "{distro}"' in update.stdout, update.stdout
    return env


def _rosdep(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rosdep2", *args],
        env=env, capture_output=True, text=True, timeout=300,
    )


def _simulate(env, src: pathlib.Path, distro: str, codename: str):
    return _rosdep(
        env, "install", "--from-paths", str(src), "--ignore-src", "--simulate", "--reinstall",
        "--os", f"ubuntu:{codename}", "--rosdistro", distro, "-y",
    )


@pytest.mark.parametrize(("distro", "codename"), PLATFORMS)
def test_rosdep_install_simulate_resolves_every_key(
    rosdep_env, real_report, tmp_path, distro, codename
):
    src = tmp_path / "src"
    _package_copy(src / "sgclip_ros")
    result = _simulate(rosdep_env, src, distro, codename)
    assert result.returncode == 0, result.stdout + result.stderr
    apt = set(re.findall(r"^\s*apt-get install -y (\S+)$", result.stdout, re.M))
    # Exactly what the offline checker resolved: the two implementations agree.
    where = f"{distro} (ubuntu:{codename})"
    expected = {p for per in real_report.resolved.values() for p in per.get(where, [])}
    assert apt == expected, (sorted(apt ^ expected), result.stdout)
    for package in ("python3-opencv", "python3-scipy", f"ros-{distro}-rclpy",
                    f"ros-{distro}-vision-msgs", f"ros-{distro}-launch-ros"):
        assert package in apt, result.stdout
    assert not {"python3-torch", "python3-torchvision"} & apt


@pytest.mark.parametrize(("distro", "codename"), [PLATFORMS[0], PLATFORMS[1]])
def test_rosdep_install_fails_on_made_up_key(rosdep_env, tmp_path, distro, codename):
    src = tmp_path / "src"
    _package_copy(src / "sgclip_ros", f"<exec_depend>{FAKE_KEY}</exec_depend>")
    result = _simulate(rosdep_env, src, distro, codename)
    assert result.returncode != 0, result.stdout
    assert f"Cannot locate rosdep definition for [{FAKE_KEY}]" in result.stderr + result.stdout
