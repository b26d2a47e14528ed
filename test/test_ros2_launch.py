"""`ros2 launch` of both launch files as a robot runs them: namespaces, remaps, arguments, SIGINT.

Each test starts the real `ros2 launch`, feeds camera frames over DDS from the test process,
reads what the nodes publish, and stops launch with Ctrl-C (SIGINT to its process group).
"""

from __future__ import annotations

import pytest
from readme import readme
from ros2_cli import (
    Ros2Process,
    assert_clean_launch_exit,
    feed_until,
    require_ros2,
    ros2,
    ros2_until,
    stop_daemon,
)
from ros_harness import Client, write_params
from test_launch_and_config import LAUNCH_ARGUMENTS

pytestmark = pytest.mark.usefixtures("needs_install")


@pytest.fixture
def cli(ros_domain):
    require_ros2()
    yield ros_domain
    stop_daemon(ros_domain)


def _launch(tmp_path, domain, launch_file: str, *arguments: str) -> Ros2Process:
    log = tmp_path / f"{launch_file}.log"
    return Ros2Process(["launch", "sgclip_ros", launch_file, *arguments], domain, log)


def _graphs_of(client: Client, topic: str) -> list:
    from sgclip_ros.msg import SceneGraph

    return client.subscribe(SceneGraph, topic)


def test_namespace_applies_to_the_default_camera_and_every_output(tmp_path, cli):
    from sensor_msgs.msg import Image

    params = write_params(tmp_path / "params.yaml", reliability="reliable")
    argv = readme(
        "ros2 launch sgclip_ros sgclip.launch.py namespace:=robot1 "
        "params_file:=/path/to/my_sgclip.yaml",
        {"/path/to/my_sgclip.yaml": str(params)},
    )
    launch = Ros2Process(argv[1:], cli, tmp_path / "launch.log")
    client = Client(cli)
    try:
        graphs = _graphs_of(client, "/robot1/scene_graph")
        camera = client.publisher(Image, "/robot1/camera/image_raw")
        assert feed_until(client, camera, lambda: graphs, 120), launch.log()[-3000:]
        assert graphs[-1].camera == "/robot1/camera/image_raw"
        topics = dict(client.node.get_topic_names_and_types())
        assert "/robot1/active_concepts" in topics
        assert not {"/scene_graph", "/camera/image_raw", "/active_concepts"} & set(topics)
    finally:
        client.close()
        code = launch.interrupt()
    assert_clean_launch_exit(code, launch.log(), nodes=1)


def test_camera_topic_argument_remaps_the_default_camera(tmp_path, cli):
    """The README's first command, with the shipped parameters (best-effort camera QoS)."""
    from sensor_msgs.msg import Image

    argv = readme(
        "ros2 launch sgclip_ros perception.launch.py camera_topic:=/front/color/image_raw"
    )
    launch = Ros2Process(argv[1:], cli, tmp_path / "launch.log")
    client = Client(cli)
    try:
        graphs = _graphs_of(client, "/scene_graph")
        camera = client.publisher(Image, "/front/color/image_raw")
        assert feed_until(client, camera, lambda: graphs, 120), launch.log()[-3000:]
        assert graphs[-1].camera == "/front/color/image_raw"
    finally:
        client.close()
        code = launch.interrupt()
    assert_clean_launch_exit(code, launch.log(), nodes=1)


def test_compressed_camera_remap_is_read_as_compressed_and_named_as_remapped(tmp_path, cli):
    from sensor_msgs.msg import CompressedImage

    params = write_params(tmp_path / "params.yaml", reliability="reliable")
    launch = _launch(
        tmp_path,
        cli,
        "perception.launch.py",
        "namespace:=robot2",
        "camera_topic:=/front/image_raw/compressed",
        f"params_file:={params}",
    )
    client = Client(cli)
    try:
        graphs = _graphs_of(client, "/robot2/scene_graph")
        camera = client.publisher(CompressedImage, "/front/image_raw/compressed")
        got = feed_until(client, camera, lambda: graphs, 120, compressed=True)
        assert got, launch.log()[-3000:]
        assert graphs[-1].camera == "/front/image_raw/compressed"
        assert graphs[-1].objects
    finally:
        client.close()
        code = launch.interrupt()
    assert_clean_launch_exit(code, launch.log(), nodes=1)


def test_several_cameras_and_their_annotated_topics_follow_the_namespace(tmp_path, cli):
    """Relative cameras resolve in the namespace; each gets the type its resolved name implies
    and an annotated-image topic beside it."""
    params = write_params(
        tmp_path / "params.yaml",
        cameras=["front/image_raw", "rear/image_raw/compressed"],
        detections=["", ""],
        publish_annotated=True,
    )
    launch = _launch(
        tmp_path, cli, "perception.launch.py", "namespace:=robot3", f"params_file:={params}"
    )
    client = Client(cli)
    want = {
        "/robot3/front/image_raw": "sensor_msgs/msg/Image",
        "/robot3/rear/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
        "/robot3/front/annotated_image": "sensor_msgs/msg/Image",
        "/robot3/rear/annotated_image": "sensor_msgs/msg/Image",
    }

    def topics() -> dict:
        return {name: types[0] for name, types in client.node.get_topic_names_and_types()}

    try:
        seen = client.spin_until(lambda: want.items() <= topics().items(), 120)
        assert seen, (sorted(topics().items()), launch.log()[-3000:])
    finally:
        client.close()
        code = launch.interrupt()
    assert_clean_launch_exit(code, launch.log(), nodes=1)


def test_launch_arguments_reach_the_node(tmp_path, cli):
    """autostart, model_dir, backend, device, use_sim_time and log_level, then a manual start."""
    from sensor_msgs.msg import Image

    params = write_params(tmp_path / "params.yaml", reliability="reliable", backend="auto")
    launch = _launch(
        tmp_path,
        cli,
        "perception.launch.py",
        "namespace:=robot4",
        f"params_file:={params}",
        "autostart:=false",
        "model_dir:=shapes_default",
        "backend:=torch",
        "device:=cpu",
        "use_sim_time:=false",
        "log_level:=debug",
    )
    node = "/robot4/sgclip_perception"
    client = Client(cli)
    try:
        state = ros2_until(["lifecycle", "get", node], cli, lambda r: r.returncode == 0)
        assert state.stdout.startswith("unconfigured"), state.stdout
        for name, want in [
            ("backend", "torch"),
            ("device", "cpu"),
            ("model_dir", "shapes_default"),
        ]:
            got = ros2(["param", "get", node, name], cli)
            assert f"String value is: {want}" in got.stdout, got.stdout
        sim = ros2(["param", "get", node, "use_sim_time"], cli)
        assert "Boolean value is: False" in sim.stdout, sim.stdout
        for transition in ("configure", "activate"):
            done = ros2(["lifecycle", "set", node, transition], cli)
            assert "Transitioning successful" in done.stdout, done.stdout + launch.log()[-2000:]
        graphs = _graphs_of(client, "/robot4/scene_graph")
        camera = client.publisher(Image, "/robot4/camera/image_raw")
        assert feed_until(client, camera, lambda: graphs, 120), launch.log()[-3000:]
        assert graphs[-1].backend == "torch"
    finally:
        client.close()
        code = launch.interrupt()
    log = launch.log()
    assert "[DEBUG]" in log, "log_level:=debug did not reach the node"
    assert_clean_launch_exit(code, log, nodes=1)


def test_bad_launch_argument_is_refused_with_its_name(tmp_path, cli):
    launch = _launch(tmp_path, cli, "perception.launch.py", "autostart:=maybe")
    try:
        code = launch.proc.wait(60)
    finally:
        launch.kill()
    assert code != 0
    assert "autostart must be true or false" in launch.log()


def test_show_args_lists_every_launch_argument(cli):
    wanted = set(LAUNCH_ARGUMENTS)
    for launch_file, extra in [
        ("perception.launch.py", set()),
        ("sgclip.launch.py", {"use_planner", "planner_params_file"}),
    ]:
        shown = ros2(["launch", "sgclip_ros", launch_file, "--show-args"], cli)
        assert shown.returncode == 0, shown.stdout
        listed = {line.strip().strip("'").rstrip("':") for line in shown.stdout.splitlines()}
        assert wanted | extra <= listed, (launch_file, sorted(wanted | extra - listed))


def test_full_stack_with_planner_in_dry_run_under_a_namespace(tmp_path, cli):
    """sgclip.launch.py use_planner:=true; the planner's relative `camera` filter matches."""
    import yaml
    from ros_harness import REPO
    from sensor_msgs.msg import Image

    from sgclip_ros.ros.params import load_defaults

    params = write_params(tmp_path / "params.yaml", reliability="reliable")
    planner = load_defaults(REPO / "config" / "planner.yaml")
    planner.update(camera="camera/image_raw", max_graph_age_s=30.0, graph_wait_s=30.0)
    planner_file = tmp_path / "planner.yaml"
    planner_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": planner}}))
    launch = _launch(
        tmp_path,
        cli,
        "sgclip.launch.py",
        "namespace:=robot5",
        "use_planner:=true",
        f"params_file:={params}",
        f"planner_params_file:={planner_file}",
    )
    client = Client(cli)
    goal = None
    try:
        graphs = _graphs_of(client, "/robot5/scene_graph")
        camera = client.publisher(Image, "/robot5/camera/image_raw")
        assert feed_until(client, camera, lambda: graphs, 120), launch.log()[-3000:]
        goal = Ros2Process(
            [
                "action",
                "send_goal",
                "/robot5/plan",
                "sgclip_ros/action/Plan",
                "{instruction: 'go to the red circle'}",
            ],
            cli,
            tmp_path / "goal.log",
        )
        feed_until(client, camera, lambda g=goal: not g.alive(), 120, t0=len(graphs))
        result = goal.log()
        assert goal.proc.returncode == 0, result
        assert "status: dry_run" in result, result
    finally:
        if goal is not None:
            goal.kill()
        client.close()
        code = launch.interrupt()
    assert_clean_launch_exit(code, launch.log(), nodes=2)


def test_planner_quickstart_dry_run(tmp_path, cli):
    """The README's planner commands: launch with use_planner:=true, send a goal, read prompts."""
    from sensor_msgs.msg import Image

    argv = readme("ros2 launch sgclip_ros sgclip.launch.py use_planner:=true")
    launch = Ros2Process(argv[1:], cli, tmp_path / "launch.log")
    client = Client(cli)
    goal = prompts = None
    try:
        graphs = _graphs_of(client, "/scene_graph")
        camera = client.publisher(Image, "/camera/image_raw")
        assert feed_until(client, camera, lambda: graphs, 120), launch.log()[-3000:]
        # As a user would: the topic shows in `ros2 topic list` before it is echoed.
        ros2(["daemon", "start"], cli)
        listed = ros2_until(["topic", "list"], cli, lambda r: "/sgclip_planner/prompt" in r.stdout)
        assert "/sgclip_planner/prompt" in listed.stdout, listed.stdout
        echo = readme("ros2 topic echo /sgclip_planner/prompt")
        prompts = Ros2Process(echo[1:], cli, tmp_path / "prompts.log")
        # Prompts are not latched: send the goal once the echo has subscribed.
        info = ["topic", "info", "/sgclip_planner/prompt"]
        subscribed = ros2_until(info, cli, lambda r: "Subscription count: 1" in r.stdout)
        assert "Subscription count: 1" in subscribed.stdout, subscribed.stdout
        send = readme(
            "ros2 action send_goal /plan sgclip_ros/action/Plan "
            "\"{instruction: 'go to the red circle'}\""
        )
        # The echo's reader can be known to the daemon before the planner's writer has matched
        # it (DDS discovery on a loaded host); a volatile topic then drops those prompts, and a
        # user would send the goal again.
        for attempt in range(3):
            goal = Ros2Process(send[1:], cli, tmp_path / f"goal{attempt}.log")
            feed_until(client, camera, lambda g=goal: not g.alive(), 120, t0=len(graphs))
            assert goal.proc.returncode == 0, goal.log()
            assert "status: dry_run" in goal.log(), goal.log()
            if feed_until(client, camera, lambda: "plan_action" in prompts.log(), 20):
                break
        # echo shortens long strings: the stages and the dry-run flag show.
        shown = prompts.log()
        assert "extract_concepts" in shown and "plan_action" in shown, (shown, launch.log()[-3000:])
        assert '\\"dry_run\\": true' in shown, shown
    finally:
        for proc in (goal, prompts):
            if proc is not None:
                proc.kill()
        client.close()
        code = launch.interrupt()
    assert_clean_launch_exit(code, launch.log(), nodes=2)
