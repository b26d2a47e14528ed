"""Pure converters between core scene-graph dataclasses and sgclip_ros messages.

No node, no rclpy: only the generated message classes, so they are tested directly.
"""

from __future__ import annotations

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Vector3
from sensor_msgs.msg import RegionOfInterest

from sgclip_ros import msg as m
from sgclip_ros.core.scene_graph import (
    AttributeFact,
    Box,
    LabelProb,
    ObjectNode,
    Observation,
    RelationFact,
    SceneGraph,
    Vec3,
)

_NS = 1_000_000_000


def time_from_ns(ns: int) -> Time:
    """builtin_interfaces/Time from integer nanoseconds (must be >= 0)."""
    if ns < 0:
        raise ValueError(f"stamp must be non-negative, got {ns} ns")
    return Time(sec=ns // _NS, nanosec=ns % _NS)


def ns_from_time(t: Time) -> int:
    return int(t.sec) * _NS + int(t.nanosec)


def roi_from_box(box: Box) -> RegionOfInterest:
    """Clamp a float box to non-negative integer pixels (end exclusive) as a RegionOfInterest."""
    x1, y1 = max(0, int(round(box.x1))), max(0, int(round(box.y1)))
    x2, y2 = max(x1, int(round(box.x2))), max(y1, int(round(box.y2)))
    return RegionOfInterest(x_offset=x1, y_offset=y1, width=x2 - x1, height=y2 - y1)


def box_from_roi(roi: RegionOfInterest) -> Box:
    return Box(
        float(roi.x_offset),
        float(roi.y_offset),
        float(roi.x_offset + roi.width),
        float(roi.y_offset + roi.height),
    )


def point(v: Vec3 | None) -> Point:
    """geometry_msgs/Point of a 3-vector (the origin for None)."""
    x, y, z = v if v is not None else (0.0, 0.0, 0.0)
    return Point(x=float(x), y=float(y), z=float(z))


def vec3(p) -> Vec3:
    """A (x, y, z) tuple of a Point or Vector3."""
    return (float(p.x), float(p.y), float(p.z))


def _observation_to_msg(ob: Observation) -> m.ObjectObservation:
    return m.ObjectObservation(
        frame_index=ob.frame_index,
        box=roi_from_box(ob.box),
        confidence=float(ob.confidence),
        has_position=ob.has_position,
        position=point(ob.position),
        extent_min=point(ob.extent_min),
        extent_max=point(ob.extent_max),
        depth_confidence=float(ob.depth_confidence),
    )


def _observation_from_msg(ob: m.ObjectObservation) -> Observation:
    geometry = {}
    if ob.has_position:
        geometry = {
            "position": vec3(ob.position),
            "extent_min": vec3(ob.extent_min),
            "extent_max": vec3(ob.extent_max),
            "depth_confidence": float(ob.depth_confidence),
        }
    return Observation(int(ob.frame_index), box_from_roi(ob.box), float(ob.confidence), **geometry)


def _object_to_msg(obj: ObjectNode) -> m.SceneObject:
    velocity = obj.velocity or (0.0, 0.0, 0.0)
    return m.SceneObject(
        id=obj.id,
        label=obj.label,
        score=float(obj.score),
        labels=[m.LabelScore(label=lp.label, score=float(lp.score)) for lp in obj.labels],
        detector_label=obj.detector_label,
        observations=[_observation_to_msg(ob) for ob in obj.observations],
        has_position=obj.has_position,
        position=point(obj.position),
        has_velocity=obj.velocity is not None,
        velocity=Vector3(x=float(velocity[0]), y=float(velocity[1]), z=float(velocity[2])),
    )


def _object_from_msg(msg: m.SceneObject) -> ObjectNode:
    return ObjectNode(
        id=msg.id,
        label=msg.label,
        score=float(msg.score),
        labels=[LabelProb(lp.label, float(lp.score)) for lp in msg.labels],
        detector_label=msg.detector_label,
        observations=[_observation_from_msg(ob) for ob in msg.observations],
        position=vec3(msg.position) if msg.has_position else None,
        velocity=vec3(msg.velocity) if msg.has_velocity else None,
    )


def scene_graph_to_msg(graph: SceneGraph) -> m.SceneGraph:
    """Core SceneGraph -> sgclip_ros/msg/SceneGraph."""
    msg = m.SceneGraph()
    msg.header.stamp = time_from_ns(graph.stamp_ns)
    msg.header.frame_id = graph.frame_id
    msg.frame_stamps = [time_from_ns(ns) for ns in graph.frame_stamps_ns]
    msg.camera = graph.camera
    msg.concepts_id = graph.concepts_id
    msg.objects = [_object_to_msg(o) for o in graph.objects]
    msg.attributes = [
        m.AttributeScore(
            object_id=a.object_id,
            attribute=a.attribute,
            score=float(a.score),
            first_frame=a.first_frame,
            last_frame=a.last_frame,
            frame_indices=[int(i) for i in a.frame_indices],
            frame_scores=[float(s) for s in a.frame_scores],
        )
        for a in graph.attributes
    ]
    msg.relations = [
        m.Relation(
            subject_id=r.subject_id,
            predicate=r.predicate,
            object_id=r.object_id,
            score=float(r.score),
            first_frame=r.first_frame,
            last_frame=r.last_frame,
            frame_indices=[int(i) for i in r.frame_indices],
            frame_scores=[float(s) for s in r.frame_scores],
        )
        for r in graph.relations
    ]
    msg.inference_ms = float(graph.inference_ms)
    msg.backend = graph.backend
    return msg


def scene_graph_from_msg(msg: m.SceneGraph) -> SceneGraph:
    """sgclip_ros/msg/SceneGraph -> core SceneGraph (boxes come back as integer pixels)."""
    return SceneGraph(
        stamp_ns=ns_from_time(msg.header.stamp),
        frame_id=msg.header.frame_id,
        camera=msg.camera,
        concepts_id=msg.concepts_id,
        frame_stamps_ns=[ns_from_time(t) for t in msg.frame_stamps],
        objects=[_object_from_msg(o) for o in msg.objects],
        attributes=[
            AttributeFact(
                a.object_id,
                a.attribute,
                float(a.score),
                int(a.first_frame),
                int(a.last_frame),
                [int(i) for i in a.frame_indices],
                [float(s) for s in a.frame_scores],
            )
            for a in msg.attributes
        ],
        relations=[
            RelationFact(
                r.subject_id,
                r.predicate,
                r.object_id,
                float(r.score),
                int(r.first_frame),
                int(r.last_frame),
                [int(i) for i in r.frame_indices],
                [float(s) for s in r.frame_scores],
            )
            for r in msg.relations
        ],
        inference_ms=float(msg.inference_ms),
        backend=msg.backend,
    )
