"""SGClip perception lifecycle node: camera topics -> sliding windows -> SceneGraph messages.

configure: read parameters, load and verify the model, build the predictor.
activate: subscribe, advertise, start the inference thread. deactivate: stop and free.
The node only wires ROS to the core; all logic lives in sgclip_ros.core and sgclip_ros.ros.
"""

from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from sgclip_ros.core.backend_select import UNTRAINED_TINY, load_backend
from sgclip_ros.core.concepts import ConceptError, ConceptSet, load_concepts
from sgclip_ros.core.input_checks import DropCounter, FrameRejected, RateMeter, StampGuard
from sgclip_ros.core.model_store import ModelFileError
from sgclip_ros.core.predictor import SGClipPredictor
from sgclip_ros.msg import ConceptLists, SceneGraph
from sgclip_ros.nodes.lifecycle_main import run_lifecycle_node
from sgclip_ros.nodes.perception_setup import (
    build_predictor_config,
    graph_settings,
    status_snapshot,
    window_config,
)
from sgclip_ros.ros.conversions import ns_from_time, scene_graph_to_msg
from sgclip_ros.ros.detections import DetectionBuffer, regions_from_detections
from sgclip_ros.ros.image_conversion import compressed_to_rgb, image_to_rgb, precheck
from sgclip_ros.ros.inference_worker import InferenceWorker, PendingFrame, WorkerHooks
from sgclip_ros.ros.params import SPECS, load_defaults, resolve_share_path, share_dir
from sgclip_ros.ros.topics import annotated_topic_for, is_compressed_topic, resolve_topic
from sgclip_ros.srv import SetConcepts

_LIVE_WINDOW = {"window_size", "window_stride", "window_max_age_s"}
_LIVE_GRAPH = {"attribute_threshold", "relation_threshold", "top_k_labels"}


class PerceptionNode(LifecycleNode):
    """Thin wiring of topics, parameters and threads around an SGClipPredictor."""

    def __init__(self, node_name: str = "sgclip_perception", **kwargs):
        super().__init__(node_name, **kwargs)
        for name, value in load_defaults().items():
            self.declare_parameter(name, value, SPECS[name].descriptor(value))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.drops, self.rates = DropCounter(), RateMeter()
        self.received: dict[str, int] = {}
        self.predictor: SGClipPredictor | None = None
        self.choice = None
        self.worker: InferenceWorker | None = None
        self.error = ""
        self._concepts_source = ""
        self._stamp_guards: dict[str, StampGuard] = {}
        self._detections = DetectionBuffer()
        self._entities: list = []
        self._topics: dict[str, tuple[str, str]] = {}  # resolved camera -> (parameter, detections)
        self._graph_pub = self._concepts_pub = None
        self._annotated_pubs: dict = {}
        # Diagnostics exist in every state, so a failed configure is visible as ERROR. They run
        # on the steady clock: a paused or reset simulation must not silence them.
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(
            self.p("diagnostics_period_s"),
            self._publish_diagnostics,
            clock=Clock(clock_type=ClockType.STEADY_TIME),
        )

    def p(self, name: str):
        return self.get_parameter(name).value

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
            self._topics = self._camera_topics()
            _check_detections_available([det for _, det in self._topics.values()])
            config = build_predictor_config(self)
            self.predictor = SGClipPredictor(self.choice.backend, concepts, config)
        except (ModelFileError, ConceptError, ValueError, OSError, RuntimeError) as exc:
            self.error = f"configure failed: {exc}"
            self.get_logger().error(self.error)
            return TransitionCallbackReturn.FAILURE
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
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        topics = self._topics
        cameras = list(topics)
        hooks = WorkerHooks(
            self._to_rgb, self._publish_graph, self._now_ns, warn=self._warn_throttled
        )
        self.worker = InferenceWorker(
            self.predictor,
            hooks,
            self.drops,
            self._detections,
            frozenset(c for c, (_, det) in topics.items() if det),
            self.p("detection_wait_s"),
        )
        self._graph_pub = self.create_publisher(SceneGraph, "scene_graph", 10)
        latched = QoSProfile(
            depth=1,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
            reliability=ReliabilityPolicy.RELIABLE,
        )
        self._concepts_pub = self.create_publisher(ConceptLists, "active_concepts", latched)
        self._entities = [self.create_service(SetConcepts, "set_concepts", self._on_set_concepts)]
        self._subscribe(topics)
        # Created up front (publishing stays optional) so subscribers discover them early.
        self._annotated_pubs = {
            cam: self.create_publisher(Image, self._annotated_topic(cam), 2) for cam in cameras
        }
        self.worker.start()
        self._publish_concepts()
        self.get_logger().info(f"active: {len(cameras)} camera(s): {', '.join(cameras)}")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.worker is not None:
            self.worker.stop()
        for entity in self._entities:
            self._destroy(entity)
        for pub in [self._graph_pub, self._concepts_pub, *self._annotated_pubs.values()]:
            if pub is not None:
                self.destroy_publisher(pub)
        self._entities, self._annotated_pubs = [], {}
        self._graph_pub = self._concepts_pub = None
        self._stamp_guards.clear()
        self._detections.clear()
        if self.predictor is not None:
            self.predictor.reset()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.predictor, self.choice, self.worker = None, None, None
        _free_device_memory()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.worker is not None:
            self.worker.stop()
        return TransitionCallbackReturn.SUCCESS

    def _destroy(self, entity) -> None:
        if hasattr(entity, "srv_type"):
            self.destroy_service(entity)
        else:
            self.destroy_subscription(entity)

    # ---- inputs ---------------------------------------------------------------------------
    def _camera_topics(self) -> dict[str, tuple[str, str]]:
        """Resolved camera topic -> (camera parameter, detections topic or "").

        The resolved name (namespace and remappings applied) is the camera's identity: it picks
        Image or CompressedImage, names the camera in every SceneGraph and in /diagnostics."""
        cameras = [c for c in self.p("cameras") if c]
        detections = [d for d in self.p("detections")]
        detections = (detections + [""] * len(cameras))[: len(cameras)]
        topics = {}
        for camera, det in zip(cameras, detections):
            try:
                topics[resolve_topic(self, camera)] = (camera, det)
            except Exception as exc:  # rclpy's name exceptions share no narrower base
                raise ValueError(f"cameras: {camera!r} is not a valid topic name") from exc
        return topics

    def camera_names(self) -> list[str]:
        """The cameras as configured (resolved topics), or as the parameter names them."""
        return list(self._topics) or [c for c in self.p("cameras") if c]

    def _subscribe(self, topics: dict[str, tuple[str, str]]) -> None:
        reliability = (
            ReliabilityPolicy.RELIABLE
            if self.p("reliability") == "reliable"
            else ReliabilityPolicy.BEST_EFFORT
        )
        qos = QoSProfile(depth=self.p("qos_depth"), reliability=reliability)
        for camera, (param_topic, det_topic) in topics.items():
            kind = CompressedImage if is_compressed_topic(camera) else Image
            self._stamp_guards[camera] = StampGuard(
                self.p("max_stamp_age_s"), self.p("max_stamp_future_s")
            )
            # Subscribed by the parameter's name: rcl resolves and remaps it to `camera`.
            self._entities.append(
                self.create_subscription(
                    kind, param_topic, lambda msg, cam=camera: self._on_image(cam, msg), qos
                )
            )
            if det_topic:
                self._entities.append(self._subscribe_detections(camera, det_topic))

    def _subscribe_detections(self, camera: str, topic: str):
        from vision_msgs.msg import Detection2DArray  # only needed when detections are used

        def on_detections(msg) -> None:
            self._detections.add(
                camera, ns_from_time(msg.header.stamp), regions_from_detections(msg)
            )
            self.worker.slots.wake()

        return self.create_subscription(Detection2DArray, topic, on_detections, 10)

    def _on_image(self, camera: str, msg) -> None:
        now = self._now_ns()
        self.rates.tick(camera, now)
        self.received[camera] = self.received.get(camera, 0) + 1
        guard = self._stamp_guards[camera]
        if guard.observe_clock(now):
            self.drops.add(camera, "clock_jump")
            self._warn_throttled(f"{camera}: the clock jumped backwards; window cleared")
            self.worker.queue_change(lambda pred, cam=camera: pred.reset(cam))
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
        self._graph_pub.publish(scene_graph_to_msg(graph))
        if self.p("publish_annotated"):
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

    def _publish_concepts(self) -> None:
        if self._concepts_pub is None or self.predictor is None:
            return
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

    def _publish_diagnostics(self) -> None:
        from sgclip_ros.ros.diagnostics import diagnostics_msg

        status = status_snapshot(self)
        self._diag_pub.publish(diagnostics_msg(status, self.get_clock().now().to_msg()))

    # ---- concepts and parameters ----------------------------------------------------------
    def _load_concepts_file(self, path: str) -> ConceptSet:
        concepts = load_concepts(resolve_share_path(path))
        self._concepts_source = str(path)
        return concepts

    def _activate_concepts(self, concepts: ConceptSet, source: str) -> str:
        concepts_id = self.predictor.set_concepts(concepts)  # one text encode, done here
        self._concepts_source = source
        self._publish_concepts()
        self.get_logger().info(f"concepts {concepts_id} from {source} active from the next window")
        return concepts_id

    def _on_set_concepts(self, request, response):
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
            response.concepts_id = self._activate_concepts(concepts, "set_concepts")
        except ConceptError as exc:
            response.success, response.message = False, str(exc)
            return response
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
        if self.predictor is None:
            return SetParametersResult(successful=True)
        return self._apply_live(params)

    def _apply_live(self, params) -> SetParametersResult:
        values = {p.name: p.value for p in params}
        if "concepts_file" in values:
            try:
                concepts = load_concepts(resolve_share_path(values["concepts_file"]))
            except ConceptError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            self._activate_concepts(concepts, values["concepts_file"])
        current = {name: self.p(name) for name in _LIVE_WINDOW | _LIVE_GRAPH}
        current.update(values)
        try:
            window = window_config(current)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if _LIVE_WINDOW & values.keys():
            self._queue(lambda pred: pred.set_window_config(window))
        if _LIVE_GRAPH & values.keys():
            settings = graph_settings(current)
            self._queue(lambda pred: pred.set_graph_settings(settings))
        if "max_objects" in values:
            self._queue(lambda pred, n=values["max_objects"]: pred.set_max_objects(n))
        return SetParametersResult(successful=True)

    def _queue(self, change) -> None:
        """Apply a predictor change between batches (or now, when no worker runs)."""
        if self.worker is not None:
            self.worker.queue_change(change)
        else:
            change(self.predictor)

    # ---- helpers --------------------------------------------------------------------------
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _warn_throttled(self, text: str) -> None:
        self.get_logger().warning(text, throttle_duration_sec=1.0)


def _check_detections_available(detection_topics: list[str]) -> None:
    if any(detection_topics):
        try:
            import vision_msgs.msg  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(
                "detections topics are set but vision_msgs is not installed "
                "(apt install ros-$ROS_DISTRO-vision-msgs), or clear `detections`"
            ) from exc


def _free_device_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _stop_worker(node: PerceptionNode) -> None:
    if node.worker is not None:
        node.worker.stop()


def main(argv: list[str] | None = None) -> int:
    return run_lifecycle_node(PerceptionNode, 1, argv, on_exit=_stop_worker)


if __name__ == "__main__":
    sys.exit(main())
