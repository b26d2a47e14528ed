"""A worker that never dies silently, cameras that fail alone, concept changes off the executor.

The node runs in the test process (node_inproc) so a fault can be injected into its predictor;
frames, scene graphs, /diagnostics and set_concepts all go over real DDS.
"""

from __future__ import annotations

import threading
import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from node_inproc import InProcessNode
from ros_harness import Client, diag_values, shapes_image
from sensor_msgs.msg import Image

from sgclip_ros.ros.image_conversion import rgb_to_image_msg

pytestmark = pytest.mark.usefixtures("needs_install")

CAM_A, CAM_B = "/cam_a/image_raw", "/cam_b/image_raw"


class Feeder:
    """Publishes moving-squares frames on each camera at ``hz`` from a background thread."""

    def __init__(self, client: Client, cameras: list[str], hz: float = 30.0):
        self.client, self.period = client, 1.0 / hz
        self.pubs = {c: client.publisher(Image, c) for c in cameras}
        self.sent = dict.fromkeys(cameras, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t, start = 0, time.monotonic()
        while not self._stop.is_set():
            for camera, pub in self.pubs.items():
                msg = rgb_to_image_msg(shapes_image(t))
                msg.header.stamp = self.client.node.get_clock().now().to_msg()
                msg.header.frame_id = "cam"
                pub.publish(msg)
                self.sent[camera] += 1
            t += 1
            self._stop.wait(max(0.0, start + t * self.period - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def rig(tmp_path, ros_domain):
    """(node, client, graphs, diagnostics) with two cameras and fast diagnostics."""
    node = InProcessNode(
        tmp_path,
        ros_domain,
        cameras=[CAM_A, CAM_B],
        detections=[],
        model_dir="untrained-tiny",
        reliability="reliable",
        max_stamp_age_s=0.0,
        diagnostics_period_s=0.5,
    )
    client = Client(ros_domain)
    from sgclip_ros.msg import SceneGraph

    graphs = client.subscribe(SceneGraph, "/scene_graph")
    diags = client.subscribe(DiagnosticArray, "/diagnostics")
    yield node, client, graphs, diags
    client.close()
    node.close()


def _stamp_ns(graph) -> int:
    return graph.header.stamp.sec * 1_000_000_000 + graph.header.stamp.nanosec


def _count(graphs, camera=None) -> int:
    return sum(1 for g in list(graphs) if camera is None or g.camera == camera)


def test_a_dying_worker_turns_diagnostics_error_then_restarts_and_graphs_flow(rig):
    node, client, graphs, diags = rig
    feeder = Feeder(client, [CAM_A])
    try:
        assert client.spin_until(lambda: _count(graphs) >= 5, 60)
        predictor, real = node.node.predictor, node.node.predictor.add_frames

        class ThreadKilled(BaseException):  # escapes `except Exception`, as SystemExit would
            pass

        def kill_once(inputs):
            predictor.add_frames = real
            raise ThreadKilled("injected")

        predictor.add_frames = kill_once
        killed_at = time.monotonic()
        assert client.spin_until(lambda: not node.node.worker.alive, 10)

        def error_seen():
            values = diag_values(diags, ": node")
            return values.get("_level") == b"\x02" and "inference thread dead" in values["_message"]

        assert client.spin_until(error_seen, 10), diag_values(diags, ": node")
        error_after = time.monotonic() - killed_at
        values = diag_values(diags, ": node")
        assert "ThreadKilled: injected" in values["_message"], values
        # Then the watchdog restarts it, counts the restart, and graphs come again.
        n = _count(graphs)
        assert client.spin_until(lambda: _count(graphs) >= n + 5, 30)
        assert node.node.worker.alive and node.node.worker.health.restarts == 1
        assert client.spin_until(
            lambda: diag_values(diags, ": node").get("worker_restarts") == "1", 10
        )
    finally:
        feeder.stop()
    # Reported within two diagnostics periods of 0.5 s, plus DDS delivery.
    assert error_after < 2.0, error_after


@pytest.mark.parametrize(
    "fault", [MemoryError("injected"), AttributeError("injected"), RuntimeError("injected")]
)
def test_any_exception_in_inference_is_counted_and_the_loop_goes_on(rig, fault):
    node, client, graphs, diags = rig
    feeder = Feeder(client, [CAM_A])
    try:
        assert client.spin_until(lambda: _count(graphs) >= 3, 60)
        predictor, real = node.node.predictor, node.node.predictor.add_frames
        failures = []

        def fail_three_times(inputs):
            if len(failures) < 3:
                failures.append(inputs)
                raise fault
            return real(inputs)

        predictor.add_frames = fail_three_times
        n = _count(graphs)
        assert client.spin_until(lambda: _count(graphs) >= n + 5, 30)
        worker = node.node.worker
        assert worker.alive and worker.health.restarts == 0
        assert worker.health.errors == 3
        assert worker.drops.by_reason(CAM_A).get("inference_error") == 3
        assert type(fault).__name__ in worker.health.last_error
    finally:
        feeder.stop()


def test_one_cameras_bad_regions_drop_only_that_cameras_frame(rig):
    node, client, graphs, _ = rig
    feeder = Feeder(client, [CAM_A, CAM_B])
    try:
        assert client.spin_until(lambda: _count(graphs, CAM_A) >= 2 and _count(graphs, CAM_B), 60)
        predictor, real = node.node.predictor, node.node.predictor.add_frames
        batches = []

        def camera_b_is_bad(inputs):
            batches.append(len(inputs))
            if any(i.camera == CAM_B for i in inputs):
                raise ValueError("duplicate track ids in one frame: ['t1', 't1']")
            return real(inputs)

        predictor.add_frames = camera_b_is_bad
        patched_ns = time.time_ns()
        a = _count(graphs, CAM_A)
        assert client.spin_until(lambda: _count(graphs, CAM_A) >= a + 10, 30)
        predictor.add_frames = real
    finally:
        feeder.stop()
    # Frames stamped after the fault began published nothing on the bad camera.
    after = [g for g in graphs if _stamp_ns(g) > patched_ns + 200_000_000]
    assert {g.camera for g in after} == {CAM_A}
    assert max(batches) == 2  # the cameras did share batches, and camera A still published
    drops = node.node.drops
    assert drops.count(CAM_B, "inference_error") >= 5
    assert drops.count(CAM_A, "inference_error") == 0


def test_stop_reports_a_thread_that_does_not_stop_and_activate_refuses_a_second(rig):
    node, client, graphs, diags = rig
    feeder = Feeder(client, [CAM_A])
    release = threading.Event()
    try:
        assert client.spin_until(lambda: _count(graphs) >= 2, 60)
        predictor, real = node.node.predictor, node.node.predictor.add_frames
        entered = threading.Event()

        def hang(inputs):
            entered.set()
            release.wait(30)
            return real(inputs)

        predictor.add_frames = hang
        assert entered.wait(10)
        worker = node.node.worker
        assert worker.stop(timeout=0.2) is False
        assert worker.health.not_stopped and worker.alive
        node.node.trigger_deactivate()
        from rclpy.lifecycle import TransitionCallbackReturn as Result

        assert node.node.trigger_activate() != Result.SUCCESS
        assert "still running" in node.node.error
        release.set()
        assert node.wait_for(lambda: not worker.alive, 10)
        predictor.add_frames = real
        assert node.node.trigger_activate() == Result.SUCCESS
        n = _count(graphs)
        assert client.spin_until(lambda: _count(graphs) >= n + 3, 30)
    finally:
        release.set()
        feeder.stop()


def test_no_graph_while_frames_arrive_turns_diagnostics_error_until_graphs_return(rig):
    node, client, graphs, diags = rig
    feeder = Feeder(client, [CAM_A])
    try:
        assert client.spin_until(lambda: _count(graphs) >= 3, 60)
        predictor, real = node.node.predictor, node.node.predictor.add_frames

        def always_fails(inputs):
            raise RuntimeError("backend lost")

        predictor.add_frames = always_fails

        def stalled():
            values = diag_values(diags, ": node")
            return values.get("_level") == b"\x02" and "no scene graph for" in values["_message"]

        assert client.spin_until(stalled, 15), diag_values(diags, ": node")
        assert node.node.worker.alive  # stalled, not dead: errors are counted, not fatal
        predictor.add_frames = real
        assert client.spin_until(lambda: diag_values(diags, ": node").get("_level") != b"\x02", 15)
    finally:
        feeder.stop()
