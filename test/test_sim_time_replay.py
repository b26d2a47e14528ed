"""A recorded camera bag replayed with /clock: graphs with use_sim_time:=true, stale without.

The bag is recorded by the test from a live topic, then played back later, when its stamps are
seconds old by the wall clock. With `use_sim_time:=true` the node checks stamps against /clock
and publishes graphs stamped like the recorded frames; with the wall clock they are all stale.
"""

from __future__ import annotations

import pytest
from bag_replay import play_with_clock, record
from ros2_cli import Ros2Process, assert_clean_launch_exit, require_ros2, stop_daemon
from ros_harness import Client, diag_values, shapes_image, write_params

pytestmark = pytest.mark.usefixtures("needs_install")

CAMERA = "/replay/camera/image_raw"


@pytest.fixture
def camera_bag(tmp_path_factory, ros_domain):
    """A bag of 20 frames recorded from a live topic at 10 Hz, and their header stamps."""
    from sensor_msgs.msg import Image

    from sgclip_ros.ros.image_conversion import rgb_to_image_msg

    path = tmp_path_factory.mktemp("bag") / "camera"
    client = Client(ros_domain, "camera_and_recorder")
    pub = client.publisher(Image, CAMERA)

    def publish(i: int) -> None:
        msg = rgb_to_image_msg(shapes_image(i))
        msg.header.stamp = client.node.get_clock().now().to_msg()
        msg.header.frame_id = "camera_optical_frame"
        pub.publish(msg)

    try:
        stamps = record(client, CAMERA, path, publish, frames=20, period_s=0.1)
    finally:
        client.close()
    assert len(stamps) >= 15, "the recorder lost most frames"
    return path, stamps


@pytest.mark.parametrize("sim_time", [True, False], ids=["use_sim_time", "wall_clock"])
def test_bag_replay_with_clock(tmp_path, ros_domain, camera_bag, sim_time):
    from diagnostic_msgs.msg import DiagnosticArray

    from sgclip_ros.msg import SceneGraph

    require_ros2()
    path, stamps = camera_bag
    # A stamp older than 1 s by the node's clock is stale; the replay starts later than that.
    params = write_params(tmp_path / "params.yaml", reliability="reliable", max_stamp_age_s=1.0)
    launch = Ros2Process(
        [
            "launch",
            "sgclip_ros",
            "perception.launch.py",
            "namespace:=replay",
            f"params_file:={params}",
            f"use_sim_time:={'true' if sim_time else 'false'}",
        ],
        ros_domain,
        tmp_path / "launch.log",
    )
    client = Client(ros_domain, "player")
    try:
        graphs = client.subscribe(SceneGraph, "/replay/scene_graph")
        diagnostics = client.subscribe(DiagnosticArray, "/diagnostics")
        # The node is up once it reports; replaying before that would lose frames.
        assert client.spin_until(lambda: diag_values(diagnostics, CAMERA), 120), launch.log()
        played = play_with_clock(client, path)
        client.spin_until(lambda: False, 2.0)
        drops = diag_values(diagnostics, CAMERA)
    finally:
        client.close()
        code = launch.interrupt()
        stop_daemon(ros_domain)
    assert played == len(stamps)
    if sim_time:
        assert graphs, launch.log()[-3000:]
        graph_stamps = {g.header.stamp.sec * 1_000_000_000 + g.header.stamp.nanosec for g in graphs}
        assert graph_stamps <= set(stamps)
        assert int(drops.get("drops.stale_stamp", "0")) == 0, drops
    else:
        assert not graphs
        assert int(drops.get("drops.stale_stamp", "0")) >= len(stamps) - 2, drops
    assert_clean_launch_exit(code, launch.log(), nodes=1)
