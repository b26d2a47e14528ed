"""ROS-side helpers of the planner node: graph and image caches, message converters.

No node and no rclpy: caches are plain thread-safe containers, converters build messages.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point

from sgclip_ros.action import Plan
from sgclip_ros.core.scene_graph import SceneGraph, Vec3
from sgclip_ros.msg import PlannedAction
from sgclip_ros.planner.core import PlannedAction as CorePlannedAction
from sgclip_ros.planner.core import PlanOutcome
from sgclip_ros.planner.health import PlannerStatus, planner_level, planner_values
from sgclip_ros.ros.conversions import time_from_ns


class GraphCache:
    """The most recent scene graphs; planners wait here for one they can use."""

    def __init__(self, size: int = 16):
        self._graphs: deque[SceneGraph] = deque(maxlen=size)
        self._cond = threading.Condition()
        self.received = 0

    def add(self, graph: SceneGraph) -> None:
        with self._cond:
            self._graphs.append(graph)
            self.received += 1
            self._cond.notify_all()

    def newest(self) -> SceneGraph | None:
        with self._cond:
            return self._graphs[-1] if self._graphs else None

    def wait(self, accept: Callable[[SceneGraph], bool], timeout_s: float) -> SceneGraph | None:
        """The newest graph ``accept`` takes, waiting up to ``timeout_s`` for one to arrive."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for graph in reversed(self._graphs):
                    if accept(graph):
                        return graph
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                # Woken by new graphs; the timeout also re-checks ages, which change with time.
                self._cond.wait(min(remaining, 0.5))


class ImageCache:
    """Recent annotated images by (stamp, frame_id), so a graph's own frame can be attached."""

    def __init__(self, size: int = 8):
        self._images: OrderedDict[tuple[int, str], object] = OrderedDict()
        self._size = size
        self._cond = threading.Condition()

    def add(self, stamp_ns: int, frame_id: str, msg) -> None:
        with self._cond:
            self._images[(stamp_ns, frame_id)] = msg
            while len(self._images) > self._size:
                self._images.popitem(last=False)
            self._cond.notify_all()

    def wait(self, stamp_ns: int, frame_id: str, timeout_s: float):
        """The image of that stamp, waiting briefly: it is published just after its graph."""
        with self._cond:
            self._cond.wait_for(lambda: (stamp_ns, frame_id) in self._images, timeout_s)
            return self._images.get((stamp_ns, frame_id))


def planned_action_msg(
    planned: CorePlannedAction, sequence: int, now_ns: int, model: str
) -> PlannedAction:
    action = planned.action
    msg = PlannedAction(
        sequence=sequence,
        action=action.name,
        arguments_json=action.arguments_json,
        reason=action.reason,
        object_ids=list(action.object_ids),
        instruction=planned.instruction,
        scene_graph_stamp=time_from_ns(planned.graph_stamp_ns),
        camera=planned.camera,
        concepts_id=planned.concepts_id,
        model=model,
    )
    msg.header.stamp = time_from_ns(now_ns)
    msg.header.frame_id = planned.frame_id
    _fill_positions(msg, planned)
    return msg


def _fill_positions(msg: PlannedAction, planned: CorePlannedAction) -> None:
    """The 3D targets: one entry per object id (zeros where unknown), then position arguments."""
    known = dict(zip(planned.action.object_ids, planned.object_positions))
    targets = [known.get(i) for i in planned.action.object_ids]
    msg.has_position = [p is not None for p in targets]
    msg.positions = [_point(p) for p in targets]
    msg.position_args = [name for name, _ in planned.action.positions]
    msg.position_values = [_point(p) for _, p in planned.action.positions]
    # The graph's frame, like header.frame_id; a field of its own so the positions say it.
    msg.positions_frame_id = planned.frame_id


def _point(v: Vec3 | None) -> Point:
    x, y, z = v if v is not None else (0.0, 0.0, 0.0)
    return Point(x=float(x), y=float(y), z=float(z))


def plan_result(outcome: PlanOutcome) -> Plan.Result:
    result = Plan.Result(success=outcome.success, status=outcome.status, message=outcome.message)
    if outcome.planned is not None:
        action = outcome.planned.action
        result.action, result.arguments_json, result.reason = (
            action.name,
            action.arguments_json,
            action.reason,
        )
    result.scene_graph_stamp = time_from_ns(max(0, outcome.graph_stamp_ns))
    return result


_LEVELS = {0: DiagnosticStatus.OK, 1: DiagnosticStatus.WARN, 2: DiagnosticStatus.ERROR}


def diagnostics_msg(status: PlannerStatus, stamp_ns: int) -> DiagnosticArray:
    level, message = planner_level(status)
    array = DiagnosticArray()
    array.header.stamp = time_from_ns(stamp_ns)
    array.status = [
        DiagnosticStatus(
            level=_LEVELS[int(level)],
            name=f"{status.node_name}: planner",
            message=message,
            hardware_id=status.endpoint or "none",
            values=[KeyValue(key=k, value=v) for k, v in planner_values(status).items()],
        )
    ]
    return array
