"""A real perception node with an RGB-D camera over DDS: positions, vision_msgs, markers.

The camera publishes colour, aligned 16UC1 depth and CameraInfo, as a RealSense driver with
align_depth does. The squares of the test scene stand at known depths in front of a wall, so
their positions are known; the standard outputs are checked against the SceneGraph of the
same stamp. Bad depth is counted by reason while graphs keep coming.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from ros_harness import Client, PerceptionProcess, diag_values, shapes_image, write_params
from sensor_msgs.msg import CameraInfo, Image

from sgclip_ros.ros.conversions import ns_from_time, time_from_ns
from sgclip_ros.ros.image_conversion import rgb_to_image_msg

pytestmark = pytest.mark.usefixtures("needs_install")

CAM, DEPTH, INFO = "/camera/image_raw", "/camera/depth", "/camera/camera_info"
W, H, F = 160, 120, 100.0
DEPTHS = (1.0, 1.5, 2.0)  # metres, square k of shapes_image; the wall is at 3 m


def _depth_mm(t: int) -> np.ndarray:
    depth = np.full((H, W), 3000, np.uint16)
    for k, z in enumerate(DEPTHS):
        phase = t % 40  # the motion of shapes_image
        x, y = 8 + 45 * k + (phase if phase < 20 else 40 - phase), 20 + 25 * k
        depth[y : y + 25, x : x + 25] = int(z * 1000)
    return depth


def _depth_msg(depth: np.ndarray, stamp_ns: int, encoding: str = "16UC1") -> Image:
    msg = Image(height=depth.shape[0], width=depth.shape[1], encoding=encoding)
    msg.step, msg.data = depth.shape[1] * depth.itemsize, depth.tobytes()
    msg.header.stamp, msg.header.frame_id = time_from_ns(stamp_ns), "cam_optical"
    return msg


def _info(stamp_ns: int, k=(F, 0.0, W / 2, 0.0, F, H / 2, 0.0, 0.0, 1.0)) -> CameraInfo:
    msg = CameraInfo(width=W, height=H, k=[float(v) for v in k])
    msg.header.stamp, msg.header.frame_id = time_from_ns(stamp_ns), "cam_optical"
    return msg


def _colour(t: int, stamp_ns: int) -> Image:
    msg = rgb_to_image_msg(shapes_image(t))
    msg.header.stamp, msg.header.frame_id = time_from_ns(stamp_ns), "cam_optical"
    return msg


def _params(tmp_path, **overrides):
    concepts = tmp_path / "concepts.yaml"
    concepts.write_text(
        yaml.safe_dump(
            {
                "categories": ["circle", "square", "triangle", "star"],
                "unary": ["red", "green", "blue"],
                "binary": ["left of"],
                "geometry": {"relations": ["in front of", "behind", "3d left of"]},
            }
        )
    )
    return write_params(
        tmp_path / "p.yaml",
        model_dir="untrained-tiny",
        concepts_file=str(concepts),
        depth_topics=[DEPTH],
        camera_info_topics=[INFO],
        reliability="reliable",
        qos_depth=100,
        max_stamp_age_s=0.0,
        diagnostics_period_s=0.5,
        **overrides,
    )


class RGBDCamera:
    """Publishers of one RGB-D camera on a test client."""

    def __init__(self, client: Client):
        self.client = client
        self.colour = client.publisher(Image, CAM)
        self.depth = client.publisher(Image, DEPTH)
        self.info = client.publisher(CameraInfo, INFO)

    def matched(self) -> bool:
        pubs = (self.colour, self.depth, self.info)
        return all(p.get_subscription_count() for p in pubs)

    def frame(self, t: int, depth: Image | None, info: CameraInfo | None) -> int:
        """Depth and info first (a driver publishes them together), then colour; 10 Hz."""
        stamp = time.time_ns()
        if info is not None:
            self.info.publish(info)
        if depth is not None:
            depth.header.stamp = time_from_ns(stamp)
            self.depth.publish(depth)
        self.colour.publish(_colour(t, stamp))
        self.client.spin_for(0.1)
        return stamp


def _run(tmp_path, ros_domain, frames, subscribe, **overrides):
    """Start a node, feed ``frames(camera)`` and return what was received and the log."""
    from sgclip_ros.msg import SceneGraph

    proc = PerceptionProcess(_params(tmp_path, **overrides), ros_domain, tmp_path / "node.log")
    client = Client(ros_domain)
    got = {"graphs": client.subscribe(SceneGraph, "/scene_graph")}
    got["diags"] = client.subscribe(DiagnosticArray, "/diagnostics")
    for name, (kind, topic) in subscribe.items():
        got[name] = client.subscribe(kind, topic)
    camera = RGBDCamera(client)
    try:
        assert client.spin_until(camera.matched, 60), proc.log()
        sent = frames(camera)
        client.spin_until(lambda: _settled(got["diags"], sent), 20)
        client.spin_for(1.0)  # one more diagnostics period
    finally:
        client.close()
        alive, log = proc.alive(), proc.log()
        proc.close()
    assert alive, log
    return got, log


def _settled(diags, sent: int) -> bool:
    return diag_values(diags, f"camera {CAM}").get("frames_received") == str(sent)


def test_positions_detections_3d_and_markers_match_the_scene_graph(tmp_path, ros_domain):
    from vision_msgs.msg import Detection2DArray, Detection3DArray
    from visualization_msgs.msg import Marker, MarkerArray

    def frames(camera: RGBDCamera) -> int:
        for t in range(20):
            camera.frame(t, _depth_msg(_depth_mm(t), 0), _info(0))
        return 20

    outputs = {
        "det2d": (Detection2DArray, "/detections_2d"),
        "det3d": (Detection3DArray, "/detections_3d"),
        "markers": (MarkerArray, "/scene_graph_markers"),
    }
    got, log = _run(
        tmp_path,
        ros_domain,
        frames,
        outputs,
        publish_detections_2d=True,
        publish_detections_3d=True,
        publish_markers=True,
    )
    assert len(got["graphs"]) >= 10, log[-3000:]
    graph = got["graphs"][-1]
    positioned = [o for o in graph.objects if o.has_position]
    assert len(positioned) == 3, [(o.id, o.has_position) for o in graph.objects]
    # Each square comes back at its depth (1%), and at its image column through the intrinsics.
    for obj in positioned:
        ob = obj.observations[-1]
        k = int(np.argmin([abs(ob.box.y_offset - (20 + 25 * k)) for k in range(3)]))
        assert obj.position.z == pytest.approx(DEPTHS[k], rel=0.01)
        centre_col = ob.box.x_offset + ob.box.width / 2
        assert obj.position.x == pytest.approx((centre_col - W / 2) * DEPTHS[k] / F, abs=0.03)
    by_depth = sorted(positioned, key=lambda o: o.position.z)
    facts = {(r.subject_id, r.predicate, r.object_id) for r in graph.relations}
    assert (by_depth[0].id, "in front of", by_depth[2].id) in facts
    assert (by_depth[2].id, "behind", by_depth[0].id) in facts

    stamp = ns_from_time(graph.header.stamp)
    det3d = _at(got["det3d"], stamp).detections
    assert {d.id for d in det3d} == {o.id for o in positioned}
    for det in det3d:
        ob = next(o for o in graph.objects if o.id == det.id).observations[-1]
        p = det.results[0].pose.pose.position
        assert (p.x, p.y, p.z) == pytest.approx((ob.position.x, ob.position.y, ob.position.z))
        centre = det.bbox.center.position
        assert centre.z == pytest.approx((ob.extent_min.z + ob.extent_max.z) / 2)
        assert det.bbox.size.x == pytest.approx(ob.extent_max.x - ob.extent_min.x)
        obj = next(o for o in graph.objects if o.id == det.id)
        assert det.results[0].hypothesis.class_id == obj.label
    det2d = _at(got["det2d"], stamp).detections
    boxes = {o.id: o.observations[-1].box for o in graph.objects}
    for det in det2d:
        assert det.bbox.size_x == boxes[det.id].width
        assert det.bbox.center.position.x == boxes[det.id].x_offset + boxes[det.id].width / 2

    markers = _at(got["markers"], stamp, lambda m: m.markers[0].header.stamp).markers
    assert markers[0].action == Marker.DELETEALL
    cubes = [m for m in markers if m.type == Marker.CUBE]
    assert sorted(round(m.pose.position.z, 4) for m in cubes) == sorted(
        round(d.bbox.center.position.z, 4) for d in det3d
    )
    labels = {m.text for m in markers if m.type == Marker.TEXT_VIEW_FACING}
    assert {f"{o.id}: {o.label}" for o in positioned} <= labels
    lines = [m for m in markers if m.type == Marker.LINE_LIST]
    ids = {o.id for o in positioned}
    among = [r for r in graph.relations if {r.subject_id, r.object_id} <= ids]
    assert len(lines) == min(5, len(among)) > 0  # annotated_relations: 5


def _at(messages, stamp_ns: int, stamp_of=lambda m: m.header.stamp):
    match = [m for m in messages if ns_from_time(stamp_of(m)) == stamp_ns]
    assert match, f"no message stamped {stamp_ns} among {len(messages)}"
    return match[-1]


def test_bad_depth_is_counted_by_reason_and_frames_go_on_without_positions(tmp_path, ros_domain):
    nan_k = (float("nan"), 0.0, 80.0, 0.0, F, 60.0, 0.0, 0.0, 1.0)
    good = _depth_mm(0)
    phases = [  # (reason, depth message, camera info) sent for 4 frames each
        ("camera_info_missing", _depth_msg(good, 0), None),
        ("camera_info_invalid", _depth_msg(good, 0), _info(0, nan_k)),
        ("depth_encoding", _depth_msg(good.astype(np.uint8), 0, "mono8"), _info(0)),
        ("depth_size_mismatch", _depth_msg(good[::2, ::2].copy(), 0), _info(0)),
        ("depth_all_invalid", _depth_msg(np.zeros((H, W), np.uint16), 0), _info(0)),
        ("depth_missing", None, _info(0)),
        ("", _depth_msg(good, 0), _info(0)),  # good again
    ]

    def frames(camera: RGBDCamera) -> int:
        sent = 0
        for _, depth, info in phases:
            for _ in range(4):
                camera.frame(sent, depth, info)
                sent += 1
            camera.client.spin_for(0.3)  # each phase's frames are processed before the next
        return sent

    got, log = _run(tmp_path, ros_domain, frames, {})
    camera = diag_values(got["diags"], f"camera {CAM}")
    for reason, _, _ in phases[:-1]:
        assert int(camera[f"depth.{reason}"]) >= 1, (reason, camera)
    assert int(camera["depth_paired"]) >= 1, camera
    # Every processed frame either had depth or a counted depth problem; none was dropped.
    problems = sum(int(v) for k, v in camera.items() if k.startswith("depth."))
    assert int(camera["depth_paired"]) + problems == int(camera["frames_processed"]), camera
    assert int(camera["graphs_published"]) == int(camera["frames_processed"]) >= 14, camera
    newest = got["graphs"][-1]
    assert any(o.has_position for o in newest.objects)  # positions are back
    assert "frame processed without depth" in log
