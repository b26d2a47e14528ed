"""SGClip planner lifecycle node: instructions + scene graphs -> multimodal LLM -> checked actions.

configure: read parameters, load the action allow-list, build the LLM client (or dry run).
activate: subscribe, advertise, start the `plan` action server. deactivate: undo that.
All logic lives in sgclip_ros.planner (ROS-free); this file only wires ROS to it.
"""

from __future__ import annotations

import json
import sys
import threading

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from sgclip_ros.action import Plan
from sgclip_ros.msg import PlannedAction, SceneGraph
from sgclip_ros.nodes.lifecycle_main import run_lifecycle_node
from sgclip_ros.planner.actions import ActionSetError
from sgclip_ros.planner.core import BUSY, CANCELED, Planner, PlanOutcome, PortError
from sgclip_ros.planner.health import PlannerStatus
from sgclip_ros.planner.history import History
from sgclip_ros.planner.llm_client import (
    ChatClient,
    LLMError,
    api_key_from_env,
    safe_url,
    valid_env_name,
)
from sgclip_ros.planner.prompt import redact_images
from sgclip_ros.ros.conversions import ns_from_time, scene_graph_from_msg
from sgclip_ros.ros.planner_io import (
    GraphCache,
    ImageCache,
    diagnostics_msg,
    plan_result,
    planned_action_msg,
)
from sgclip_ros.ros.planner_params import (
    SPECS,
    api_key_env_problem,
    breaker_from,
    llm_config_from,
    load_actions,
    planner_defaults,
    settings_from,
)
from sgclip_ros.ros.topics import resolve_topic
from sgclip_ros.srv import SetConcepts

_MAX_IMAGE_PIXELS = 33_177_600  # 8K: larger annotated frames are not attached
_IMAGE_WAIT_S = 1.0  # the annotated image follows its scene graph by a few milliseconds


class PlannerNode(LifecycleNode):
    """Thin wiring of topics, the `plan` action and the set_concepts client around a Planner."""

    def __init__(self, node_name: str = "sgclip_planner", **kwargs):
        super().__init__(node_name, **kwargs)
        defaults = planner_defaults()
        for name, spec in SPECS.items():
            self.declare_parameter(name, defaults[name], spec.descriptor(defaults[name]))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.planner: Planner | None = None
        self.llm: ChatClient | None = None
        self.error = ""
        self.graphs, self.images = GraphCache(), ImageCache()
        self._busy = threading.Lock()
        self._sequence, self._sequence_lock = 0, threading.Lock()
        self._group = ReentrantCallbackGroup()  # plans block for seconds: let others run
        self._entities: list = []
        self._pubs: dict = {}
        self._action_server = self._concepts_client = None
        # Diagnostics exist in every state (a failed configure shows as ERROR), on the steady
        # clock so that a paused simulation does not silence them.
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(
            self.p("diagnostics_period_s"),
            self._publish_diagnostics,
            clock=Clock(clock_type=ClockType.STEADY_TIME),
        )

    def p(self, name: str):
        return self.get_parameter(name).value

    def _values(self) -> dict:
        return self._resolved({name: self.p(name) for name in SPECS})

    def _resolved(self, values: dict) -> dict:
        """`camera` as the perception node names it in SceneGraph.camera: resolved in this
        node's namespace ("camera/image_raw" under /robot1 -> "/robot1/camera/image_raw")."""
        if values["camera"]:
            try:
                values["camera"] = resolve_topic(self, values["camera"])
            except Exception as exc:  # rclpy's name exceptions share no base class but this
                raise ValueError(f"camera {values['camera']!r} is not a valid topic name") from exc
        return values

    # ---- lifecycle ------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            values = self._values()
            # First, and never echoed: a key pasted here by mistake must not reach the log.
            problem = api_key_env_problem(values["api_key_env"])
            if problem:
                raise ValueError(problem)
            actions = load_actions(values)
            config = llm_config_from(values)
            key = api_key_from_env(values["api_key_env"])
            self.llm = ChatClient(config, key, breaker_from(values)) if config else None
        except (ActionSetError, LLMError, ValueError, OSError) as exc:
            self.error = f"configure failed: {exc}"
            self.get_logger().error(self.error)
            return TransitionCallbackReturn.FAILURE
        history = History(values["history_length"])
        self.planner = Planner(settings_from(values), actions, self.llm, _RosPorts(self), history)
        self.error = ""
        if self.llm is None:
            self.get_logger().warning(
                "DRY RUN: no LLM endpoint (base_url is empty): composed prompts are published "
                "on ~/prompt and no action is ever published"
            )
        else:
            name = values["api_key_env"]
            key_state = f"from ${name} ({'set' if key else 'not set: no Authorization header'})"
            self.get_logger().info(
                f"configured: endpoint {safe_url(config.base_url)}, model {config.model}, "
                f"API key {key_state if name else 'none (api_key_env is empty)'}"
            )
        self.get_logger().info(f"allowed actions: {', '.join(actions.names)}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._pubs = {
            "action": self.create_publisher(PlannedAction, "planned_action", reliable),
            "status": self.create_publisher(String, "planner_status", reliable),
            "prompt": self.create_publisher(String, "~/prompt", reliable),
        }
        sub = self.create_subscription
        self._entities = [
            sub(SceneGraph, "scene_graph", self._on_graph, reliable, callback_group=self._group),
            sub(String, "task", self._on_task, reliable, callback_group=self._group),
        ]
        if self.p("image_topic"):
            self._entities.append(
                sub(Image, self.p("image_topic"), self._on_image, 2, callback_group=self._group)
            )
        self._concepts_client = self.create_client(
            SetConcepts, "set_concepts", callback_group=self._group
        )
        self._action_server = ActionServer(
            self,
            Plan,
            "plan",
            execute_callback=self._execute,
            goal_callback=lambda goal: GoalResponse.ACCEPT,
            cancel_callback=lambda goal: CancelResponse.ACCEPT,
            callback_group=self._group,
        )
        self.get_logger().info("active: action 'plan', topic 'task' -> 'planned_action'")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._action_server is not None:
            self._action_server.destroy()
        if self._concepts_client is not None:
            self.destroy_client(self._concepts_client)
        for entity in self._entities:
            self.destroy_subscription(entity)
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._entities, self._pubs = [], {}
        self._action_server = self._concepts_client = None
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.planner, self.llm = None, None
        return TransitionCallbackReturn.SUCCESS

    # ---- inputs ---------------------------------------------------------------------------
    def _on_graph(self, msg) -> None:
        self.graphs.add(scene_graph_from_msg(msg))

    def _on_image(self, msg) -> None:
        self.images.add(ns_from_time(msg.header.stamp), msg.header.frame_id, msg)

    def _on_task(self, msg) -> None:
        # The callback must not block the executor: plan on a thread (one plan at a time).
        threading.Thread(target=self._run, args=(msg.data,), daemon=True).start()

    def _execute(self, goal_handle):
        def feedback(stage: str, status: str, message: str) -> None:
            goal_handle.publish_feedback(Plan.Feedback(stage=stage, status=status, message=message))

        outcome = self._run(
            goal_handle.request.instruction, feedback, lambda: goal_handle.is_cancel_requested
        )
        if outcome.status == CANCELED:
            goal_handle.canceled()
        elif outcome.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return plan_result(outcome)

    def _run(self, instruction: str, feedback=None, cancelled=None) -> PlanOutcome:
        if self.planner is None or not self._busy.acquire(blocking=False):
            why = "another plan is running" if self.planner else "the planner is not active"
            outcome = PlanOutcome(BUSY, "extract_concepts", why)
            if feedback:
                feedback(outcome.stage, outcome.status, outcome.message)
        else:
            try:
                outcome = self.planner.plan(instruction, feedback, cancelled)
            finally:
                self._busy.release()
        self._report(instruction, outcome)
        return outcome

    # ---- outputs --------------------------------------------------------------------------
    def _report(self, instruction: str, outcome: PlanOutcome) -> None:
        text = f"plan {outcome.status} at {outcome.stage}: {outcome.message}"
        if outcome.success:
            self.get_logger().info(text)
        else:
            self.get_logger().warning(text)
        pub = self._pubs.get("status")
        if pub is not None:
            report = {
                "instruction": instruction[:1000],
                "status": outcome.status,
                "stage": outcome.stage,
                "message": outcome.message,
                "success": outcome.success,
            }
            pub.publish(String(data=json.dumps(report, ensure_ascii=False)))

    def publish_action(self, planned) -> None:
        pub = self._pubs.get("action")
        if pub is None:
            raise PortError("the node was deactivated during the plan")
        with self._sequence_lock:
            self._sequence += 1
            sequence = self._sequence
        pub.publish(planned_action_msg(planned, sequence, self._now_ns(), self.p("model")))

    def publish_prompt(self, stage: str, messages: list[dict]) -> None:
        pub = self._pubs.get("prompt")
        if pub is not None:
            doc = {"stage": stage, "dry_run": self.llm is None, "messages": redact_images(messages)}
            pub.publish(String(data=json.dumps(doc, ensure_ascii=False, indent=1)))

    def _publish_diagnostics(self) -> None:
        self._diag_pub.publish(diagnostics_msg(self._status(), self._now_ns()))

    def _status(self) -> PlannerStatus:
        llm, planner, newest = self.llm, self.planner, self.graphs.newest()
        env_name = self.p("api_key_env")
        status = PlannerStatus(
            node_name=self.get_fully_qualified_name(),
            mode="unconfigured" if planner is None else ("dry_run" if llm is None else "llm"),
            model=self.p("model"),
            api_key_env=env_name if valid_env_name(env_name) else "(not a variable name)",
            api_key_set=valid_env_name(env_name) and api_key_from_env(env_name) is not None,
            stats=planner.stats.snapshot() if planner else {},
            graphs_received=self.graphs.received,
            busy=self._busy.locked(),
            error=self.error,
        )
        if llm is not None:
            status.endpoint = safe_url(llm.config.base_url)
            status.breaker_state = llm.breaker.state
            status.consecutive_failures = llm.breaker.consecutive_failures
            status.llm_stats, status.llm_last_error = dict(llm.stats), llm.last_error
        if newest is not None:
            status.last_graph_age_s = (self._now_ns() - newest.stamp_ns) / 1e9
        return status

    # ---- parameters -----------------------------------------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        values = {name: self.p(name) for name in SPECS}
        for param in params:
            spec = SPECS.get(param.name)
            problem = spec.check(param.value) if spec else None
            if problem:
                return SetParametersResult(successful=False, reason=problem)
            values[param.name] = param.value
        if self.planner is not None:
            # Read by the next plan; a plan in progress keeps the settings it started with.
            try:
                self.planner.settings = settings_from(self._resolved(values))
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            self.planner.history.resize(values["history_length"])
        return SetParametersResult(successful=True)

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds


class _RosPorts:
    """The Planner's view of ROS: set_concepts, the graph cache, images, publishers."""

    def __init__(self, node: PlannerNode):
        self.node = node

    def set_concepts(self, lists, timeout_s: float) -> str:
        client = self.node._concepts_client
        if client is None or not client.wait_for_service(timeout_sec=timeout_s):
            raise PortError("the perception node's set_concepts service is not available")
        request = SetConcepts.Request(
            categories=list(lists.categories), unary=list(lists.unary), binary=list(lists.binary)
        )
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout_s):
            if hasattr(client, "remove_pending_request"):  # not in every rclpy release
                client.remove_pending_request(future)
            raise PortError(f"set_concepts did not answer within {timeout_s:g} s")
        response = future.result()
        if response is None or not response.success:
            reason = response.message if response is not None else "no response"
            raise PortError(f"set_concepts refused the concepts: {reason}")
        return response.concepts_id

    def wait_for_graph(self, accept, timeout_s: float):
        return self.node.graphs.wait(accept, timeout_s)

    def image_for(self, graph) -> str | None:
        from sgclip_ros.planner.image import png_data_url
        from sgclip_ros.ros.image_conversion import image_to_rgb

        msg = self.node.images.wait(graph.stamp_ns, graph.frame_id, _IMAGE_WAIT_S)
        if msg is None:
            self.node.get_logger().warning("no annotated image for the scene graph: text only")
            return None
        try:
            return png_data_url(image_to_rgb(msg, _MAX_IMAGE_PIXELS), self.node.p("image_max_side"))
        except ValueError as exc:
            self.node.get_logger().warning(f"annotated image not attached: {exc}")
            return None

    def now_ns(self) -> int:
        return self.node._now_ns()

    def publish_action(self, planned) -> None:
        self.node.publish_action(planned)

    def publish_prompt(self, stage: str, messages: list[dict]) -> None:
        self.node.publish_prompt(stage, messages)


def main(argv: list[str] | None = None) -> int:
    return run_lifecycle_node(PlannerNode, 4, argv)


if __name__ == "__main__":
    sys.exit(main())
