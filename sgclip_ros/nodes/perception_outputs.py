"""The perception node's optional standard outputs: vision_msgs detections and RViz markers.

Publishers are created when an output is switched on (at activate, or live with
`ros2 param set`). One camera publishes on `detections_2d`, `detections_3d` and
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


def output_type(param: str):
    """The message class an output publishes, or None when its package is not installed."""
    if param == "publish_markers":
        return MarkerArray
    try:  # vision_msgs is optional; an old or partial install may lack a type
        from vision_msgs import msg
    except ImportError:
        return None
    name = "Detection2DArray" if param == "publish_detections_2d" else "Detection3DArray"
    return getattr(msg, name, None)


class StandardOutputs:
    """Publishers of the standard outputs of every camera, and publishing per graph.

    A publisher exists only while its output is on (switched on at activate or live), so a node
    without them advertises no extra topics."""

    def __init__(self, node, cameras: list[str]):
        self.node, self.cameras = node, cameras
        self._pubs: dict[tuple[str, str], object] = {}
        for param in OUTPUTS:
            if node.p(param):
                self.enable(param)

    def enable(self, param: str) -> None:
        """Create the output's publishers (on the executor thread); warns when it cannot."""
        kind = output_type(param)
        if kind is None:
            self.node.warn_throttled(f"{param} is on but vision_msgs is not installed")
            return
        for camera in self.cameras:
            if (camera, param) not in self._pubs:
                self._pubs[(camera, param)] = self.node.create_publisher(
                    kind, self._topic(camera, param), 5
                )

    def _topic(self, camera: str, param: str) -> str:
        leaf = OUTPUTS[param]
        return leaf if len(self.cameras) == 1 else annotated_topic_for(camera, leaf)

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
            pub = self._pubs.get((camera, param))
            if pub is not None and self.node.p(param):
                pub.publish(make(graph))

    def destroy(self) -> None:
        for pub in self._pubs.values():
            self.node.destroy_publisher(pub)
        self._pubs = {}
