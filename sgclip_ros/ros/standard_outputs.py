"""Pure converters from a core SceneGraph to standard ROS messages (no node, no rclpy).

* vision_msgs/Detection2DArray: the objects seen in the newest frame of the window, their box
  there, their category candidates as hypotheses (the top category first, as ``class_id``);
* vision_msgs/Detection3DArray: those of them with a position: the box of their visible
  surface (centre and size), the centroid as the hypotheses' pose;
* visualization_msgs/MarkerArray: for RViz, each positioned object as a box with its label,
  and the best relations between positioned objects as lines with their predicate. The array
  starts with DELETEALL, so objects that left the graph leave the display too.

All poses are in the graph's frame (the camera's optical frame) at the newest frame's stamp.
vision_msgs is imported on use: it is optional unless one of its outputs is enabled.
"""

from __future__ import annotations

import colorsys
import hashlib

from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Pose, Vector3
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from sgclip_ros.core.scene_graph import ObjectNode, Observation, SceneGraph
from sgclip_ros.ros.conversions import point, time_from_ns

MIN_MARKER_SIZE_M = 0.01  # RViz does not draw a zero-thickness box


def _header(graph: SceneGraph) -> Header:
    return Header(stamp=time_from_ns(graph.stamp_ns), frame_id=graph.frame_id)


def newest_observations(graph: SceneGraph) -> list[tuple[ObjectNode, Observation]]:
    """(object, its observation) for every object seen in the newest frame of the window."""
    newest = len(graph.frame_stamps_ns) - 1
    out = []
    for obj in graph.objects:
        seen = [ob for ob in obj.observations if ob.frame_index == newest]
        if seen:
            out.append((obj, seen[-1]))
    return out


def _hypotheses(obj: ObjectNode, position=None) -> list:
    from vision_msgs.msg import ObjectHypothesisWithPose

    results = []
    for lp in obj.labels or []:
        result = ObjectHypothesisWithPose()
        result.hypothesis.class_id, result.hypothesis.score = lp.label, float(lp.score)
        if position is not None:
            result.pose.pose.position = point(position)
        results.append(result)
    return results


def detections_2d(graph: SceneGraph):
    """vision_msgs/Detection2DArray of the newest frame's objects."""
    from vision_msgs.msg import Detection2D, Detection2DArray

    msg = Detection2DArray(header=_header(graph))
    for obj, ob in newest_observations(graph):
        det = Detection2D(header=msg.header, id=obj.id, results=_hypotheses(obj))
        det.bbox.center.position.x = (ob.box.x1 + ob.box.x2) / 2
        det.bbox.center.position.y = (ob.box.y1 + ob.box.y2) / 2
        det.bbox.size_x, det.bbox.size_y = float(ob.box.width), float(ob.box.height)
        msg.detections.append(det)
    return msg


def detections_3d(graph: SceneGraph):
    """vision_msgs/Detection3DArray of the newest frame's objects that have a position."""
    from vision_msgs.msg import Detection3D, Detection3DArray

    msg = Detection3DArray(header=_header(graph))
    for obj, ob in newest_observations(graph):
        if not ob.has_position:
            continue
        det = Detection3D(header=msg.header, id=obj.id, results=_hypotheses(obj, ob.position))
        det.bbox.center, det.bbox.size = _box_pose(ob), _box_size(ob)
        msg.detections.append(det)
    return msg


def _box_pose(ob: Observation) -> Pose:
    centre = [(a + b) / 2 for a, b in zip(ob.extent_min, ob.extent_max)]
    pose = Pose(position=point(centre))
    pose.orientation.w = 1.0
    return pose


def _box_size(ob: Observation, floor: float = 0.0) -> Vector3:
    x, y, z = (max(floor, b - a) for a, b in zip(ob.extent_min, ob.extent_max))
    return Vector3(x=float(x), y=float(y), z=float(z))


def label_colour(label: str, alpha: float = 0.6) -> ColorRGBA:
    """A stable colour per label (the same in every message and every run)."""
    hue = int(hashlib.sha256(label.encode()).hexdigest()[:6], 16) / 0xFFFFFF
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return ColorRGBA(r=r, g=g, b=b, a=alpha)


def scene_markers(graph: SceneGraph, max_relations: int = 10) -> MarkerArray:
    """MarkerArray: DELETEALL, then a box and a label per positioned object of the newest
    frame, then a line and a predicate per relation among them (best ``max_relations``)."""
    header = _header(graph)
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    placed = {obj.id: ob for obj, ob in newest_observations(graph) if ob.has_position}
    for obj, ob in newest_observations(graph):
        if obj.id in placed:
            markers += _object_markers(header, obj, ob, len(markers))
    relations = [r for r in graph.relations if r.subject_id in placed and r.object_id in placed]
    relations.sort(key=lambda r: -r.score)
    for r in relations[:max_relations]:
        a, b = placed[r.subject_id].position, placed[r.object_id].position
        markers += _relation_markers(header, r.predicate, a, b, len(markers))
    return MarkerArray(markers=markers)


def _marker(header: Header, ns: str, marker_id: int, kind: int) -> Marker:
    marker = Marker(header=header, ns=ns, id=marker_id, type=kind, action=Marker.ADD)
    marker.pose.orientation.w = 1.0
    marker.lifetime = Duration(sec=0, nanosec=0)  # until the next array's DELETEALL
    return marker


def _object_markers(header: Header, obj: ObjectNode, ob: Observation, first: int) -> list:
    box = _marker(header, "objects", first, Marker.CUBE)
    box.pose, box.scale = _box_pose(ob), _box_size(ob, MIN_MARKER_SIZE_M)
    box.color = label_colour(obj.label)
    text = _marker(header, "labels", first + 1, Marker.TEXT_VIEW_FACING)
    text.pose.position = point(ob.position)
    text.pose.position.y = ob.extent_min[1] - 0.05  # above the box (optical y points down)
    text.scale.z, text.color = 0.06, ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
    text.text = f"{obj.id}: {obj.label}"
    return [box, text]


def _relation_markers(header: Header, predicate: str, a, b, first: int) -> list:
    line = _marker(header, "relations", first, Marker.LINE_LIST)
    line.points = [point(a), point(b)]
    line.scale.x, line.color = 0.01, ColorRGBA(r=1.0, g=0.9, b=0.2, a=0.9)
    text = _marker(header, "predicates", first + 1, Marker.TEXT_VIEW_FACING)
    text.pose.position = point([(p + q) / 2 for p, q in zip(a, b)])
    text.scale.z, text.color = 0.04, ColorRGBA(r=1.0, g=0.9, b=0.2, a=1.0)
    text.text = predicate
    return [line, text]

