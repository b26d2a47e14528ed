"""The depth and standard-output live parameters of the perception node, each with its effect
(the `effect_of` registry of test_live_params covers these too)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image
from test_live_params import Rig, effect_of
from test_perception_depth_node import _depth_mm, _depth_msg, _info

pytestmark = pytest.mark.usefixtures("needs_install")

CAM, DEPTH, INFO = "/camera/image_raw", "/camera/depth", "/camera/camera_info"
RGBD = {"depth_topics": [DEPTH], "camera_info_topics": [INFO], "depth_wait_s": 0.0}


@pytest.fixture
def rgbd(tmp_path, ros_domain, request):
    rig = Rig(tmp_path, ros_domain, **{**RGBD, **getattr(request, "param", {})})
    rig.depth = rig.client.publisher(Image, DEPTH)
    rig.info = rig.client.publisher(CameraInfo, INFO)
    assert rig.client.spin_until(
        lambda: rig.depth.get_subscription_count() and rig.info.get_subscription_count(), 20
    )
    rig.info.publish(_info(0))
    yield rig
    rig.close()


def _problems(rig, reason: str) -> int:
    return rig.node.node.worker.depth.problems.get(CAM, {}).get(reason, 0)


def _positioned_graph_after(rig, stamp: int) -> bool:
    return any(o.has_position for g in rig.graphs_after(stamp) for o in g.objects)


@effect_of("depth_wait_s")
def test_depth_wait_s(rgbd):
    """Depth that comes 0.3 s after its colour frame: missed without waiting, used with a 1 s
    wait. (Frames are sent until one is answered: a first sample can be lost to discovery.)"""
    since = time.time_ns()
    assert rgbd.feed_until(lambda: rgbd.graphs_after(since), 20)  # colour only: no depth yet
    assert not _positioned_graph_after(rgbd, since)
    assert _problems(rgbd, "depth_missing") >= 1
    ok, reason = rgbd.set("depth_wait_s", 1.0)
    assert ok, reason

    def late_depth_frame_positioned() -> bool:
        stamp = rgbd.send()
        rgbd.client.spin_for(0.3)
        rgbd.depth.publish(_depth_msg(_depth_mm(rgbd.t - 1), stamp))
        return rgbd.client.spin_until(lambda: _positioned_graph_after(rgbd, stamp), 3)

    assert any(late_depth_frame_positioned() for _ in range(5))


@effect_of("depth_stamp_tolerance_s")
@pytest.mark.parametrize("rgbd", [{"depth_stamp_tolerance_s": 0.0}], indirect=True)
def test_depth_stamp_tolerance_s(rgbd):
    """Depth stamped 5 ms before its colour frame (separate sensors): paired within 10 ms."""

    def offset_frame() -> int:
        stamp = time.time_ns()
        rgbd.depth.publish(_depth_msg(_depth_mm(rgbd.t), stamp - 5_000_000))
        rgbd.client.spin_for(0.05)
        return rgbd.send(stamp)

    def answered(predicate) -> bool:
        """Offset frames until one gives a graph that ``predicate`` accepts (a first sample can
        be lost to discovery)."""
        for _ in range(10):
            stamp = offset_frame()
            if rgbd.client.spin_until(lambda s=stamp: predicate(s), 3):
                return True
        return False

    assert answered(rgbd.graphs_after)
    assert not _positioned_graph_after(rgbd, 0)  # no frame so far found its depth
    ok, reason = rgbd.set("depth_stamp_tolerance_s", 0.01)
    assert ok, reason
    assert answered(lambda stamp: _positioned_graph_after(rgbd, stamp))


def _send_rgbd(rig) -> int:
    """One colour frame with its depth (depth first, as a driver publishes them)."""
    stamp = time.time_ns()
    rig.depth.publish(_depth_msg(_depth_mm(rig.t), stamp))
    return rig.send(stamp)


def _feed_rgbd_until(rig, predicate, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        _send_rgbd(rig)
        if rig.client.spin_until(predicate, 0.2):
            return True
    return predicate()


def _output_appears(rig, param: str, kind, topic: str) -> list:
    """Nothing on ``topic`` while ``param`` is off; messages once it is set (its publisher is
    created then, so frames are sent until the new publisher has matched)."""
    received = rig.client.subscribe(kind, topic)
    since = time.time_ns()
    assert _feed_rgbd_until(rig, lambda: rig.graphs_after(since))  # a first frame may be lost
    rig.client.spin_for(0.5)
    assert not received, f"{topic} published while {param} is off"
    ok, reason = rig.set(param, True)
    assert ok, reason
    assert _feed_rgbd_until(rig, lambda: len(received) > 0), f"nothing on {topic}"
    return received


@effect_of("publish_detections_2d")
def test_publish_detections_2d(rgbd):
    from vision_msgs.msg import Detection2DArray

    received = _output_appears(rgbd, "publish_detections_2d", Detection2DArray, "/detections_2d")
    assert any(m.detections for m in received)


@effect_of("publish_detections_3d")
@pytest.mark.parametrize("rgbd", [{"depth_wait_s": 1.0}], indirect=True)
def test_publish_detections_3d(rgbd):
    from vision_msgs.msg import Detection3DArray

    received = _output_appears(rgbd, "publish_detections_3d", Detection3DArray, "/detections_3d")
    assert _feed_rgbd_until(rgbd, lambda: any(m.detections for m in received))
    assert all(np.isfinite(d.bbox.center.position.z) for m in received for d in m.detections)
    ok, _ = rgbd.set("publish_detections_3d", False)
    assert ok
    rgbd.client.spin_for(0.5)
    count = len(received)
    since = time.time_ns()
    assert _feed_rgbd_until(rgbd, lambda: rgbd.graphs_after(since))
    rgbd.client.spin_for(0.3)
    assert len(received) == count  # switched off again: nothing more


@effect_of("publish_markers")
def test_publish_markers(rgbd):
    from visualization_msgs.msg import MarkerArray

    _output_appears(rgbd, "publish_markers", MarkerArray, "/scene_graph_markers")
