"""Topic-name rules of the perception node (pure functions, no node)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sgclip_ros.ros.topics import annotated_topic_for, is_compressed_topic, resolve_topic


@pytest.mark.parametrize(
    ("camera", "annotated"),
    [
        ("/robot1/front/image_raw", "/robot1/front/annotated_image"),
        ("/robot1/rear/image_raw/compressed", "/robot1/rear/annotated_image"),
        ("/cam", "/cam_annotated"),
    ],
)
def test_annotated_topic_sits_beside_the_resolved_camera(camera, annotated):
    assert annotated_topic_for(camera) == annotated


def test_compressed_is_decided_by_the_resolved_name():
    assert is_compressed_topic("/front/image_raw/compressed")
    assert is_compressed_topic("/front/image_raw/compressed/")
    assert not is_compressed_topic("/front/compressed_image")


def test_resolve_uses_the_node_and_falls_back_to_namespace_expansion():
    remapping = SimpleNamespace(resolve_topic_name=lambda name: "/remapped/" + name)
    assert resolve_topic(remapping, "camera/image_raw") == "/remapped/camera/image_raw"
    old_rclpy = SimpleNamespace(get_name=lambda: "node", get_namespace=lambda: "/robot1")
    assert resolve_topic(old_rclpy, "camera/image_raw") == "/robot1/camera/image_raw"
    assert resolve_topic(old_rclpy, "/abs/image") == "/abs/image"
