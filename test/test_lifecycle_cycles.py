"""The lifecycle under load: 50 configure/activate/deactivate/cleanup cycles under a 30 Hz
stream leave no threads, subscriptions or memory behind and process nothing while inactive;
a configure that fails leaves the process up, ERROR in /diagnostics with the reason.

(`autostart: false` driven by `ros2 lifecycle set` is in test_ros2_launch.py.)
"""

from __future__ import annotations

import threading
import time

import psutil
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from node_inproc import InProcessNode
from rclpy.lifecycle import TransitionCallbackReturn as Result
from ros_harness import Client, PerceptionProcess, diag_values, write_params
from test_perception_faults import CAM_A, Feeder

pytestmark = pytest.mark.usefixtures("needs_install")

CYCLES = 50


def _stamp(graph) -> int:
    return graph.header.stamp.sec * 1_000_000_000 + graph.header.stamp.nanosec


def test_fifty_lifecycle_cycles_under_a_30_hz_stream(tmp_path, ros_domain):
    node = InProcessNode(
        tmp_path,
        ros_domain,
        autostart=False,
        cameras=[CAM_A],
        detections=[""],
        model_dir="untrained-tiny",
        reliability="reliable",
        max_stamp_age_s=0.0,
    )
    client = Client(ros_domain)
    from sgclip_ros.msg import SceneGraph

    graphs = client.subscribe(SceneGraph, "/scene_graph")
    feeder = Feeder(client, [CAM_A])
    perception, proc = node.node, psutil.Process()
    samples, inactive_windows = [], []
    try:
        for cycle in range(CYCLES):
            assert perception.trigger_configure() == Result.SUCCESS, perception.error
            assert perception.trigger_activate() == Result.SUCCESS, perception.error
            n = len(graphs)
            assert client.spin_until(lambda n=n: len(graphs) > n, 30), f"cycle {cycle}: no graph"
            assert perception.trigger_deactivate() == Result.SUCCESS
            worker = perception.worker
            processed = dict(worker.processed)
            off_ns = time.time_ns()
            client.spin_for(0.2)  # frames keep coming while inactive
            assert worker.processed == processed and not worker.alive
            inactive_windows.append((off_ns + 50_000_000, time.time_ns()))
            assert perception.trigger_cleanup() == Result.SUCCESS
            subscriptions = len(list(perception.subscriptions))
            samples.append((threading.active_count(), subscriptions, proc.memory_info().rss))
    finally:
        feeder.stop()
        client.close()
        node.close()
    threads = [s[0] for s in samples]
    subscriptions = [s[1] for s in samples]
    rss_mb = [s[2] / 2**20 for s in samples]
    assert max(threads[5:]) <= threads[4], threads  # no thread left behind per cycle
    assert len(set(subscriptions)) == 1, subscriptions
    assert rss_mb[-1] - rss_mb[9] < 40, rss_mb  # allocator noise, not 40 cycles of leaks
    # No graph came from a frame stamped while the node was inactive.
    late = [g for g in graphs if any(a <= _stamp(g) <= b for a, b in inactive_windows)]
    assert not late


def test_a_failed_configure_leaves_the_process_up_with_error_and_reason(tmp_path, ros_domain):
    params = write_params(tmp_path / "p.yaml", model_dir="no_such_model", diagnostics_period_s=0.2)
    proc = PerceptionProcess(params, ros_domain, tmp_path / "node.log")
    client = Client(ros_domain)
    diags = client.subscribe(DiagnosticArray, "/diagnostics")
    try:
        assert client.spin_until(lambda: diag_values(diags, ": node"), 60), proc.log()
        values = diag_values(diags, ": node")
        assert values["_level"] == b"\x02"
        assert "configure failed" in values["_message"] and "no_such_model" in values["_message"]
        client.spin_for(1.0)
        assert proc.alive(), proc.log()
    finally:
        client.close()
        proc.close()
