"""Compact, human- and LLM-readable text form of a SceneGraph.

One line per object (id, best label, box in the newest frame it was seen, 3D position and motion
when depth gave them, attributes) and one line per relation; metric relations from depth
("near", "3d left of", ...) are relations like the others. Labels are quoted so that text coming
from the camera stays data.
"""

from __future__ import annotations

import math

from sgclip_ros.core.scene_graph import ObjectNode, SceneGraph, Vec3

# Slower than this (m/s) is depth noise rather than motion: not worth the model's attention.
MIN_SPEED_M_S = 0.05


def _quote(text: str) -> str:
    # json-style quoting keeps newlines and quotes inside labels from breaking the layout.
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "")
    return f'"{escaped}"'


def _latest_box(obj: ObjectNode) -> str:
    if not obj.observations:
        return "[]"
    b = max(obj.observations, key=lambda ob: ob.frame_index).box
    return f"[{b.x1:.0f}, {b.y1:.0f}, {b.x2:.0f}, {b.y2:.0f}]"


def _finite(v: Vec3 | None) -> bool:
    return v is not None and len(v) == 3 and all(math.isfinite(c) for c in v)


def _vec(v: Vec3) -> str:
    return f"({v[0]:.2f}, {v[1]:.2f}, {v[2]:.2f})"


def _motion(obj: ObjectNode) -> str:
    """`` at (x, y, z) m`` and `` moving (vx, vy, vz) m/s`` where known; "" without depth."""
    if not _finite(obj.position):
        return ""
    text = f" at {_vec(obj.position)} m"
    if _finite(obj.velocity) and math.hypot(*obj.velocity) >= MIN_SPEED_M_S:
        text += f" moving {_vec(obj.velocity)} m/s"
    return text


def _frame_line(graph: SceneGraph, objects: list[ObjectNode]) -> list[str]:
    # Said once, and only when some position is shown: graphs without depth read as before.
    if not any(_finite(o.position) for o in objects):
        return []
    return [
        '3D: "at (x, y, z) m" is an object\'s newest position, "moving (x, y, z) m/s" its'
        f" velocity, in frame {_quote(graph.frame_id)} (the camera's optical frame: x right,"
        " y down, z forward)"
    ]


def _frames(first: int, last: int) -> str:
    return f"frame {first}" if first == last else f"frames {first}-{last}"


def format_scene_graph(
    graph: SceneGraph, max_objects: int = 32, max_relations: int = 48, alternatives: int = 1
) -> str:
    """Render ``graph`` as compact text, best-scoring facts first, truncated with a note."""
    n_frames = len(graph.frame_stamps_ns)
    lines = [
        f"scene graph: camera {_quote(graph.camera)}, {n_frames} frames"
        f" (frame 0 oldest, {max(n_frames - 1, 0)} newest), concepts {graph.concepts_id}"
    ]
    attrs_by_object: dict[str, list[str]] = {}
    for a in sorted(graph.attributes, key=lambda a: -a.score):
        attrs_by_object.setdefault(a.object_id, []).append(f"{_quote(a.attribute)} {a.score:.2f}")
    shown = graph.objects[:max_objects]
    lines += _frame_line(graph, shown)
    lines.append("objects (id: label score, box x1,y1,x2,y2 px in the newest frame seen):")
    for obj in shown:
        alts = ", ".join(
            f"{_quote(lp.label)} {lp.score:.2f}" for lp in obj.labels[1 : 1 + alternatives]
        )
        text = f"- {obj.id}: {_quote(obj.label)} {obj.score:.2f} {_latest_box(obj)}"
        text += _motion(obj)
        if alts:
            text += f" (or {alts})"
        if obj.id in attrs_by_object:
            text += "; " + ", ".join(attrs_by_object[obj.id])
        lines.append(text)
    if len(graph.objects) > max_objects:
        lines.append(f"- ... {len(graph.objects) - max_objects} more objects omitted")
    relations = sorted(graph.relations, key=lambda r: -r.score)
    lines.append("relations (subject predicate object: score, frames where it holds):")
    for r in relations[:max_relations]:
        lines.append(
            f"- {r.subject_id} {_quote(r.predicate)} {r.object_id}: {r.score:.2f}"
            f" ({_frames(r.first_frame, r.last_frame)})"
        )
    if len(relations) > max_relations:
        lines.append(f"- ... {len(relations) - max_relations} more relations omitted")
    if not relations:
        lines.append("- none")
    return "\n".join(lines)
