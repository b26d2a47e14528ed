"""SGClip perception lifecycle node: camera topics -> sliding windows -> SceneGraph messages.

configure: read parameters, load and verify the model, build the predictor.
activate: subscribe, advertise, start the inference thread. deactivate: stop and free.
The node only wires ROS to the core; all logic lives in sgclip_ros.core and sgclip_ros.ros.
"""

from __future__ import annotations

import math
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterUninitializedException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from sensor_msgs.msg import CompressedImage, Image

from sgclip_ros.core.backend_select import UNTRAINED_TINY, load_backend
from sgclip_ros.core.concepts import ConceptError, ConceptSet, load_concepts
from sgclip_ros.core.depth_proposer import DepthProposer
from sgclip_ros.core.input_checks import (
    DropCounter,
    FrameRejected,
    LatencyStats,
    RateMeter,
    StampGuard,
)
from sgclip_ros.core.model_store import ModelFileError
from sgclip_ros.core.predictor import SGClipPredictor
from sgclip_ros.msg import ConceptLists, SceneGraph
from sgclip_ros.nodes.lifecycle_main import run_lifecycle_node
from sgclip_ros.nodes.perception_inputs import CameraTopics, camera_topics, depth_input, subscribe
from sgclip_ros.nodes.perception_live import LiveChangeRefused, apply_live
from sgclip_ros.nodes.perception_outputs import StandardOutputs
from sgclip_ros.nodes.perception_setup import (
    _check_detections_available,
    _free_device_memory,
    build_predictor_config,
    declared_domain,
    log_domain,
    status_snapshot,
    worker_settings,
)
from sgclip_ros.ros.concept_changes import ConceptChanges, ConceptJob, RateLimited
from sgclip_ros.ros.conversions import ns_from_time, scene_graph_to_msg
from sgclip_ros.ros.image_conversion import compressed_to_rgb, image_to_rgb, precheck
from sgclip_ros.ros.inference_worker import InferenceWorker, PendingFrame, WorkerHooks
from sgclip_ros.ros.params import SPECS, load_defaults, resolve_share_path, share_dir
from sgclip_ros.ros.topics import annotated_topic_for
from sgclip_ros.srv import SetConcepts

# How long set_concepts waits for the new lists to become active before it answers anyway.
SET_CONCEPTS_TIMEOUT_S = 10.0


class PerceptionNode(LifecycleNode):
    """Thin wiring of topics, parameters and threads around an SGClipPredictor."""

    def __init__(self, node_name: str = "sgclip_perception", **kwargs):
        super().__init__(node_name, **kwargs)
        for name, value in load_defaults().items():
            self.declare_parameter(name, value, SPECS[name].descriptor(value))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.drops, self.rates = DropCounter(), RateMeter()
        self.callback_ms = LatencyStats()
        self.received: dict[str, int] = {}
        self.predictor: SGClipPredictor | None = None
        self.choice = None
        self.model_name, self.model_domain = "", None  # the domain the model declares
        self.worker: InferenceWorker | None = None
        self.error = ""
        self._concepts_source = ""
        self._published_id = ""  # the concepts id last published on active_concepts
        self._stamp_guards: dict[str, StampGuard] = {}
        self.concept_changes = ConceptChanges()
        self._concept_waits: list[tuple[ConceptJob, Future, float]] = []
        self._stuck_workers: list[InferenceWorker] = []  # stop() timed out on these
        self._entities: list = []
        self._topics: dict[str, CameraTopics] = {}  # resolved camera -> its topics
        self._graph_pub = self._concepts_pub = None
        self._annotated_pubs: dict = {}
        self.outputs: StandardOutputs | None = None
        # Diagnostics exist in every state, so a failed configure is visible as ERROR. They run
        # on the steady clock: a paused or reset simulation must not silence them.
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(self.p("diagnostics_period_s"), self._on_diagnostics_timer, clock=steady)
        # Concept jobs finish on the worker thread; it wakes the executor through this.
        self._concepts_done = self.create_guard_condition(self._on_concepts_done)
        self.create_timer(0.1, self._on_concepts_done, clock=steady)  # set_concepts timeouts

    def p(self, name: str):
        """A parameter's value; `[]` in a params file leaves an array untyped, read as []."""
        try:
            return self.get_parameter(name).value
        except ParameterUninitializedException:
            if name in _ARRAY_PARAMS:
                return []
            raise

    # ---- lifecycle ------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            for name, spec in SPECS.items():  # ranges are enforced by rclpy, choices here
                problem = spec.check(self.p(name))
                if problem:
                    raise ValueError(problem)
            root = self.p("model_root") or str(share_dir() / "models")
            self.choice = load_backend(
                self.p("backend"), root, self.p("model_dir"), self.p("device")
            )
            concepts = self._load_concepts_file(self.p("concepts_file"))
            self._topics = camera_topics(self)
            _check_detections_available([t.detections for t in self._topics.values()])
            config = build_predictor_config(self)
            self.predictor = SGClipPredictor(self.choice.backend, concepts, config)
            if self.p("proposer") == "depth":
                self.predictor.set_depth_proposer(DepthProposer())
            self.model_name, self.model_domain = declared_domain(
                root, self.p("model_dir"), self.choice.untrained
            )
        except (ModelFileError, ConceptError, ValueError, OSError, RuntimeError) as exc:
            return self._configure_failed(str(exc))
        except Exception as exc:  # noqa: BLE001 - still a reason in the log and /diagnostics
            return self._configure_failed(f"{type(exc).__name__}: {exc}")
        for reason in self.choice.fallbacks:
            self.get_logger().warning(f"backend fallback: {reason}")
        if self.choice.untrained:
            self.get_logger().warning(
                f"model '{UNTRAINED_TINY}': RANDOM UNTRAINED WEIGHTS - scores are meaningless; "
                "set model_dir to a trained model"
            )
        self.error = ""
        backend = self.choice.backend
        self.get_logger().info(
            f"configured: backend {backend.name} on {backend.device}, "
            f"model {backend.model_id}, concepts {concepts.concepts_id}"
        )
        log_domain(self, opening=True)
        return TransitionCallbackReturn.SUCCESS

    def _configure_failed(self, reason: str) -> TransitionCallbackReturn:
        self.error = f"configure failed: {reason}"
        self.get_logger().error(self.error)
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stuck_workers = [w for w in self._stuck_workers if w.alive]
        if self._stuck_workers:
            self.error = "activate refused: the previous inference thread is still running"
            self.get_logger().error(self.error)
            return TransitionCallbackReturn.FAILURE
        self.error = ""
        topics = self._topics
        cameras = list(topics)
        hooks = WorkerHooks(
            self._to_rgb,
            self._publish_graph,
            self._now_ns,
            warn=self._warn_throttled,
            error=self.get_logger().error,
        )
        self.worker = InferenceWorker(
            self.predictor,
            hooks,
            self.drops,
            frozenset(c for c, t in topics.items() if t.detections),
            worker_settings({name: self.p(name) for name in _WORKER_PARAMS}),
            depth=depth_input(self, topics),
        )
        self._graph_pub = self.create_publisher(SceneGraph, "scene_graph", 10)
        latched = QoSProfile(
            depth=1,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
            reliability=ReliabilityPolicy.RELIABLE,
        )
        self._concepts_pub = self.create_publisher(ConceptLists, "active_concepts", latched)
        # Its own group: while a request awaits its encode, the default group (images, timers,
        # the guard that completes it) must keep running on the single-threaded executor.
        self._entities = [
            self.create_service(
                SetConcepts,
                "set_concepts",
                self._on_set_concepts,
                callback_group=ReentrantCallbackGroup(),
            )
        ]
        # Every publisher before the first subscription: once subscribed, frames stream in.
        # Annotated images are advertised up front (publishing stays optional) so subscribers
        # discover them early.
        self._annotated_pubs = {
            cam: self.create_publisher(Image, self._annotated_topic(cam), 2) for cam in cameras
        }
        self.outputs = StandardOutputs(self, cameras)
        self._stamp_guards = {
            cam: StampGuard(self.p("max_stamp_age_s"), self.p("max_stamp_future_s"))
            for cam in cameras
        }
        self._entities += subscribe(self, topics, self.worker)
        self.worker.start()
        self._publish_concepts()
        self.get_logger().info(f"active: {len(cameras)} camera(s): {', '.join(cameras)}")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        for entity in self._entities:
            self._destroy(entity)
        for pub in [self._graph_pub, self._concepts_pub, *self._annotated_pubs.values()]:
            if pub is not None:
                self.destroy_publisher(pub)
        if self.outputs is not None:
            self.outputs.destroy()
        self._entities, self._annotated_pubs, self.outputs = [], {}, None
        self._graph_pub = self._concepts_pub = None
        self._stamp_guards.clear()
        if self.predictor is not None:
            self.predictor.reset()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.predictor, self.choice, self.worker = None, None, None
        _free_device_memory()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        return TransitionCallbackReturn.SUCCESS

    def _stop_worker(self) -> None:
        """Stop the inference thread; one that does not stop is reported and remembered, so
        activate never starts a second thread on the same predictor."""
        if self.worker is not None and not self.worker.stop():
            self._stuck_workers.append(self.worker)
            self.error = "the inference thread did not stop"

    def _destroy(self, entity) -> None:
        if hasattr(entity, "srv_type"):
            self.destroy_service(entity)
        else:
            self.destroy_subscription(entity)

    # ---- inputs ---------------------------------------------------------------------------
    def camera_names(self) -> list[str]:
        """The cameras as configured (resolved topics), or as the parameter names them."""
        return list(self._topics) or [c for c in self.p("cameras") if c]

    def on_image(self, camera: str, msg) -> None:
        now = self._now_ns()
        # How long after its stamp the callback ran: transport plus any executor stall (a
        # blocking callback would show here). Meaningful when the camera stamps with this clock.
        age_ms = (now - ns_from_time(msg.header.stamp)) / 1e6
        if math.isfinite(age_ms) and 0 <= age_ms < 60_000:
            self.callback_ms.add(age_ms)
        self.rates.tick(camera, now)
        self.received[camera] = self.received.get(camera, 0) + 1
        guard = self._stamp_guards[camera]
        if guard.observe_clock(now):
            self.drops.add(camera, "clock_jump")
            self._warn_throttled(f"{camera}: the clock jumped backwards; window cleared")
            self.worker.reset_camera(camera)
        stamp = ns_from_time(msg.header.stamp)
        try:
            precheck(msg, self.p("max_pixels"))
            guard.check(stamp, now)
        except FrameRejected as exc:
            self.drops.add(camera, exc.reason)
            self._warn_throttled(f"{camera}: frame rejected: {exc}")
            return
        self.worker.submit(camera, PendingFrame(msg, stamp, msg.header.frame_id, now))

    def _to_rgb(self, camera: str, msg):
        if isinstance(msg, CompressedImage):
            return compressed_to_rgb(msg, self.p("max_pixels"))
        return image_to_rgb(msg, self.p("max_pixels"))

    # ---- outputs --------------------------------------------------------------------------
    def _publish_graph(self, camera: str, graph, rgb) -> None:
        pub = self._graph_pub
        if pub is None:  # deactivated while the worker was finishing this graph
            return
        pub.publish(scene_graph_to_msg(graph))
        if self.outputs is not None:
            self.outputs.publish(camera, graph)
        if self.p("publish_annotated") and camera in self._annotated_pubs:
            from sgclip_ros.core.annotate import draw_scene_graph
            from sgclip_ros.ros.image_conversion import rgb_to_image_msg

            pub = self._annotated_pubs[camera]
            image = draw_scene_graph(rgb, graph, max_relations=self.p("annotated_relations"))
            msg = rgb_to_image_msg(image)
            msg.header.stamp, msg.header.frame_id = (
                scene_graph_to_msg(graph).header.stamp,
                graph.frame_id,
            )
            pub.publish(msg)

    def _annotated_topic(self, camera: str) -> str:
        """`annotated_image` for one camera; beside each camera's resolved topic for several."""
        if len(self._topics) == 1:
            return "annotated_image"
        return annotated_topic_for(camera)

    def _publish_concepts(self) -> bool:
        """Publish the active lists on active_concepts (latched); False while inactive."""
        if self._concepts_pub is None or self.predictor is None:
            return False
        c = self.predictor.concepts
        msg = ConceptLists(
            concepts_id=c.concepts_id,
            source=self._concepts_source,
            categories=list(c.categories),
            unary=list(c.unary),
            binary=list(c.binary),
            temporal=list(c.temporal),
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        self._concepts_pub.publish(msg)
        self._published_id = c.concepts_id
        return True

    def _on_diagnostics_timer(self) -> None:
        """Publish /diagnostics; then restart an inference thread that died (ERROR first)."""
        from sgclip_ros.ros.diagnostics import diagnostics_msg

        status = status_snapshot(self)
        self._diag_pub.publish(diagnostics_msg(status, self.get_clock().now().to_msg()))
        worker = self.worker
        if worker is not None and worker.running and not worker.alive:
            worker.restart()

    # ---- concepts and parameters ----------------------------------------------------------
    def _load_concepts_file(self, path: str) -> ConceptSet:
        concepts = load_concepts(resolve_share_path(path))
        self._concepts_source = str(path)
        return concepts

    def request_concepts(self, concepts: ConceptSet, source: str) -> ConceptJob:
        """Queue a concept change for the inference thread; raises RateLimited on a flood."""
        job, new = self.concept_changes.request(
            concepts, source, self.predictor.concepts.concepts_id
        )
        if new:
            self.queue_predictor_change(lambda pred: self._run_concept_job(pred, job))
        return job

    def _run_concept_job(self, predictor: SGClipPredictor, job: ConceptJob) -> None:
        """The text encode, off the executor (on the worker thread when one runs)."""
        try:
            predictor.set_concepts(job.concepts)
        except Exception as exc:  # noqa: BLE001 - reported to the requester, never fatal
            self.concept_changes.finished(job, f"{type(exc).__name__}: {exc}")
        else:
            self._concepts_source = job.source
            self.concept_changes.finished(job)
        self._concepts_done.trigger()

    def _on_concepts_done(self) -> None:
        """On the executor: publish newly active lists and answer waiting set_concepts."""
        if self.predictor is not None and self.predictor.concepts.concepts_id != self._published_id:
            if self._publish_concepts():
                self.get_logger().info(
                    f"concepts {self._published_id} from {self._concepts_source} active"
                )
                log_domain(self, opening=False)
        now, waits = time.monotonic(), []
        for job, future, deadline in self._concept_waits:
            if job.done.is_set() or now >= deadline:
                future.set_result(job.done.is_set())
            else:
                waits.append((job, future, deadline))
        self._concept_waits = waits

    async def _on_set_concepts(self, request, response):
        if self.predictor is None:
            response.success, response.message = False, "node is not configured"
            return response
        try:
            concepts = self.predictor.concepts.with_lists(
                categories=list(request.categories),
                unary=list(request.unary),
                binary=list(request.binary),
                pairs_of_interest=(),
                source="set_concepts",
            )
            job = self.request_concepts(concepts, "set_concepts")
        except (ConceptError, RateLimited) as exc:
            response.success, response.message = False, str(exc)
            return response
        if not job.done.is_set():
            future = Future()
            self._concept_waits.append((job, future, time.monotonic() + SET_CONCEPTS_TIMEOUT_S))
            await future
        response.concepts_id = concepts.concepts_id
        if not job.done.is_set():
            response.success = False
            response.message = (
                f"still encoding after {SET_CONCEPTS_TIMEOUT_S:g} s; the lists become active "
                "when it finishes (watch active_concepts)"
            )
        elif job.error:
            response.success, response.message = False, job.error
        else:
            response.success = True
            response.message = (
                f"{len(concepts.categories)} categories, {len(concepts.unary)} unary, "
                f"{len(concepts.binary)} binary"
            )
        return response

    def _on_set_parameters(self, params) -> SetParametersResult:
        for param in params:
            spec = SPECS.get(param.name)
            problem = spec.check(param.value) if spec else None
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        if self.predictor is None:  # not configured: configure reads the new values
            return SetParametersResult(successful=True)
        try:
            apply_live(self, {p.name: p.value for p in params if p.name in SPECS})
        except (LiveChangeRefused, RateLimited) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def queue_predictor_change(self, change) -> None:
        """Apply a predictor change between batches (or now, when no worker runs)."""
        if self.worker is not None and self.worker.running:
            self.worker.queue_change(change)
        else:
            change(self.predictor)

    def stamp_guards(self) -> list[StampGuard]:
        return list(self._stamp_guards.values())

    # ---- helpers --------------------------------------------------------------------------
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def warn_throttled(self, text: str) -> None:
        self.get_logger().warning(text, throttle_duration_sec=1.0)

    _warn_throttled = warn_throttled


_ARRAY_PARAMS = frozenset({"cameras", "detections", "depth_topics", "camera_info_topics"})
_WORKER_PARAMS = (
    "detection_wait_s",
    "detection_stamp_tolerance_s",
    "detection_image_size",
    "depth_stamp_tolerance_s",
    "depth_wait_s",
)


def _stop_worker(node: PerceptionNode) -> None:
    node._stop_worker()


def main(argv: list[str] | None = None) -> int:
    return run_lifecycle_node(PerceptionNode, 1, argv, on_exit=_stop_worker)


if __name__ == "__main__":
    sys.exit(main())
