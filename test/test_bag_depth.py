"""The bag runner with an RGB-D camera recorded in a bag: depth and CameraInfo pair by stamp
(also when the depth was logged after its colour frame), positions come out in metres, metric
relations with a geometry concept file, and missing depth is counted, never fatal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from sgclip_ros.sim.rgbd_scene import render_rgbd_clip
from sgclip_ros.tools.bag_depth import pair_depth_topics

REPO = Path(__file__).resolve().parent.parent
COLOUR, DEPTH, INFO = "/rgbd/color/image_raw", "/rgbd/depth/image_raw", "/rgbd/camera_info"
T0, PERIOD = 1_700_000_000 * 10**9, 100_000_000
FRAMES, SKIPPED = 8, 5  # frame 5 is recorded without depth


@pytest.fixture(scope="module")
def clip():
    return render_rgbd_clip(3, frames=FRAMES, width=320, height=240)


def _write_bag(path: Path, clip) -> None:
    store = get_typestore(Stores.ROS2_HUMBLE)
    t = store.types

    def header(stamp):
        time = t["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9)
        return t["std_msgs/msg/Header"](stamp=time, frame_id="rgbd_optical")

    def image(stamp, pixels: np.ndarray, encoding: str):
        rows = np.ascontiguousarray(pixels).view(np.uint8).reshape(pixels.shape[0], -1)
        h, w = pixels.shape[:2]
        return t["sensor_msgs/msg/Image"](header(stamp), h, w, encoding, 0, rows.shape[1],
                                           rows.reshape(-1))

    def info(stamp):
        msg = t["sensor_msgs/msg/CameraInfo"]
        roi = t["sensor_msgs/msg/RegionOfInterest"](0, 0, 0, 0, False)
        return msg(header(stamp), 240, 320, "plumb_bob", np.zeros(5), np.array(clip.k),
                   np.eye(3).reshape(-1), np.zeros(12), 0, 0, roi)

    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {
            COLOUR: writer.add_connection(COLOUR, "sensor_msgs/msg/Image", typestore=store),
            DEPTH: writer.add_connection(DEPTH, "sensor_msgs/msg/Image", typestore=store),
            INFO: writer.add_connection(INFO, "sensor_msgs/msg/CameraInfo", typestore=store),
        }
        for k, frame in enumerate(clip.frames):
            stamp = T0 + k * PERIOD
            # Colour first; its depth and info are logged 20 ms later, as a slower driver does.
            messages = [(COLOUR, stamp + 1_000_000, image(stamp, frame.rgb, "rgb8"))]
            if k != SKIPPED:
                messages.append((DEPTH, stamp + 20_000_000, image(stamp, frame.depth_mm, "16UC1")))
            messages.append((INFO, stamp + 20_000_000, info(stamp)))
            for topic, log, msg in messages:
                writer.write(conns[topic], log, store.serialize_cdr(msg, type(msg).__msgtype__))


def test_depth_from_a_bag_gives_positions_relations_and_counted_gaps(tmp_path, clip):
    bag, out = tmp_path / "rgbd", tmp_path / "graphs"
    _write_bag(bag, clip)
    summary_path = tmp_path / "summary.json"
    cmd = [
        sys.executable, "-m", "sgclip_ros.tools.bag", "--in", str(bag), "--out", str(out),
        "--untrained-tiny", "--topics", COLOUR, "--depth", DEPTH, "--camera-info", INFO,
        "--concepts", "config/concepts/shapes_3d.yaml", "--window", "4",
        "--jsonl", str(tmp_path / "graphs.jsonl"), "--summary-json", str(summary_path),
        "--no-progress",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["frames_read"] == summary["frames_processed"] == FRAMES
    depth = summary["depth"][COLOUR]
    assert depth["paired"] == FRAMES - 1 and depth["problems"] == {"depth_missing": 1}
    graphs = [json.loads(line) for line in (tmp_path / "graphs.jsonl").read_text().splitlines()]
    assert len(graphs) == FRAMES
    for k, graph in enumerate(graphs):
        newest = [ob for o in graph["objects"] for ob in o["observations"]
                  if ob["frame_index"] == len(graph["frame_stamps_ns"]) - 1]
        positioned = [ob for ob in newest if ob["position"]]
        if k == SKIPPED:
            assert newest and not positioned  # the frame without depth: no positions
            continue
        assert positioned
        truths = clip.frames[k].objects
        for ob in positioned:  # each position is within 5% of some object's visible surface
            errors = [np.linalg.norm(np.subtract(ob["position"], t.surface_centroid))
                      / np.linalg.norm(t.surface_centroid) for t in truths]
            assert min(errors) < 0.05, (k, ob["box"], min(errors))
    metric = {r["predicate"] for r in graphs[-1]["relations"]}
    assert metric & {"in front of", "behind", "3d left of", "3d right of"}
    with AnyReader([out]) as reader:  # the written bag carries the 3D fields
        conn = reader.connections[0]
        msgs = [reader.deserialize(raw, conn.msgtype) for _, _, raw in reader.messages()]
    assert any(o.has_position for o in msgs[-1].objects)
    assert "depth from /rgbd/depth/image_raw: 7 frames paired" in proc.stdout


def test_depth_topics_pair_with_image_topics():
    assert pair_depth_topics(["/a", "/b"], "/a_d,", "/a_i,") == {"/a": ("/a_d", "/a_i")}
    assert pair_depth_topics(["/a"], None, None) == {}
    with pytest.raises(ValueError, match="one entry per --topics entry"):
        pair_depth_topics(["/a", "/b"], "/a_d", "/a_i")
    with pytest.raises(ValueError, match="needs both"):
        pair_depth_topics(["/a"], "/a_d", "")
    with pytest.raises(ValueError, match="need --topics"):
        pair_depth_topics([], "/a_d", "/a_i")
