"""External detections (vision_msgs/Detection2DArray) drive the node's regions and track ids.

vision_msgs is not on PyPI: the test builds an interface package from message files with the
real vision_msgs 4.x field names, with colcon, and runs the node and a publisher against it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from ros_harness import Client, write_params

from sgclip_ros.tools.procs import ros_env, stop

pytestmark = pytest.mark.usefixtures("needs_install")

VISION_MSGS = {
    "Point2D.msg": "float64 x\nfloat64 y\n",
    "Pose2D.msg": "Point2D position\nfloat64 theta\n",
    "BoundingBox2D.msg": "Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "ObjectHypothesis.msg": "string class_id\nfloat64 score\n",
    "ObjectHypothesisWithPose.msg": (
        "ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n"
    ),
    "Detection2D.msg": "std_msgs/Header header\nObjectHypothesisWithPose[] results\n"
    "BoundingBox2D bbox\nstring id\n",
    "Detection2DArray.msg": "std_msgs/Header header\nDetection2D[] detections\n",
}

PUBLISHER = textwrap.dedent("""
    import sys, time
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose
    sys.path.insert(0, sys.argv[1])
    from ros_harness import shapes_image
    from sgclip_ros.ros.image_conversion import rgb_to_image_msg
    rclpy.init()
    node = rclpy.create_node("detections_publisher")
    qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
    images = node.create_publisher(Image, "/camera/image_raw", qos)
    dets = node.create_publisher(Detection2DArray, "/camera/detections", qos)
    for t in range(400):
        rgb = shapes_image(t)
        stamp = node.get_clock().now().to_msg()
        img = rgb_to_image_msg(rgb)
        img.header.stamp, img.header.frame_id = stamp, "cam"
        images.publish(img)
        time.sleep(0.03)  # detections arrive after their frame, as from a real detector
        arr = Detection2DArray()
        arr.header = img.header
        for k, (track, label) in enumerate((("car7", "car"), ("ped3", "person"))):
            d = Detection2D(id=track)
            phase = t % 40  # the same motion as shapes_image
            x, y = 8 + 45 * k + (phase if phase < 20 else 40 - phase), 20 + 25 * k
            d.bbox.center.position.x, d.bbox.center.position.y = x + 12.5, y + 12.5
            d.bbox.size_x = d.bbox.size_y = 25.0
            hyp = ObjectHypothesisWithPose()
            hyp.hypothesis.class_id, hyp.hypothesis.score = label, 0.9
            d.results = [hyp]
            arr.detections.append(d)
        dets.publish(arr)
        rclpy.spin_once(node, timeout_sec=0.2)
""")


@pytest.fixture(scope="module")
def vision_msgs_prefix(tmp_path_factory):
    src = tmp_path_factory.mktemp("vision_ws") / "src" / "vision_msgs"
    (src / "msg").mkdir(parents=True)
    for name, body in VISION_MSGS.items():
        (src / "msg" / name).write_text(body)
    (src / "package.xml").write_text(
        textwrap.dedent("""\
        <?xml version="1.0"?>
        <package format="3">
          <name>vision_msgs</name><version>4.1.1</version>
          <description>Test copy of vision_msgs 4.x message definitions</description>
          <maintainer email="t@example.com">test</maintainer><license>Apache-2.0</license>
          <buildtool_depend>ament_cmake</buildtool_depend>
          <buildtool_depend>rosidl_default_generators</buildtool_depend>
          <depend>std_msgs</depend><depend>geometry_msgs</depend>
          <member_of_group>rosidl_interface_packages</member_of_group>
          <export><build_type>ament_cmake</build_type></export>
        </package>
    """)
    )
    msgs = " ".join(f"msg/{n}" for n in VISION_MSGS)
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\nproject(vision_msgs C CXX)\n"
        "find_package(ament_cmake REQUIRED)\nfind_package(rosidl_default_generators REQUIRED)\n"
        "find_package(std_msgs REQUIRED)\nfind_package(geometry_msgs REQUIRED)\n"
        f"rosidl_generate_interfaces(${{PROJECT_NAME}} {msgs}\n"
        "  DEPENDENCIES std_msgs geometry_msgs)\n"
        "ament_package()\n"
    )
    ws = src.parent.parent
    venv = sys.prefix
    build = subprocess.run(
        [
            "bash",
            "-c",
            f"export PATH={venv}/bin:$PATH CMAKE_PREFIX_PATH={venv} "
            f"AMENT_PREFIX_PATH={venv}; colcon build --base-paths src --cmake-args "
            f"-DPython3_EXECUTABLE={venv}/bin/python -DBUILD_TESTING=OFF",
        ],
        cwd=ws,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return ws / "install"


def _start(prefix, args, env, log):
    cmd = f". {prefix}/setup.sh && exec {sys.executable} " + " ".join(args)
    return subprocess.Popen(["bash", "-c", cmd], env=env, stdout=log, stderr=subprocess.STDOUT)


def test_detections_give_regions_labels_and_track_ids(vision_msgs_prefix, tmp_path, ros_domain):
    from test_perception_node import REPO_ROOT

    from sgclip_ros.msg import SceneGraph

    params = write_params(
        tmp_path / "p.yaml",
        detections=["/camera/detections"],
        reliability="reliable",
        max_stamp_age_s=0.0,
        detection_wait_s=1.0,
    )
    env = ros_env(ros_domain)
    log = open(tmp_path / "procs.log", "w")
    node = _start(
        vision_msgs_prefix,
        ["-m", "sgclip_ros.nodes.perception_node", "--ros-args", "--params-file", str(params)],
        env,
        log,
    )
    client = Client(ros_domain)
    graphs = client.subscribe(SceneGraph, "/scene_graph")
    script = tmp_path / "publish.py"
    script.write_text(PUBLISHER)
    pub = _start(vision_msgs_prefix, [str(script), str(REPO_ROOT / "test")], env, log)
    try:
        assert client.spin_until(lambda: len(graphs) >= 3, 90), (tmp_path / "procs.log").read_text()
    finally:
        client.close()
        stop(pub)
        alive = node.poll() is None
        stop(node)
        log.close()
    assert alive, (tmp_path / "procs.log").read_text()
    last = graphs[-1]
    assert {o.id for o in last.objects} == {"car7", "ped3"}
    assert {o.id: o.detector_label for o in last.objects} == {"car7": "car", "ped3": "person"}
    for obj in last.objects:
        box = obj.observations[-1].box
        assert (box.width, box.height) == (25, 25)
        assert all(abs(ob.confidence - 0.9) < 1e-6 for ob in obj.observations)


def test_vision_msgs_is_needed_only_when_a_detections_topic_is_set(monkeypatch):
    import sys

    from sgclip_ros.nodes.perception_node import _check_detections_available

    monkeypatch.setitem(sys.modules, "vision_msgs", None)  # as on a robot without vision_msgs
    monkeypatch.setitem(sys.modules, "vision_msgs.msg", None)
    _check_detections_available(["", ""])
    with pytest.raises(RuntimeError, match="vision_msgs is not installed"):
        _check_detections_available(["", "/front/detections"])
