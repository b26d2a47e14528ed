"""Detections stored in a bag: Detection2DArray sets paired with images by stamp, types from the
bag (mcap) or from an installed vision_msgs (sqlite3 without definitions), no_detections counted.

The vision_msgs 4.x definitions are the real package's, read from ../shared/ros2-tools.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from test_bag_runner import PERIOD, RAW, T0, _shapes

from sgclip_ros.core.regions import Region
from sgclip_ros.core.scene_graph import Box
from sgclip_ros.tools import bag as runner
from sgclip_ros.tools.bag_detections import DetectionIndex, pair_topics

REPO = Path(__file__).resolve().parent.parent
TARBALL = REPO.parent / "shared" / "ros2-tools" / "src-vision-msgs.tar.gz"
DETS = "/cam_a/detections"
FRAMES = 9
MISSING = {3, 6}  # frames without a detection set
EMPTY = {8}  # a set with no detections: processed, no objects
IDS = {"red": "red_block", "blue": "blue_block"}


def _vision_msgs() -> dict[str, str]:
    """name -> text of vision_msgs/msg/*.msg in the shared sources (skips when absent)."""
    if not TARBALL.is_file():
        pytest.skip(f"{TARBALL} is absent: the vision_msgs 4.x sources come from ../shared")
    with tarfile.open(TARBALL) as tar:
        return {
            Path(m.name).stem: tar.extractfile(m).read().decode()
            for m in tar.getmembers()
            if m.isfile() and m.name.startswith("src/vision_msgs/msg/") and m.name.endswith(".msg")
        }


def _store():
    store = get_typestore(Stores.ROS2_HUMBLE)
    types = {}
    for name, text in _vision_msgs().items():
        types.update(get_types_from_msg(text, f"vision_msgs/msg/{name}"))
    store.register(types)
    return store


def _boxes(k: int) -> dict[str, tuple[int, int, int, int]]:
    """Detection boxes (x1, y1, x2, y2) of frame k: the red square and the blue rectangle."""
    return {"red": (8 + 3 * k, 10, 35 + 3 * k, 37), "blue": (40 + 2 * k, 60, 71 + 2 * k, 87)}


def _detections(store, stamp: int, boxes: dict):
    t = store.types
    time = t["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9)
    header = t["std_msgs/msg/Header"](stamp=time, frame_id="a_optical")
    pose = t["geometry_msgs/msg/PoseWithCovariance"](
        pose=t["geometry_msgs/msg/Pose"](
            position=t["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
            orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
        ),
        covariance=np.zeros(36, np.float64),
    )
    dets = []
    for track, (x1, y1, x2, y2) in boxes.items():
        center = t["vision_msgs/msg/Pose2D"](
            position=t["vision_msgs/msg/Point2D"](x=(x1 + x2) / 2, y=(y1 + y2) / 2), theta=0.0
        )
        hyp = t["vision_msgs/msg/ObjectHypothesis"](class_id=IDS[track], score=0.9)
        dets.append(
            t["vision_msgs/msg/Detection2D"](
                header=header,
                results=[t["vision_msgs/msg/ObjectHypothesisWithPose"](hypothesis=hyp, pose=pose)],
                bbox=t["vision_msgs/msg/BoundingBox2D"](
                    center=center, size_x=float(x2 - x1), size_y=float(y2 - y1)
                ),
                id=track,
            )
        )
    return t["vision_msgs/msg/Detection2DArray"](header=header, detections=dets)


def _write_bag(path: Path, storage: StoragePlugin, offset_ns: int = 0) -> dict[int, int]:
    """9 raw frames; detections (logged 20 ms after their image) for all but MISSING.
    Returns stamp -> frame number."""
    store = _store()
    stamps = {}
    with Writer(path, version=8, storage_plugin=storage) as writer:
        image = writer.add_connection(RAW, "sensor_msgs/msg/Image", typestore=store)
        dets = writer.add_connection(
            DETS, "vision_msgs/msg/Detection2DArray", typestore=store
        )
        records = []
        for k in range(FRAMES):
            stamp = T0 + k * PERIOD
            stamps[stamp] = k
            rgb = _shapes(k)
            header = _detections(store, stamp, {}).header
            msg = store.types["sensor_msgs/msg/Image"](
                header, 96, 128, "rgb8", 0, 128 * 3, rgb.reshape(-1)
            )
            records.append((stamp + 3_000_000, image, store.serialize_cdr(msg, msg.__msgtype__)))
            if k not in MISSING:
                boxes = {} if k in EMPTY else _boxes(k)
                det = _detections(store, stamp + offset_ns, boxes)
                data = store.serialize_cdr(det, det.__msgtype__)
                records.append((stamp + 20_000_000, dets, data))
        for log, conn, data in sorted(records, key=lambda r: r[0]):
            writer.write(conn, log, data)
    return stamps


def _strip_definitions(bag: Path) -> None:
    """Make a sqlite3 bag like Humble's rosbag2 writes: no message definitions stored."""
    (db,) = bag.glob("*.db3")
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM message_definitions")


def _prefix_with_vision_msgs(root: Path) -> Path:
    folder = root / "share" / "vision_msgs" / "msg"
    folder.mkdir(parents=True)
    for name, text in _vision_msgs().items():
        (folder / f"{name}.msg").write_text(text)
    return root


def _run(tmp_path: Path, bag: Path, ament_prefix: Path, *extra: str):
    out, summary = tmp_path / "out", tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "sgclip_ros.tools.bag", "--in", str(bag), "--out", str(out)]
    cmd += ["--untrained-tiny", "--topics", RAW, "--detections", DETS, "--window", "4"]
    cmd += ["--stride", "2", "--summary-json", str(summary), "--no-progress", *extra]
    env = dict(os.environ, AMENT_PREFIX_PATH=str(ament_prefix))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    got = json.loads(summary.read_text()) if summary.exists() else None
    return proc, out, got


def _graphs(out: Path) -> list:
    with AnyReader([out], default_typestore=get_typestore(Stores.EMPTY)) as reader:
        return [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages()]


def _ns(t) -> int:
    return t.sec * 10**9 + t.nanosec


def _check_graphs_use_the_detections(out: Path, stamps: dict[int, int], summary: dict) -> None:
    used = FRAMES - len(MISSING)
    assert summary["no_detections"] == len(MISSING)
    assert summary["rejected"][RAW] == {"no_detections": len(MISSING)}
    assert summary["frames_processed"] == used
    assert summary["detections"][RAW]["sets"] == used and summary["detections"][RAW]["used"] == used
    graphs = _graphs(out)
    assert len(graphs) == used // 2  # stride 2 over the processed frames
    assert all(stamps[_ns(s)] not in MISSING for g in graphs for s in g.frame_stamps)
    seen = set()
    for graph in graphs:
        for obj in graph.objects:
            # ids and labels are the detector's (the built-in proposer would number its own)
            assert obj.id in IDS and obj.detector_label == IDS[obj.id], obj
            for ob in obj.observations:
                k = stamps[_ns(graph.frame_stamps[ob.frame_index])]
                x1, y1, x2, y2 = _boxes(k)[obj.id]
                roi = ob.box
                assert (roi.x_offset, roi.y_offset, roi.width, roi.height) == (
                    x1, y1, x2 - x1, y2 - y1
                )
                seen.add((obj.id, k))
    assert {i for i, _ in seen} == set(IDS)


def test_mcap_detections_with_their_definitions_from_the_bag(tmp_path):
    bag = tmp_path / "in"
    stamps = _write_bag(bag, StoragePlugin.MCAP)
    empty = tmp_path / "no_vision_msgs"  # the bag's own definitions must be enough
    empty.mkdir()
    proc, out, summary = _run(tmp_path, bag, empty)
    assert proc.returncode == 0, proc.stderr
    assert summary["detections"][RAW]["types_from"] == "the bag"
    _check_graphs_use_the_detections(out, stamps, summary)
    assert "no_detections 2" in proc.stdout


def test_sqlite3_without_definitions_uses_the_installed_vision_msgs(tmp_path):
    bag = tmp_path / "in"
    stamps = _write_bag(bag, StoragePlugin.SQLITE3)
    _strip_definitions(bag)
    prefix = _prefix_with_vision_msgs(tmp_path / "prefix")
    proc, out, summary = _run(tmp_path, bag, prefix)
    assert proc.returncode == 0, proc.stderr
    assert summary["detections"][RAW]["types_from"] == str(prefix / "share/vision_msgs/msg")
    _check_graphs_use_the_detections(out, stamps, summary)


def test_sqlite3_without_definitions_or_vision_msgs_is_a_clear_error(tmp_path):
    bag = tmp_path / "in"
    _write_bag(bag, StoragePlugin.SQLITE3)
    _strip_definitions(bag)
    proc, out, _ = _run(tmp_path, bag, tmp_path / "nowhere")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "bag: error:" in proc.stderr and "vision_msgs is not installed" in proc.stderr
    assert "nowhere/share/vision_msgs/msg" in proc.stderr and not out.exists()


def test_stamps_match_exactly_unless_a_tolerance_is_given(tmp_path):
    bag = tmp_path / "in"
    stamps = _write_bag(bag, StoragePlugin.MCAP, offset_ns=1_000_000)  # detections 1 ms late
    proc, out, summary = _run(tmp_path, bag, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert summary["no_detections"] == FRAMES and summary["graphs_written"] == 0
    (tmp_path / "b").mkdir()
    proc, _, summary = _run(tmp_path / "b", bag, tmp_path, "--detection-tolerance-s", "0.002")
    assert proc.returncode == 0, proc.stderr
    assert summary["no_detections"] == len(MISSING) and summary["graphs_written"] == 3
    assert len(stamps) == FRAMES


def test_detection_index_nearest_match():
    index = DetectionIndex("/d")
    a, b = [Region(Box(0, 0, 1, 1))], [Region(Box(1, 1, 2, 2))]
    index.add(100, a)
    index.add(200, b)
    assert index.match(100) is a and index.match(150) is None
    assert index.match(150, tolerance_ns=50) is a  # a tie goes to the earlier set
    assert index.match(160, tolerance_ns=50) is b and index.match(260, tolerance_ns=50) is None
    assert index.match(40, tolerance_ns=60) is a and index.used == 4


def test_detection_topics_pair_with_image_topics(tmp_path, capsys):
    assert pair_topics(["/a", "/b"], "/a_det, /b_det") == {"/a": "/a_det", "/b": "/b_det"}
    assert pair_topics(["/a"], None) == {}
    with pytest.raises(ValueError, match="one per image topic"):
        pair_topics(["/a", "/b"], "/a_det")
    with pytest.raises(ValueError, match="needs --topics"):
        pair_topics([], "/a_det")
    bag = tmp_path / "in"
    _write_bag(bag, StoragePlugin.MCAP)
    base = ["--in", str(bag), "--untrained-tiny", "--topics", RAW, "--no-progress"]
    cases = [
        (["--out", str(tmp_path / "o1"), "--detections", "/nope"], "no detection topic '/nope'"),
        (["--out", str(tmp_path / "o2"), "--detections", RAW], "not vision_msgs/msg/Detection2D"),
        (["--out", str(tmp_path / "o3"), "--detections", DETS, "--detection-tolerance-s", "-1"],
         "must be >= 0"),
    ]  # fmt: skip
    for args, words in cases:
        assert runner.main([*base, *args]) == 1, args
        err = capsys.readouterr().err
        assert err.startswith("bag: error:") and words in err, err
