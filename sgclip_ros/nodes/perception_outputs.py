"""The perception node's optional standard outputs: vision_msgs detections and RViz markers.

Publishers are created at activate whether or not publishing is on (the switches are live), so
subscribers discover them early. One camera publishes on `detections_2d`, `detections_3d` and
`scene_graph_markers` in the node's namespace; several cameras publish beside each camera's
topic (/robot1/front/detections_3d), like the annotated images.
"""

from __future__ import annotations

from visualization_msgs.msg import MarkerArray

from sgclip_ros.ros.topics import annotated_topic_for

OUTPUTS = {  # parameter -> topic leaf
    "publish_detections_2d": "detections_2d",
    "publish_detections_3d": "detections_3d",
    "publish_markers": "scene_graph_markers",
}


def vision_msgs_available() -> bool:
    try:
        import vision_msgs.msg  # noqa: F401
    except ImportError:
        return False
    return True


class StandardOutputs:
    """Publishers of the standard outputs of every camera, and publishing per graph."""

    def __init__(self, node, cameras: list[str]):
        self.node = node
        self._pubs: dict[tuple[str, str], object] = {}
        types = {"publish_markers": MarkerArray}
        if vision_msgs_available():
            from vision_msgs.msg import Detection2DArray, Detection3DArray

            types.update(publish_detections_2d=Detection2DArray)
            types.update(publish_detections_3d=Detection3DArray)
        for camera in cameras:
            for param, kind in types.items():
                topic = OUTPUTS[param] if len(cameras) == 1 else annotated_topic_for(
                    camera, OUTPUTS[param]
                )
                self._pubs[(camera, param)] = node.create_publisher(kind, topic, 5)

    def publish(self, camera: str, graph) -> None:
        """Publish the enabled outputs of one graph (on the inference thread)."""
        from sgclip_ros.ros import standard_outputs as convert

        makers = {
            "publish_detections_2d": convert.detections_2d,
            "publish_detections_3d": convert.detections_3d,
            "publish_markers": lambda g: convert.scene_markers(
                g, self.node.p("annotated_relations")
            ),
        }
        for param, make in makers.items():
            if not self.node.p(param):
                continue
            pub = self._pubs.get((camera, param))
            if pub is None:
                self.node.warn_throttled(f"{param} is on but vision_msgs is not installed")
                continue
            pub.publish(make(graph))

    def destroy(self) -> None:
        for pub in self._pubs.values():
            self.node.destroy_publisher(pub)
        self._pubs = {}
