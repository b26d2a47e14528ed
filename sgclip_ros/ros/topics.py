"""Topic names as ROS resolves them: namespace and remappings applied.

No rclpy import at module level; only the fallback of `resolve_topic` needs it."""

from __future__ import annotations


def resolve_topic(node, name: str) -> str:
    """The fully qualified topic ``name`` resolves to for ``node``: namespace, then remappings.

    ``Node.resolve_topic_name`` applies the remappings (rclpy since Galactic, so Humble has it);
    without it the name is only expanded with the node's namespace."""
    resolve = getattr(node, "resolve_topic_name", None)
    if resolve is not None:
        return resolve(name)
    from rclpy.expand_topic_name import expand_topic_name

    return expand_topic_name(name, node.get_name(), node.get_namespace())


def is_compressed_topic(resolved: str) -> bool:
    """A `.../compressed` topic carries sensor_msgs/CompressedImage (image_transport's naming)."""
    return resolved.rstrip("/").endswith("/compressed")


def annotated_topic_for(resolved_camera: str, leaf: str = "annotated_image") -> str:
    """An output topic beside a camera: /robot1/front/image_raw -> /robot1/front/annotated_image
    (a compressed camera's transport suffix is dropped first)."""
    name = resolved_camera.rstrip("/")
    if is_compressed_topic(name):
        name = name.rsplit("/", 1)[0]
    parent = name.rsplit("/", 1)[0]
    # A top-level camera (/cam) gets a suffix instead: /cam_annotated, /cam_detections_3d.
    return f"{parent}/{leaf}" if parent else f"{name}_{leaf.removesuffix('_image')}"
