"""The perception node over real DDS, in its own process: graphs, cameras, concept changes."""

from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from ros_harness import Client, PerceptionProcess, diag_values, shapes_image, write_params

from sgclip_ros.core.model_store import sha256_file

pytestmark = pytest.mark.usefixtures("needs_install")

PERIOD_NS = 100_000_000
REPO_ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def _image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str):
    from sensor_msgs.msg import Image

    from sgclip_ros.ros.conversions import time_from_ns

    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=rgb.shape[1] * 3)
    msg.data = rgb.tobytes()
    msg.header.stamp = time_from_ns(stamp_ns)
    msg.header.frame_id = frame_id
    return msg


@pytest.fixture
def node_and_client(tmp_path, ros_domain, request):
    overrides = getattr(request, "param", {})
    params = write_params(
        tmp_path / "params.yaml",
        reliability="reliable",
        qos_depth=50,
        max_stamp_age_s=0.0,
        **overrides,
    )
    proc = PerceptionProcess(params, ros_domain, tmp_path / "node.log")
    client = Client(ros_domain)
    yield proc, client
    client.close()
    assert proc.alive(), proc.log()
    proc.close()


def _publish_until_graphs(client, pubs, graphs, n, start_t=0, timeout=60.0, pred=None):
    """Publish one frame per camera every period until ``n`` graphs (matching pred) arrived."""
    from sgclip_ros.msg import SceneGraph  # noqa: F401

    t = start_t
    pred = pred or (lambda g: True)

    def enough():
        return sum(1 for g in graphs if pred(g)) >= n

    while not enough() and t < start_t + 600:
        for pub, frame_id in pubs.values():
            pub.publish(_image_msg(shapes_image(t), 1_000_000_000 + t * PERIOD_NS, frame_id))
        t += 1
        if client.spin_until(enough, 0.1):
            break
    assert client.spin_until(enough, timeout), f"only {len(graphs)} graphs"
    return t


# Untrained weights score relations near chance: threshold 0 makes every scored pair appear.
@pytest.mark.parametrize("node_and_client", [{"relation_threshold": 0.0}], indirect=True)
def test_frames_give_scene_graphs_with_stamps_frame_ids_objects(node_and_client):
    from sensor_msgs.msg import Image

    from sgclip_ros.msg import SceneGraph

    proc, client = node_and_client
    graphs = client.subscribe(SceneGraph, "/scene_graph")
    pub = client.publisher(Image, "/camera/image_raw")
    _publish_until_graphs(client, {"cam": (pub, "cam_optical")}, graphs, 5)
    sent = {1_000_000_000 + t * PERIOD_NS for t in range(600)}
    for g in graphs:
        stamp = g.header.stamp.sec * 10**9 + g.header.stamp.nanosec
        assert stamp in sent
        assert g.header.frame_id == "cam_optical" and g.camera == "/camera/image_raw"
        assert g.frame_stamps[-1] == g.header.stamp
        assert g.backend == "torch" and g.inference_ms != 0.0  # the field is filled in
    last = graphs[-1]
    newest = len(last.frame_stamps) - 1
    in_view = [o for o in last.objects if o.observations[-1].frame_index == newest]
    assert len(in_view) == 3
    assert {o.label for o in last.objects} <= {"circle", "square", "triangle", "star"}
    ids = {o.id for o in in_view}
    pairs = {(r.subject_id, r.object_id) for r in last.relations}
    assert pairs >= {(a, b) for a in ids for b in ids if a != b}
    assert {r.predicate for r in last.relations} == {
        "left of",
        "right of",
        "above",
        "below",
        "touching",
        "approaching",
        "moving away from",
    }


@pytest.mark.parametrize(
    "node_and_client", [{"cameras": ["/cam_a/image_raw", "/cam_b/image_raw"]}], indirect=True
)
def test_two_cameras_are_served_by_one_model(node_and_client):
    from sensor_msgs.msg import Image

    from sgclip_ros.msg import SceneGraph

    proc, client = node_and_client
    graphs = client.subscribe(SceneGraph, "/scene_graph")
    diags = client.subscribe(DiagnosticArray, "/diagnostics")
    pubs = {
        c: (client.publisher(Image, f"/{c}/image_raw"), f"{c}_optical") for c in ("cam_a", "cam_b")
    }
    _publish_until_graphs(client, pubs, graphs, 3, pred=lambda g: g.camera == "/cam_b/image_raw")
    _publish_until_graphs(client, pubs, graphs, 3, pred=lambda g: g.camera == "/cam_a/image_raw")
    by_camera = {g.camera: g.header.frame_id for g in graphs}
    assert by_camera == {"/cam_a/image_raw": "cam_a_optical", "/cam_b/image_raw": "cam_b_optical"}
    # One node, one backend: its single model processed the frames of both cameras.
    assert client.spin_until(lambda: diag_values(diags, ": node").get("cameras") == "2", 10)
    client.spin_for(1.5)  # one more diagnostics period, so the counts include the graphs above
    node_status = diag_values(diags, ": node")
    cam_a, cam_b = diag_values(diags, "/cam_a/image_raw"), diag_values(diags, "/cam_b/image_raw")
    shipped = sha256_file(REPO_ROOT / "models" / "shapes_default" / "model.safetensors")[:16]
    assert node_status["backend"] == "torch" and node_status["model_id"] == shipped
    assert node_status["untrained_model"] == "false"
    assert int(cam_a["frames_processed"]) >= 3 and int(cam_b["frames_processed"]) >= 3
    assert int(node_status["frames_processed"]) == int(cam_a["frames_processed"]) + int(
        cam_b["frames_processed"]
    )


def test_concept_changes_through_parameter_and_service(node_and_client, tmp_path):
    from sensor_msgs.msg import Image

    from sgclip_ros.msg import ConceptLists, SceneGraph
    from sgclip_ros.srv import SetConcepts

    proc, client = node_and_client
    graphs = client.subscribe(SceneGraph, "/scene_graph")
    active = client.subscribe(ConceptLists, "/active_concepts", latched=True)
    pub = {"cam": (client.publisher(Image, "/camera/image_raw"), "cam")}
    t = _publish_until_graphs(client, pub, graphs, 2)
    fruit = tmp_path / "fruit.yaml"
    fruit.write_text("categories: [apple, banana, cherry]\nunary: [ripe, green]\nbinary: [near]\n")
    value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(fruit))
    reply = client.call(
        SetParameters,
        "/sgclip_perception/set_parameters",
        SetParameters.Request(parameters=[Parameter(name="concepts_file", value=value)]),
    )
    assert reply.results[0].successful, reply.results[0].reason
    assert client.spin_until(lambda: active and active[-1].categories[0] == "apple", 10)
    fruit_id = active[-1].concepts_id
    t = _publish_until_graphs(client, pub, graphs, 2, t, pred=lambda g: g.concepts_id == fruit_id)
    fruit_graph = [g for g in graphs if g.concepts_id == fruit_id][-1]
    assert {o.label for o in fruit_graph.objects} <= {"apple", "banana", "cherry"}
    assert {a.attribute for a in fruit_graph.attributes} <= {"ripe", "green"}

    reply = client.call(
        SetConcepts,
        "/set_concepts",
        SetConcepts.Request(categories=["mug", "bowl"], unary=["empty"], binary=["inside"]),
    )
    assert reply.success, reply.message
    t = _publish_until_graphs(
        client, pub, graphs, 2, t, pred=lambda g: g.concepts_id == reply.concepts_id
    )
    kitchen = [g for g in graphs if g.concepts_id == reply.concepts_id][-1]
    assert {o.label for o in kitchen.objects} <= {"mug", "bowl"}
    bad = client.call(
        SetConcepts,
        "/set_concepts",
        SetConcepts.Request(categories=["mug", "mug"], unary=[], binary=[]),
    )
    assert not bad.success and "duplicate" in bad.message.lower()
