"""3D points in model replies: the `position` argument type, checked against the scene graph.

A position is ``[x, y, z]`` in metres in the scene graph's camera frame (optical: x right, y down,
z forward). It is accepted only if it is three finite numbers, at most ``max_distance_m`` from
the camera, and at most ``max_offset_m`` from the position of some object of the graph: a point
the model made up far from anything it was shown is useless to the robot.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from sgclip_ros.core.scene_graph import SceneGraph, Vec3

DEFAULT_MAX_DISTANCE_M = 20.0
DEFAULT_MAX_OFFSET_M = 1.0
LIMIT_M = 1000.0  # largest bound an action set may declare (a depth camera sees far less)


class PositionRejected(ValueError):
    """A position value that is not a usable point (the message names the argument)."""


def finite_vec3(value: Any) -> Vec3 | None:
    """``value`` as a float triple if it is three finite reals (numpy's too), else None."""
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        return None
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            return None
        try:
            f = float(v)
        except OverflowError:  # an integer beyond the float range
            return None
        if not math.isfinite(f):
            return None
        out.append(f)
    return (out[0], out[1], out[2])


def graph_positions(graph: SceneGraph) -> dict[str, Vec3]:
    """Object id -> newest position, for the objects whose position is known and finite."""
    out = {}
    for obj in graph.objects:
        pos = finite_vec3(obj.position)
        if pos is not None:
            out[obj.id] = pos
    return out


def check_position(
    where: str,
    value: Any,
    positions: Mapping[str, Vec3],
    max_distance_m: float = DEFAULT_MAX_DISTANCE_M,
    max_offset_m: float = DEFAULT_MAX_OFFSET_M,
) -> Vec3:
    """The point ``value`` as floats, or raise :class:`PositionRejected` saying why."""
    point = _shape(where, value)
    distance = math.hypot(*point)
    if distance > max_distance_m:
        raise PositionRejected(
            f"{where} is {distance:.2f} m from the camera (at most {max_distance_m:g} m)"
        )
    if not positions:
        raise PositionRejected(f"{where}: no object of the scene graph has a 3D position")
    nearest, offset = _nearest(point, positions.items())
    if offset > max_offset_m:
        raise PositionRejected(
            f"{where} is {offset:.2f} m from the nearest object with a position ({nearest}); "
            f"at most {max_offset_m:g} m"
        )
    return point


def _shape(where: str, value: Any) -> Vec3:
    # Checked piece by piece so that the reason says what exactly is wrong.
    if not isinstance(value, list) or len(value) != 3:
        raise PositionRejected(f"{where} must be a list [x, y, z] of 3 numbers (metres)")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise PositionRejected(f"{where} must hold 3 numbers, not {type(v).__name__}")
    point = finite_vec3(value)
    if point is None:
        raise PositionRejected(f"{where} must hold finite numbers")
    return point


def _nearest(point: Vec3, positions: Iterable[tuple[str, Vec3]]) -> tuple[str, float]:
    return min(((i, math.dist(point, p)) for i, p in positions), key=lambda t: (t[1], t[0]))
