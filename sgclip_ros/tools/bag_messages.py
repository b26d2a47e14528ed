"""SceneGraph messages for bags without ROS: the package's message types in a rosbags typestore
and the rosbags twin of `sgclip_ros.ros.conversions.scene_graph_to_msg` (used by the bag runner).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from sgclip_ros.core.scene_graph import SceneGraph

SCENE_GRAPH = "sgclip_ros/msg/SceneGraph"
PACKAGE = "sgclip_ros"
_NS = 1_000_000_000
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def package_path(relative: str) -> Path:
    """A file of this package: the source tree first, then share/sgclip_ros of each prefix."""
    candidates = [_SOURCE_ROOT / relative]
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / PACKAGE / relative)
    for path in candidates:
        if path.exists():
            return path
    raise FileNotFoundError(f"{relative} not found in {', '.join(map(str, candidates))}")


def make_typestore(msg_dir: Path | None = None):
    """The ROS 2 Humble typestore plus this package's messages, parsed from msg/*.msg.

    Header, Time and RegionOfInterest, all SceneGraph uses, are the same in Humble to Kilted.
    """
    store = get_typestore(Stores.ROS2_HUMBLE)
    msg_dir = msg_dir or package_path("msg")
    types = {}
    for path in sorted(msg_dir.glob("*.msg")):
        text = path.read_text(encoding="utf-8")
        types.update(get_types_from_msg(text, f"{PACKAGE}/msg/{path.stem}"))
    if SCENE_GRAPH not in types:
        raise FileNotFoundError(f"{msg_dir} holds no SceneGraph.msg")
    store.register(types)
    return store


# ---- core SceneGraph -> rosbags message ----------------------------------------------------
def _time(store, ns: int):
    if ns < 0:
        raise ValueError(f"stamp must be non-negative, got {ns} ns")
    return store.types["builtin_interfaces/msg/Time"](sec=ns // _NS, nanosec=ns % _NS)


def _roi(store, box):
    # Same rounding as sgclip_ros.ros.conversions.roi_from_box (tested byte-identical).
    x1, y1 = max(0, int(round(box.x1))), max(0, int(round(box.y1)))
    x2, y2 = max(x1, int(round(box.x2))), max(y1, int(round(box.y2)))
    roi = store.types["sensor_msgs/msg/RegionOfInterest"]
    return roi(x_offset=x1, y_offset=y1, height=y2 - y1, width=x2 - x1, do_rectify=False)


def _vec(store, kind: str, v):
    x, y, z = v if v is not None else (0.0, 0.0, 0.0)
    return store.types[f"geometry_msgs/msg/{kind}"](x=float(x), y=float(y), z=float(z))


def _observation(store, ob):
    return store.types[f"{PACKAGE}/msg/ObjectObservation"](
        frame_index=int(ob.frame_index),
        box=_roi(store, ob.box),
        confidence=float(ob.confidence),
        has_position=ob.has_position,
        position=_vec(store, "Point", ob.position),
        extent_min=_vec(store, "Point", ob.extent_min),
        extent_max=_vec(store, "Point", ob.extent_max),
        depth_confidence=float(ob.depth_confidence),
    )


def _object(store, obj):
    t = store.types
    return t[f"{PACKAGE}/msg/SceneObject"](
        id=obj.id,
        label=obj.label,
        score=float(obj.score),
        labels=[
            t[f"{PACKAGE}/msg/LabelScore"](label=lp.label, score=float(lp.score))
            for lp in obj.labels
        ],
        detector_label=obj.detector_label,
        observations=[_observation(store, ob) for ob in obj.observations],
        has_position=obj.has_position,
        position=_vec(store, "Point", obj.position),
        has_velocity=obj.velocity is not None,
        velocity=_vec(store, "Vector3", obj.velocity),
    )


def _evidence(fact) -> dict:
    return {
        "score": float(fact.score),
        "first_frame": int(fact.first_frame),
        "last_frame": int(fact.last_frame),
        "frame_indices": np.asarray(fact.frame_indices, dtype=np.uint32),
        "frame_scores": np.asarray(fact.frame_scores, dtype=np.float32),
    }


def graph_to_rosbags(store, graph: SceneGraph):
    """The rosbags twin of sgclip_ros.ros.conversions.scene_graph_to_msg."""
    t = store.types
    header = t["std_msgs/msg/Header"](stamp=_time(store, graph.stamp_ns), frame_id=graph.frame_id)
    return t[SCENE_GRAPH](
        header=header,
        frame_stamps=[_time(store, ns) for ns in graph.frame_stamps_ns],
        camera=graph.camera,
        concepts_id=graph.concepts_id,
        objects=[_object(store, o) for o in graph.objects],
        attributes=[
            t[f"{PACKAGE}/msg/AttributeScore"](
                object_id=a.object_id, attribute=a.attribute, **_evidence(a)
            )
            for a in graph.attributes
        ],
        relations=[
            t[f"{PACKAGE}/msg/Relation"](
                subject_id=r.subject_id,
                predicate=r.predicate,
                object_id=r.object_id,
                **_evidence(r),
            )
            for r in graph.relations
        ],
        inference_ms=float(graph.inference_ms),
        backend=graph.backend,
    )
