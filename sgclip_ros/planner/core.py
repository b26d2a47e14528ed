"""The ESCA planning loop, ROS-free: instruction -> concepts -> fresh scene graph -> action.

1. The LLM turns the instruction into targets, attributes, relations and related objects.
2. Those become the perception node's concept lists (``set_concepts``); the loop then waits for
   a scene graph computed with them (same ``concepts_id``) that is not older than
   ``max_graph_age_s``. Older graphs are never used.
3. The prompt holds the instruction, the allowed actions with their argument schemas, the graph
   as compact text, the last N steps and optionally the annotated image, untrusted parts fenced
   as data.
4. The reply is extracted, validated against the allow-list, the bounds and the graph's object
   ids and 3D positions, and only then handed to ``ports.publish_action`` (with the positions of
   the objects it names): the one place an action leaves.
The node supplies the ports (ROS I/O); tests supply fakes.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sgclip_ros.core.scene_graph import SceneGraph, Vec3
from sgclip_ros.planner.actions import ActionRejected, ActionSet, ValidatedAction
from sgclip_ros.planner.concept_request import ConceptLists, ConceptReplyError, concept_lists
from sgclip_ros.planner.history import History, Step
from sgclip_ros.planner.json_extract import ExtractionError, extract_json_object
from sgclip_ros.planner.llm_client import ChatClient, LLMError
from sgclip_ros.planner.positions import graph_positions
from sgclip_ros.planner.prompt import ActionPromptInput, action_messages, concept_messages

# Stages, in order, as reported in feedback.
STAGES = (
    "extract_concepts",
    "set_concepts",
    "wait_scene_graph",
    "plan_action",
    "validate",
    "publish",
    "done",
)
OK, DRY_RUN, CANCELED, BUSY = "ok", "dry_run", "canceled", "busy"
INVALID_INSTRUCTION, INVALID_JSON = "invalid_instruction", "invalid_json"
INVALID_CONCEPTS, INVALID_ACTION = "invalid_concepts", "invalid_action"
SET_CONCEPTS_FAILED, NO_FRESH_GRAPH = "set_concepts_failed", "no_fresh_scene_graph"
PUBLISH_FAILED = "publish_failed"
# LLM failures are "llm_<kind>": llm_unreachable, llm_timeout, llm_rate_limited,
# llm_server_error, llm_http_error, llm_too_large, llm_bad_response, llm_circuit_open.

Feedback = Callable[[str, str, str], None]  # stage, status, message


class PortError(RuntimeError):
    """A ROS-side step failed (e.g. the set_concepts service did not answer)."""


class PlannerPorts(Protocol):
    """What the loop needs from the outside world (the node implements it over ROS)."""

    def set_concepts(self, lists: ConceptLists, timeout_s: float) -> str: ...

    def wait_for_graph(
        self, accept: Callable[[SceneGraph], bool], timeout_s: float
    ) -> SceneGraph | None: ...

    def image_for(self, graph: SceneGraph) -> str | None: ...

    def now_ns(self) -> int: ...

    def publish_action(self, planned: PlannedAction) -> None: ...

    def publish_prompt(self, stage: str, messages: list[dict]) -> None: ...


@dataclass(frozen=True)
class PlannerSettings:
    max_graph_age_s: float = 2.0
    graph_wait_s: float = 5.0
    set_concepts_timeout_s: float = 5.0
    camera: str = ""  # only graphs of this camera ("" = any)
    extract_concepts: bool = True
    max_concepts: int = 8
    extra_concepts: tuple[Sequence[str], Sequence[str], Sequence[str]] = ((), (), ())
    max_objects: int = 32
    max_relations: int = 48
    max_instruction_chars: int = 1000
    include_image: bool = False
    publish_prompts: bool = False


@dataclass(frozen=True)
class PlannedAction:
    """A validated action and the context it was chosen in."""

    action: ValidatedAction
    instruction: str
    graph_stamp_ns: int
    frame_id: str
    camera: str
    concepts_id: str
    # Newest 3D position (m, in frame_id) of each object in action.object_ids, same order;
    # None where the graph had none.
    object_positions: tuple[Vec3 | None, ...] = ()


@dataclass(frozen=True)
class PlanOutcome:
    status: str
    stage: str
    message: str
    planned: PlannedAction | None = None
    graph_stamp_ns: int = 0

    @property
    def success(self) -> bool:
        return self.status == OK


@dataclass
class PlannerStats:
    """Counters for diagnostics (thread-safe snapshot)."""

    plans: int = 0
    published: int = 0
    by_status: Counter = field(default_factory=Counter)
    last: PlanOutcome | None = None
    last_duration_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, outcome: PlanOutcome, duration_s: float) -> None:
        with self._lock:
            self.plans += 1
            self.published += outcome.success
            self.by_status[outcome.status] += 1
            self.last, self.last_duration_s = outcome, duration_s

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "plans": self.plans,
                "published": self.published,
                "by_status": dict(self.by_status),
                "last": self.last,
                "last_duration_s": self.last_duration_s,
            }


class _Fail(Exception):
    def __init__(self, status: str, stage: str, message: str):
        super().__init__(message)
        self.status, self.stage, self.message = status, stage, message


class Planner:
    """Runs one instruction through the loop; ``llm=None`` is dry-run mode (never acts)."""

    def __init__(
        self,
        settings: PlannerSettings,
        actions: ActionSet,
        llm: ChatClient | None,
        ports: PlannerPorts,
        history: History | None = None,
    ):
        self.settings, self.actions, self.llm, self.ports = settings, actions, llm, ports
        self.history = history or History(5)
        self.stats = PlannerStats()

    @property
    def dry_run(self) -> bool:
        return self.llm is None

    def plan(
        self,
        instruction: str,
        feedback: Feedback | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> PlanOutcome:
        """Plan one action for ``instruction``; never raises for model or endpoint faults."""
        started = time.monotonic()
        run = _Run(self, feedback or (lambda *a: None), cancelled or (lambda: False))
        try:
            outcome = run.execute(instruction)
        except _Fail as fail:
            outcome = PlanOutcome(fail.status, fail.stage, fail.message, None, run.graph_stamp_ns)
        run.feedback(
            outcome.stage if not outcome.success else "done", outcome.status, outcome.message
        )
        self.stats.record(outcome, time.monotonic() - started)
        if outcome.status not in (DRY_RUN, INVALID_INSTRUCTION):
            act = outcome.planned.action if outcome.planned else None
            self.history.add(
                Step(
                    instruction[:200],
                    act.name if act else "",
                    act.arguments_json if act else "{}",
                    outcome.status,
                )
            )
        return outcome


class _Run:
    """One pass through the loop (keeps per-plan state out of the Planner)."""

    def __init__(self, planner: Planner, feedback: Feedback, cancelled: Callable[[], bool]):
        self.p, self.s = planner, planner.settings
        self.feedback, self.cancelled = feedback, cancelled
        self.graph_stamp_ns = 0

    def execute(self, instruction: str) -> PlanOutcome:
        instruction = self._check_instruction(instruction)
        concepts_id = self._concepts(instruction) if self.s.extract_concepts else None
        graph = self._fresh_graph(concepts_id)
        messages = self._action_messages(instruction, graph)
        if self.p.dry_run:
            self.p.ports.publish_prompt("plan_action", messages)
            return PlanOutcome(
                DRY_RUN,
                "plan_action",
                "dry run (no LLM endpoint): prompt published on ~/prompt; no action",
                None,
                self.graph_stamp_ns,
            )
        reply = self._chat("plan_action", messages)
        self._stage("validate")
        positions = graph_positions(graph)
        try:
            action = self.p.actions.validate(
                extract_json_object(reply), {o.id for o in graph.objects}, positions
            )
        except ExtractionError as exc:
            raise _Fail(INVALID_JSON, "validate", f"action reply: {exc}") from None
        except ActionRejected as exc:
            raise _Fail(INVALID_ACTION, "validate", str(exc)) from None
        planned = PlannedAction(
            action,
            instruction,
            graph.stamp_ns,
            graph.frame_id,
            graph.camera,
            graph.concepts_id,
            tuple(positions.get(i) for i in action.object_ids),
        )
        self._stage("publish")  # a cancel seen here still stops the action
        try:
            self.p.ports.publish_action(planned)
        except PortError as exc:
            raise _Fail(PUBLISH_FAILED, "publish", str(exc)) from None
        return PlanOutcome(
            OK, "publish", f"{action.name} {action.arguments_json}", planned, graph.stamp_ns
        )

    # ---- steps ---------------------------------------------------------------------------
    def _check_instruction(self, instruction) -> str:
        text = instruction.strip() if isinstance(instruction, str) else ""
        if not text:
            raise _Fail(INVALID_INSTRUCTION, "extract_concepts", "the instruction is empty")
        if len(text) > self.s.max_instruction_chars:
            raise _Fail(
                INVALID_INSTRUCTION,
                "extract_concepts",
                f"the instruction is longer than {self.s.max_instruction_chars} characters",
            )
        return text

    def _concepts(self, instruction: str) -> str | None:
        messages = concept_messages(instruction, self.s.max_concepts)
        if self.p.dry_run:
            self.p.ports.publish_prompt("extract_concepts", messages)
            return None  # nothing to set without a model: take any fresh graph
        reply = self._chat("extract_concepts", messages)
        try:
            lists = concept_lists(
                extract_json_object(reply), self.s.max_concepts, self.s.extra_concepts
            )
        except ExtractionError as exc:
            raise _Fail(INVALID_JSON, "extract_concepts", f"concept reply: {exc}") from None
        except ConceptReplyError as exc:
            raise _Fail(INVALID_CONCEPTS, "extract_concepts", str(exc)) from None
        self._stage(
            "set_concepts",
            f"{len(lists.categories)} categories, {len(lists.unary)} "
            f"attributes, {len(lists.binary)} relations",
        )
        try:
            return self.p.ports.set_concepts(lists, self.s.set_concepts_timeout_s)
        except PortError as exc:
            raise _Fail(SET_CONCEPTS_FAILED, "set_concepts", str(exc)) from None

    def _fresh_graph(self, concepts_id: str | None) -> SceneGraph:
        self._stage("wait_scene_graph")
        graph = self.p.ports.wait_for_graph(
            lambda g: self._usable(g, concepts_id), self.s.graph_wait_s
        )
        # Checked again: the age grows while waiting, and the port is not trusted to filter.
        if graph is None or not self._usable(graph, concepts_id):
            wanted = f" with concepts {concepts_id}" if concepts_id else ""
            raise _Fail(
                NO_FRESH_GRAPH,
                "wait_scene_graph",
                f"no scene graph{wanted} newer than {self.s.max_graph_age_s:g} s arrived "
                f"within {self.s.graph_wait_s:g} s",
            )
        self.graph_stamp_ns = graph.stamp_ns
        return graph

    def _usable(self, graph: SceneGraph, concepts_id: str | None) -> bool:
        if concepts_id is not None and graph.concepts_id != concepts_id:
            return False
        if self.s.camera and graph.camera != self.s.camera:
            return False
        age_s = (self.p.ports.now_ns() - graph.stamp_ns) / 1e9
        return -self.s.max_graph_age_s <= age_s <= self.s.max_graph_age_s

    def _action_messages(self, instruction: str, graph: SceneGraph) -> list[dict]:
        image = self.p.ports.image_for(graph) if self.s.include_image else None
        parts = ActionPromptInput(
            instruction=instruction,
            actions=self.p.actions,
            graph=graph,
            graph_age_s=max(0.0, (self.p.ports.now_ns() - graph.stamp_ns) / 1e9),
            history=self.p.history.recent(),
            image_data_url=image,
            max_objects=self.s.max_objects,
            max_relations=self.s.max_relations,
        )
        return action_messages(parts)

    def _chat(self, stage: str, messages: list[dict]) -> str:
        self._stage(stage)
        if self.s.publish_prompts:
            self.p.ports.publish_prompt(stage, messages)
        try:
            return self.p.llm.chat(messages)
        except LLMError as exc:
            raise _Fail(f"llm_{exc.kind}", stage, str(exc)) from None

    def _stage(self, stage: str, message: str = "") -> None:
        if self.cancelled():
            raise _Fail(CANCELED, stage, "canceled before " + stage)
        self.feedback(stage, "running", message)
