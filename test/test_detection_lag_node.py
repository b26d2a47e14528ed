"""A real perception node process, a 30 Hz camera and a detector that answers late, over DDS.

The detector publishes each frame's Detection2DArray 3 (or 10) frame periods after the image,
as a 100 ms (333 ms) detector would. Nearly every detection set must give a scene graph, and the
node's books must balance. (Before frames were held in a ring, 1 frame in 60 got through.)
"""

from __future__ import annotations

import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from ros_harness import Client, PerceptionProcess, diag_values, write_params
from sensor_msgs.msg import Image
from test_live_params import _detections

from sgclip_ros.ros.conversions import time_from_ns
from sgclip_ros.ros.image_conversion import rgb_to_image_msg

pytestmark = pytest.mark.usefixtures("needs_install")

CAM, DETS, FRAMES, HZ = "/camera/image_raw", "/camera/detections", 90, 30.0


@pytest.mark.parametrize("lag", [3, 10])
def test_a_lagging_detector_at_30_hz_gets_a_graph_per_detection_set(tmp_path, ros_domain, lag):
    from ros_harness import shapes_image
    from vision_msgs.msg import Detection2DArray

    from sgclip_ros.msg import SceneGraph

    params = write_params(
        tmp_path / "p.yaml",
        model_dir="untrained-tiny",
        detections=[DETS],
        detection_wait_s=1.0,
        reliability="reliable",
        qos_depth=100,
        max_stamp_age_s=0.0,
        diagnostics_period_s=0.5,
    )
    proc = PerceptionProcess(params, ros_domain, tmp_path / "node.log")
    client = Client(ros_domain)
    graphs = client.subscribe(SceneGraph, "/scene_graph")
    diags = client.subscribe(DiagnosticArray, "/diagnostics")
    images = client.publisher(Image, CAM)
    dets = client.publisher(Detection2DArray, DETS)
    try:
        assert client.spin_until(
            lambda: images.get_subscription_count() and dets.get_subscription_count(), 60
        ), proc.log()
        sent, start = [], time.monotonic()
        for k in range(FRAMES + lag):
            if k < FRAMES:
                stamp = time.time_ns()
                msg = rgb_to_image_msg(shapes_image(k))
                msg.header.stamp, msg.header.frame_id = time_from_ns(stamp), "cam"
                images.publish(msg)
                sent.append(stamp)
            if k >= lag:  # the detector's answer for frame k - lag
                dets.publish(_detections(sent[k - lag], t=k - lag))
            client.spin_for(max(0.0, start + (k + 1) / HZ - time.monotonic()))
        client.spin_until(lambda: len(graphs) >= FRAMES, 10)

        def settled():
            values = diag_values(diags, f"camera {CAM}")
            return values.get("frames_received") == str(FRAMES)

        assert client.spin_until(settled, 10), diag_values(diags, f"camera {CAM}")
        client.spin_for(1.5)  # one more diagnostics period after the last frame
    finally:
        client.close()
        alive, log = proc.alive(), proc.log()
        proc.close()
    assert alive, log
    assert len(graphs) >= 0.9 * FRAMES, (len(graphs), log[-2000:])
    camera = diag_values(diags, f"camera {CAM}")
    drops = sum(int(v) for k, v in camera.items() if k.startswith("drops."))
    node = diag_values(diags, ": node")
    assert int(camera["frames_processed"]) + drops + int(node["pending"]) == FRAMES, camera
