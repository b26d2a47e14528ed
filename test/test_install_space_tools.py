"""The tools run from the colcon install space, as `ros2 run` starts them: the executables in
<prefix>/lib/sgclip_ros, a temporary working directory and no repository on PYTHONPATH, so the
installed copy of sgclip_ros is imported and `training/` (not installed) is out of reach."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_bag_runner import _small_bag

from sgclip_ros.tools.procs import ros_env

REPO = Path(__file__).resolve().parent.parent
TOOLS = ("replay", "demo", "bag_runner")


@pytest.fixture
def prefix(needs_install) -> Path:
    """The install prefix (from AMENT_PREFIX_PATH) holding this package's executables."""
    entries = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    found = [p for p in entries if (p / "share" / "sgclip_ros" / "package.xml").is_file()]
    if not found:
        pytest.fail("sgclip_ros is not in AMENT_PREFIX_PATH: run through `make test`")
    missing = [t for t in TOOLS if not os.access(found[0] / "lib" / "sgclip_ros" / t, os.X_OK)]
    if missing:
        pytest.fail(f"{found[0]}/lib/sgclip_ros lacks {missing}: the install space is stale")
    return found[0]


def installed_env(domain: int | None = None) -> dict[str, str]:
    """This environment without the repository (or the current directory) on PYTHONPATH."""
    env = ros_env(domain) if domain is not None else dict(os.environ)
    keep = [
        p
        for p in env.get("PYTHONPATH", "").split(os.pathsep)
        if p and Path(p).resolve() != REPO and not Path(p).resolve().is_relative_to(REPO / "test")
    ]
    env["PYTHONPATH"] = os.pathsep.join(keep)
    return env


def run(cmd: list[str], cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_installed_copy_is_imported_and_training_is_not(prefix, tmp_path):
    code = (
        "import importlib.util, sgclip_ros.tools.replay as r, sgclip_ros.sim.shapes_scene as s\n"
        "print(r.__file__); print(s.__file__)\n"
        "print(importlib.util.find_spec('training'))\n"
    )
    proc = run([sys.executable, "-c", code], tmp_path, installed_env())
    assert proc.returncode == 0, proc.stderr
    replay, scene, training = proc.stdout.splitlines()
    assert Path(replay).is_relative_to(prefix) and Path(scene).is_relative_to(prefix)
    assert training == "None"


def test_replay_renders_its_clip_without_training(prefix, tmp_path, ros_domain):
    cmd = [str(prefix / "lib/sgclip_ros/replay"), "--frames", "3", "--rate", "50", "--wait", "0"]
    proc = run(cmd, tmp_path, installed_env(ros_domain))
    assert proc.returncode == 0, proc.stderr
    assert "replayed 3 frames at 50 Hz on /camera/image_raw" in proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []  # wrote nothing into the working directory
    bad = run([str(prefix / "lib/sgclip_ros/replay"), "--rate", "0"], tmp_path, installed_env())
    assert bad.returncode == 2 and "--rate: must be > 0" in bad.stderr


def test_bag_runner_uses_the_installed_model_and_relative_paths(prefix, tmp_path):
    exe = str(prefix / "lib/sgclip_ros/bag_runner")
    help_text = run([exe, "--help"], tmp_path, installed_env())
    assert help_text.returncode == 0 and "ros2 run sgclip_ros bag_runner" in help_text.stdout
    _small_bag(tmp_path / "in", frames=3)
    cmd = [exe, "--in", "in", "--out", "out", "--model-dir", "shapes_default"]
    proc = run([*cmd, "--summary-json", "s.json", "--no-progress"], tmp_path, installed_env())
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    models = (prefix / "share" / "sgclip_ros" / "models").resolve()
    assert summary["model"]["dir"] == str(models / "shapes_default")
    assert summary["graphs_written"] == 3 and (tmp_path / "out").is_dir()


def test_demo_runs_from_the_install_space(prefix, tmp_path, ros_domain):
    cmd = [str(prefix / "lib/sgclip_ros/demo"), "--out", "here", "--frames", "6", "--rate", "4"]
    cmd += ["--domain-id", str(ros_domain), "--timeout", "90"]
    proc = run(cmd, tmp_path, installed_env(), timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "here"  # --out is relative to the working directory
    every = [json.loads(x) for x in (out / "scene_graphs.jsonl").read_text().splitlines()]
    graphs = [g for g in every if g["camera"] == "/camera/image_raw"]
    assert graphs and all(g["objects"] for g in graphs)
    assert list((out / "frames").glob("*.png")) and (out / "contact_sheet.png").is_file()
    rgbd = [g for g in every if g["camera"] == "/rgbd/color/image_raw"]
    assert any(o["position"] for g in rgbd for o in g["objects"])  # the RGB-D camera's 3D
    params = (out / "params.yaml").read_text()
    assert f"model_root: {prefix / 'share' / 'sgclip_ros' / 'models'}" in params
    assert "model shapes_default" in proc.stdout
