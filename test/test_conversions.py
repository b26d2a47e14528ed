"""Pure converter tests: core SceneGraph <-> sgclip_ros messages, no node running."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("needs_install")


def _walk_defaults(msg, path="msg"):
    """Yield the paths of fields that still hold their default value (recursively)."""
    default = type(msg)()
    for name in msg.get_fields_and_field_types():
        value, dflt = getattr(msg, name), getattr(default, name)
        if hasattr(value, "get_fields_and_field_types"):
            yield from _walk_defaults(value, f"{path}.{name}")
        elif isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
            items = list(value)
            if not items:
                yield f"{path}.{name}"
            for i, item in enumerate(items):
                if hasattr(item, "get_fields_and_field_types"):
                    yield from _walk_defaults(item, f"{path}.{name}[{i}]")
        elif value == dflt:
            yield f"{path}.{name}"


def test_sample_graph_fills_every_message_field():
    from sgclip_ros.ros.conversions import scene_graph_to_msg
    from sgclip_ros.tools.sample_graph import sample_scene_graph

    msg = scene_graph_to_msg(sample_scene_graph(positions=True))
    # frame index / first_frame 0 and do_rectify False are legitimate; everything else must be set.
    unset = [
        p
        for p in _walk_defaults(msg)
        if not p.endswith(("frame_index", "first_frame", "do_rectify"))
    ]
    assert unset == []


def test_round_trip_preserves_every_field():
    from sgclip_ros.ros.conversions import scene_graph_from_msg, scene_graph_to_msg
    from sgclip_ros.tools.sample_graph import sample_scene_graph

    graph = sample_scene_graph(n_frames=6, seq=3, positions=True)
    back = scene_graph_from_msg(scene_graph_to_msg(graph))
    assert back.to_dict() == graph.to_dict()


def test_stamps_split_into_sec_and_nanosec():
    from sgclip_ros.ros.conversions import ns_from_time, time_from_ns

    t = time_from_ns(12_345_678_901)
    assert (t.sec, t.nanosec) == (12, 345_678_901)
    assert ns_from_time(t) == 12_345_678_901
    with pytest.raises(ValueError, match="non-negative"):
        time_from_ns(-1)


def test_boxes_become_clamped_integer_rois():
    from sgclip_ros.core.scene_graph import Box
    from sgclip_ros.ros.conversions import box_from_roi, roi_from_box

    roi = roi_from_box(Box(-3.4, 10.6, 20.2, 5.0))
    assert (roi.x_offset, roi.y_offset, roi.width, roi.height) == (0, 11, 20, 0)
    assert box_from_roi(roi_from_box(Box(1, 2, 30, 40))) == Box(1.0, 2.0, 30.0, 40.0)


def test_a_graph_without_depth_converts_as_before():
    """Subscribers that ignore the 3D fields see the same message; has_position is false."""
    from sgclip_ros.ros.conversions import scene_graph_from_msg, scene_graph_to_msg
    from sgclip_ros.tools.sample_graph import sample_scene_graph

    graph = sample_scene_graph()
    msg = scene_graph_to_msg(graph)
    assert not any(o.has_position or o.has_velocity for o in msg.objects)
    assert not any(ob.has_position for o in msg.objects for ob in o.observations)
    back = scene_graph_from_msg(msg)
    assert back.to_dict() == graph.to_dict()
    assert all(o.position is None and o.velocity is None for o in back.objects)


def test_old_json_without_3d_fields_still_loads():
    """Graph JSON written before positions existed (bag runner / echo output) still parses."""
    from sgclip_ros.core.scene_graph import SceneGraph
    from sgclip_ros.tools.sample_graph import sample_scene_graph

    data = sample_scene_graph().to_dict()
    for obj in data["objects"]:
        del obj["position"], obj["velocity"]
        for ob in obj["observations"]:
            for key in ("position", "extent_min", "extent_max", "depth_confidence"):
                del ob[key]
    graph = SceneGraph.from_dict(data)
    assert graph.to_dict() == sample_scene_graph().to_dict()
