"""The README's `ros2` commands against a running perception node, as a user types them.

`ros2 run sgclip_ros perception_node` and `scene_graph_echo`, `ros2 topic echo` of a SceneGraph,
`ros2 param set` of live parameters with their effect observed, `ros2 service call` of
set_concepts, and `ros2 lifecycle` through deactivate, activate and cleanup. Commands the README
shows are taken from it (test/readme.py), so the README cannot drift from what runs.
"""

from __future__ import annotations

from signal import SIGINT

import pytest
import yaml
from readme import readme
from ros2_cli import (
    Ros2Process,
    feed_until,
    require_ros2,
    ros2,
    ros2_until,
    stop_daemon,
    wait_for_node,
)
from ros_harness import Client, write_params

pytestmark = pytest.mark.usefixtures("needs_install")

NODE = "/sgclip_perception"


@pytest.fixture
def running_node(tmp_path, ros_domain):
    """`ros2 run sgclip_ros perception_node` with a params file, a camera feed and a listener."""
    from sensor_msgs.msg import Image

    from sgclip_ros.msg import SceneGraph

    require_ros2()
    params = write_params(tmp_path / "params.yaml", reliability="reliable")
    node = Ros2Process(
        ["run", "sgclip_ros", "perception_node", "--ros-args", "--params-file", str(params)],
        ros_domain,
        tmp_path / "node.log",
    )
    client = Client(ros_domain)
    graphs = client.subscribe(SceneGraph, "/scene_graph")
    camera = client.publisher(Image, "/camera/image_raw")
    try:
        assert feed_until(client, camera, lambda: graphs, 120), node.log()[-3000:]
        wait_for_node(ros_domain, NODE)
        yield node, client, camera, graphs
    finally:
        client.close()
        code = node.interrupt()
        stop_daemon(ros_domain)
    assert code == 0, node.log()[-3000:]
    assert "Traceback" not in node.log()


def _feed_new_graphs(client, camera, graphs, count: int, timeout: float = 60.0) -> list:
    start = len(graphs)
    feed_until(client, camera, lambda: len(graphs) >= start + count, timeout, t0=start)
    return graphs[start:]


def _echo_until(argv, domain, tmp_path, client, camera, text: str, code: int = SIGINT) -> str:
    """Run a never-ending command until it prints ``text``, then Ctrl-C it.

    Interrupted, `ros2 topic echo` exits with 2 (ros2cli returns signal.SIGINT); `ros2 run`
    passes on its node's own exit code, which is 0 for a clean shutdown."""
    proc = Ros2Process(argv[1:], domain, tmp_path / f"{argv[-1].strip('/').replace('/', '_')}.log")
    try:
        feed_until(client, camera, lambda: text in proc.log(), 60)
    finally:
        exit_code = proc.interrupt()
    assert exit_code == code, proc.log()[-2000:]
    return proc.log()


def test_topic_echo_and_scene_graph_echo_print_graphs(running_node, ros_domain, tmp_path):
    node, client, camera, graphs = running_node
    raw = _echo_until(
        readme("ros2 topic echo /scene_graph"), ros_domain, tmp_path, client, camera, "backend:"
    )
    assert "camera: /camera/image_raw" in raw and "objects:" in raw and "concepts_id:" in raw
    readable = _echo_until(
        readme("ros2 run sgclip_ros scene_graph_echo"),
        ros_domain,
        tmp_path,
        client,
        camera,
        "--- SceneGraph stamp",
        code=0,
    )
    assert "listening on /scene_graph" in readable
    diagnostics = _echo_until(
        readme("ros2 topic echo /diagnostics"), ros_domain, tmp_path, client, camera, "drops."
    )
    assert "sgclip_perception" in diagnostics and "/camera/image_raw" in diagnostics


def test_param_set_of_live_parameters_changes_the_graphs(running_node, ros_domain, tmp_path):
    node, client, camera, graphs = running_node
    assert max(len(g.objects) for g in graphs[-3:]) >= 2  # the feed shows three squares
    done = ros2(["param", "set", NODE, "max_objects", "1"], ros_domain)
    assert "Set parameter successful" in done.stdout, done.stdout
    # The window (8 frames) still holds frames scored with three objects; 12 later it doesn't.
    later = _feed_new_graphs(client, camera, graphs, 12)
    assert len(later) >= 12 and all(len(g.objects) == 1 for g in later[-2:]), [
        len(g.objects) for g in later
    ]
    concepts = tmp_path / "my.yaml"
    lists = {"categories": ["cup", "bowl"], "unary": ["red"], "binary": ["next to"]}
    concepts.write_text(yaml.safe_dump(lists))
    for command, replace in [
        ("ros2 param set /sgclip_perception concepts_file /path/to/my.yaml",
         {"/path/to/my.yaml": str(concepts)}),
        ("ros2 param set /sgclip_perception attribute_threshold 0.6", {}),
        ("ros2 param set /sgclip_perception relation_threshold 0.4", {}),
    ]:  # fmt: skip
        done = ros2(readme(command, replace)[1:], ros_domain)
        assert "Set parameter successful" in done.stdout, (command, done.stdout)
    later = _feed_new_graphs(client, camera, graphs, 3)
    assert {o.label for o in later[-1].objects} <= {"cup", "bowl"}
    for name, value in [("attribute_threshold", "0.6"), ("relation_threshold", "0.4")]:
        shown = ros2(["param", "get", NODE, name], ros_domain).stdout
        assert f"Double value is: {value}" in shown, shown
    refused = ros2(["param", "set", NODE, "model_dir", "other"], ros_domain)
    assert "Set parameter successful" not in refused.stdout, refused.stdout


def test_service_call_set_concepts_switches_the_lists(running_node, ros_domain, tmp_path):
    node, client, camera, graphs = running_node
    call = ros2(
        readme(
            "ros2 service call /set_concepts sgclip_ros/srv/SetConcepts "
            '"{categories: [cup, bowl], unary: [red], binary: [next to]}"'
        )[1:],
        ros_domain,
    )
    assert call.returncode == 0 and "success=True" in call.stdout, call.stdout
    concepts_id = call.stdout.split("concepts_id='")[1].split("'")[0]
    later = _feed_new_graphs(client, camera, graphs, 4)
    assert any(g.concepts_id == concepts_id for g in later), (concepts_id, later[-1].concepts_id)
    newest = [g for g in later if g.concepts_id == concepts_id][-1]
    assert {o.label for o in newest.objects} <= {"cup", "bowl"}
    latched = _echo_until(
        readme("ros2 topic echo /active_concepts"), ros_domain, tmp_path, client, camera, "- bowl"
    )
    assert f"concepts_id: {concepts_id}" in latched, latched


def test_lifecycle_deactivate_activate_cleanup(running_node, ros_domain):
    node, client, camera, graphs = running_node

    def transition(command: str) -> None:
        done = ros2(command.split()[1:], ros_domain)
        assert "Transitioning successful" in done.stdout, done.stdout + node.log()[-2000:]

    def state() -> str:
        argv = readme("ros2 lifecycle get /sgclip_perception")[1:]
        return ros2_until(argv, ros_domain, lambda r: r.returncode == 0).stdout

    assert state().startswith("active")
    transition(" ".join(readme("ros2 lifecycle set /sgclip_perception deactivate")))
    assert state().startswith("inactive")
    client.spin_for(1.0)  # a window in flight may still land
    before = len(graphs)
    feed_until(client, camera, lambda: False, 2.0)
    assert len(graphs) == before, "graphs were published while inactive"
    transition(" ".join(readme("ros2 lifecycle set /sgclip_perception activate")))
    assert _feed_new_graphs(client, camera, graphs, 2), node.log()[-2000:]
    transition("ros2 lifecycle set /sgclip_perception deactivate")
    transition("ros2 lifecycle set /sgclip_perception cleanup")
    assert state().startswith("unconfigured")
    transition("ros2 lifecycle set /sgclip_perception configure")
    transition("ros2 lifecycle set /sgclip_perception activate")
    assert _feed_new_graphs(client, camera, graphs, 2), node.log()[-2000:]
