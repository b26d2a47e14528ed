"""Every live parameter of the perception node does what it says, set over the real
SetParameters service while frames flow; and the live set is exactly ParamSpec's.

One test per live parameter. The node runs in the test process (node_inproc) only so a test
can read its drop counters; parameters, frames and graphs go over DDS.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from node_inproc import InProcessNode
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from ros_harness import Client, shapes_image
from sensor_msgs.msg import Image

from sgclip_ros.nodes.perception_live import LIVE, LIVE_GROUPS
from sgclip_ros.ros.conversions import time_from_ns
from sgclip_ros.ros.image_conversion import rgb_to_image_msg
from sgclip_ros.ros.params import SPECS

pytestmark = pytest.mark.usefixtures("needs_install")

CAM, DETS = "/camera/image_raw", "/camera/detections"
LIVE_TESTED = set()  # filled by @effect_of; checked against ParamSpec below


def effect_of(name):
    LIVE_TESTED.add(name)
    return lambda fn: fn


def test_the_live_groups_are_exactly_the_live_specs_and_every_one_has_an_effect_test():
    import test_live_params_depth  # noqa: F401 - registers the depth and output parameters

    assert LIVE == {n for n, s in SPECS.items() if s.live}
    assert sum(len(g) for g in LIVE_GROUPS) == len(LIVE)  # no parameter in two groups
    assert LIVE_TESTED == LIVE


def _value(v) -> ParameterValue:
    if isinstance(v, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=v)
    if isinstance(v, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=v)
    if isinstance(v, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=v)
    if isinstance(v, list):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER_ARRAY, integer_array_value=v)
    return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=v)


class Rig:
    def __init__(self, tmp_path, domain, **overrides):
        params = dict(
            model_dir="untrained-tiny",
            reliability="reliable",
            qos_depth=50,
            max_stamp_age_s=0.0,
            detections=[""],
        )
        params.update(overrides)
        self.node = InProcessNode(tmp_path, domain, **params)
        self.client = Client(domain)
        from sgclip_ros.msg import SceneGraph

        self.graphs = self.client.subscribe(SceneGraph, "/scene_graph")
        self.pub = self.client.publisher(Image, CAM)
        self.t = 0
        # Single frames must not be sent before the node's subscription matched.
        assert self.client.spin_until(lambda: self.pub.get_subscription_count() > 0, 20)

    def set(self, name: str, value):
        """Set over the SetParameters service; returns (successful, reason)."""
        reply = self.client.call(
            SetParameters,
            "/sgclip_perception/set_parameters",
            SetParameters.Request(parameters=[Parameter(name=name, value=_value(value))]),
        )
        return reply.results[0].successful, reply.results[0].reason

    def send(self, stamp_ns: int | None = None, rgb: np.ndarray | None = None) -> int:
        stamp_ns = time.time_ns() if stamp_ns is None else stamp_ns
        msg = rgb_to_image_msg(shapes_image(self.t) if rgb is None else rgb)
        msg.header.stamp, msg.header.frame_id = time_from_ns(stamp_ns), "cam"
        self.pub.publish(msg)
        self.t += 1
        return stamp_ns

    def graphs_after(self, stamp_ns: int) -> list:
        return [g for g in list(self.graphs) if _stamp(g) >= stamp_ns]

    def feed_until(self, predicate, timeout: float = 30.0, **send) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.send(**send)
            if self.client.spin_until(predicate, 0.1):
                return True
        return predicate()

    def close(self):
        self.client.close()
        self.node.close()


def _stamp(graph) -> int:
    return graph.header.stamp.sec * 1_000_000_000 + graph.header.stamp.nanosec


@pytest.fixture
def rig(tmp_path, ros_domain, request):
    rig = Rig(tmp_path, ros_domain, **getattr(request, "param", {}))
    yield rig
    rig.close()


def _graph_after_set(rig, name, value, predicate=lambda g: True, timeout=30.0):
    ok, reason = rig.set(name, value)
    assert ok, reason
    since = time.time_ns()
    assert rig.feed_until(lambda: any(predicate(g) for g in rig.graphs_after(since)), timeout)
    return [g for g in rig.graphs_after(since) if predicate(g)][-1]


# ---- window and graph -------------------------------------------------------------------------


@effect_of("window_size")
def test_window_size(rig):
    assert rig.feed_until(lambda: any(len(g.frame_stamps) == 8 for g in rig.graphs))
    graph = _graph_after_set(rig, "window_size", 3, lambda g: len(g.frame_stamps) == 3)
    assert len(graph.frame_stamps) == 3


@effect_of("window_stride")
def test_window_stride(rig):
    ok, reason = rig.set("window_stride", 4)
    assert ok, reason
    rig.feed_until(lambda: False, 1.0)  # the change applies between batches
    since = time.time_ns()
    sent = [rig.send() for _ in range(40) if rig.client.spin_for(0.05) is None]
    rig.client.spin_for(1.0)
    got = [g for g in rig.graphs_after(since) if _stamp(g) in sent]
    assert 6 <= len(got) <= 11, (len(got), len(sent))  # 40 frames / stride 4 = 10


@effect_of("window_max_age_s")
def test_window_max_age_s(rig):
    graph = _graph_after_set(rig, "window_max_age_s", 0.25, lambda g: len(g.frame_stamps) >= 2)
    span = (_ns(graph.frame_stamps[-1]) - _ns(graph.frame_stamps[0])) / 1e9
    assert span <= 0.25 and len(graph.frame_stamps) < 8


def _ns(t) -> int:
    return t.sec * 1_000_000_000 + t.nanosec


@effect_of("max_objects")
def test_max_objects(rig):
    assert rig.feed_until(lambda: any(len(g.objects) == 3 for g in rig.graphs))
    graph = _graph_after_set(rig, "max_objects", 1, lambda g: len(g.objects) == 1)
    assert len(graph.objects) == 1


def _threshold_gates(rig, name: str, facts: str) -> None:
    """At 0 every scored fact holds; at 1 (above any score) none does."""
    graph = _graph_after_set(rig, name, 0.0, lambda g: len(getattr(g, facts)) > 0)
    assert getattr(graph, facts)
    graph = _graph_after_set(rig, name, 1.0, lambda g: not getattr(g, facts))
    assert not getattr(graph, facts)


@effect_of("attribute_threshold")
def test_attribute_threshold(rig):
    _threshold_gates(rig, "attribute_threshold", "attributes")


@effect_of("relation_threshold")
def test_relation_threshold(rig):
    _threshold_gates(rig, "relation_threshold", "relations")


@effect_of("top_k_labels")
def test_top_k_labels(rig):
    graph = _graph_after_set(rig, "top_k_labels", 1, lambda g: g.objects)
    graph = _graph_after_set(rig, "top_k_labels", 1, lambda g: g.objects)
    assert {len(o.labels) for o in graph.objects} == {1}
    graph = _graph_after_set(rig, "top_k_labels", 4, lambda g: len(g.objects[0].labels) == 4)
    assert {len(o.labels) for o in graph.objects} == {4}


@effect_of("max_crops_per_frame")
@pytest.mark.parametrize("rig", [{"window_size": 1}], indirect=True)
def test_max_crops_per_frame(rig):
    def pairs(g):
        return {(r.subject_id, r.object_id) for r in g.relations}

    rig.set("relation_threshold", 0.0)
    assert rig.feed_until(lambda: any(len(pairs(g)) == 6 for g in rig.graphs))  # 3 objects
    before = rig.node.node.predictor.stats.encode.pairs_capped
    graph = _graph_after_set(rig, "max_crops_per_frame", 2, lambda g: len(pairs(g)) <= 2)
    assert 1 <= len(pairs(graph)) <= 2
    assert rig.node.node.predictor.stats.encode.pairs_capped >= before + 4
    ok, reason = rig.set("max_crops_per_frame", 100_000)
    assert not ok and "max_crops_per_frame" in reason


@effect_of("concepts_file")
def test_concepts_file(rig, tmp_path):
    fruit = tmp_path / "fruit.yaml"
    fruit.write_text("categories: [apple, pear]\nunary: [ripe]\nbinary: [near]\n")
    graph = _graph_after_set(rig, "concepts_file", str(fruit), lambda g: g.objects)
    graph = _graph_after_set(
        rig, "concepts_file", str(fruit), lambda g: g.objects and g.objects[0].label == "apple"
        or g.objects and g.objects[0].label == "pear"
    )
    assert {o.label for o in graph.objects} <= {"apple", "pear"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("categories: [a, a]\nunary: [x]\nbinary: [y]\n")
    ok, reason = rig.set("concepts_file", str(bad))
    assert not ok and "duplicate" in reason.lower()


# ---- inputs -----------------------------------------------------------------------------------


@effect_of("max_pixels")
def test_max_pixels(rig):
    assert rig.feed_until(lambda: rig.graphs)
    ok, _ = rig.set("max_pixels", 100)
    assert ok
    rig.feed_until(lambda: rig.node.node.drops.count(CAM, "too_large") >= 3, 10)
    assert rig.node.node.drops.count(CAM, "too_large") >= 3


@effect_of("max_stamp_age_s")
def test_max_stamp_age_s(rig):
    old = time.time_ns() - 2_000_000_000
    ok, _ = rig.set("max_stamp_age_s", 0.5)
    assert ok
    rig.send(stamp_ns=old)
    assert rig.node.wait_for(lambda: rig.node.node.drops.count(CAM, "stale_stamp") == 1, 10)


@effect_of("max_stamp_future_s")
def test_max_stamp_future_s(rig):
    ahead = time.time_ns() + 2_000_000_000
    rig.send(stamp_ns=ahead)
    assert rig.node.wait_for(lambda: rig.node.node.drops.count(CAM, "future_stamp") == 1, 10)
    ok, _ = rig.set("max_stamp_future_s", 5.0)
    assert ok
    stamp = rig.send(stamp_ns=ahead + 1000)
    assert rig.client.spin_until(lambda: any(_stamp(g) == stamp for g in rig.graphs), 10)


# ---- outputs ----------------------------------------------------------------------------------


@effect_of("publish_annotated")
def test_publish_annotated(rig):
    images = rig.client.subscribe(Image, "/annotated_image")
    assert rig.feed_until(lambda: len(rig.graphs) >= 3)
    rig.client.spin_for(0.5)
    assert not images
    ok, _ = rig.set("publish_annotated", True)
    assert ok and rig.feed_until(lambda: images)


@effect_of("annotated_relations")
@pytest.mark.parametrize("rig", [{"publish_annotated": True, "relation_threshold": 0.0}],
                         indirect=True)
def test_annotated_relations(rig):
    images = rig.client.subscribe(Image, "/annotated_image")
    still = shapes_image(5)

    def drawn(count: int) -> np.ndarray:
        ok, _ = rig.set("annotated_relations", count)
        assert ok
        since = time.time_ns()
        assert rig.feed_until(
            lambda: any(_ns(i.header.stamp) >= since for i in images), rgb=still
        )
        msg = [i for i in images if _ns(i.header.stamp) >= since][-1]
        return np.frombuffer(bytes(msg.data), np.uint8)

    none, five = drawn(0), drawn(5)
    assert (none != five).sum() > 100  # the relation lines and labels


# ---- detections -------------------------------------------------------------------------------


def _detections(stamp_ns: int, scale: float = 1.0, t: int = 0):
    from vision_msgs.msg import Detection2D, Detection2DArray

    arr = Detection2DArray()
    arr.header.stamp, arr.header.frame_id = time_from_ns(stamp_ns), "cam"
    phase = t % 40
    for k in range(2):
        x, y = 8 + 45 * k + (phase if phase < 20 else 40 - phase), 20 + 25 * k
        det = Detection2D(id=f"obj{k}")
        det.bbox.center.position.x = (x + 12.5) * scale
        det.bbox.center.position.y = (y + 12.5) * scale
        det.bbox.size_x = det.bbox.size_y = 25.0 * scale
        arr.detections.append(det)
    return arr


DETECTED = {"detections": [DETS], "detection_wait_s": 5.0}


@effect_of("detection_wait_s")
@pytest.mark.parametrize("rig", [DETECTED], indirect=True)
def test_detection_wait_s(rig):
    drops = rig.node.node.drops
    for _ in range(3):
        rig.send()
        rig.client.spin_for(0.05)
    assert rig.node.wait_for(lambda: rig.node.node.worker.pending == 3, 5)
    rig.client.spin_for(0.5)
    assert drops.count(CAM, "no_detections") == 0
    ok, _ = rig.set("detection_wait_s", 0.1)
    assert ok
    assert rig.node.wait_for(lambda: drops.count(CAM, "no_detections") == 3, 5)


@effect_of("detection_stamp_tolerance_s")
@pytest.mark.parametrize("rig", [DETECTED], indirect=True)
def test_detection_stamp_tolerance_s(rig):
    from vision_msgs.msg import Detection2DArray

    dets = rig.client.publisher(Detection2DArray, DETS)
    stamp = rig.send()
    dets.publish(_detections(stamp + 3_000_000, t=rig.t - 1))  # a detector that re-stamps
    rig.client.spin_for(1.0)
    assert not rig.graphs_after(stamp)
    ok, _ = rig.set("detection_stamp_tolerance_s", 0.01)
    assert ok
    stamp = rig.send()
    dets.publish(_detections(stamp + 3_000_000, t=rig.t - 1))
    assert rig.client.spin_until(lambda: rig.graphs_after(stamp), 10)


@effect_of("detection_image_size")
@pytest.mark.parametrize("rig", [DETECTED], indirect=True)
def test_detection_image_size(rig):
    from vision_msgs.msg import Detection2DArray

    dets = rig.client.publisher(Detection2DArray, DETS)
    ok, _ = rig.set("detection_image_size", [320, 240])  # the detector saw 2x the 160x120 frame
    assert ok
    stamp = rig.send()
    dets.publish(_detections(stamp, scale=2.0, t=rig.t - 1))
    assert rig.client.spin_until(lambda: rig.graphs_after(stamp), 10)
    boxes = [o.observations[-1].box for o in rig.graphs_after(stamp)[-1].objects]
    assert sorted((b.width, b.height) for b in boxes) == [(25, 25), (25, 25)]
    assert rig.node.node.worker.regions_outside == {}
    ok, reason = rig.set("detection_image_size", [320, 0])
    assert not ok and "detection_image_size" in reason
