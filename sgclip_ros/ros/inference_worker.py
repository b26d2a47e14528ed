"""The perception node's inference thread: paired frames -> predictor -> publish.

No rclpy here: the node hands in callables to convert images and publish results, so the worker
is driven directly in tests. Configuration changes are queued and applied between batches, so
they take effect on the next window and never race with inference.

The loop cannot die silently: every exception is caught, logged with its type and counted as
`inference_error` for the cameras involved. Should the thread end anyway, `alive` says so, the
node reports ERROR and calls `restart()`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sgclip_ros.core.frame_encoder import FrameInput
from sgclip_ros.core.frame_pairing import FramePairing, ReadyFrame
from sgclip_ros.core.input_checks import DropCounter, FrameRejected, LatencyStats
from sgclip_ros.core.predictor import SGClipPredictor
from sgclip_ros.core.regions import Region, scale_regions
from sgclip_ros.core.scene_graph import SceneGraph
from sgclip_ros.ros.depth_input import DepthInput, DepthRejected

_log = logging.getLogger("sgclip_ros.inference_worker")


@dataclass
class PendingFrame:
    """A frame as received: the message, its decoded stamp, and when it arrived."""

    msg: object
    stamp_ns: int
    frame_id: str
    arrival_ns: int


@dataclass
class WorkerHooks:
    """What the node plugs in: image conversion, publishing, clocks and warnings."""

    to_rgb: Callable[[str, object], np.ndarray]  # (camera, msg) -> RGB; raises FrameRejected
    publish: Callable[[str, SceneGraph, np.ndarray], None]
    now_ns: Callable[[], int]
    warn: Callable[[str], None] = _log.warning
    error: Callable[[str], None] = _log.error


@dataclass
class WorkerSettings:
    """The worker's live settings (detection and depth pairing, rescaling)."""

    detection_wait_s: float = 0.2
    detection_stamp_tolerance_s: float = 0.0
    detection_image_size: tuple[int, int] = (0, 0)  # (w, h) the detector saw; (0, 0) = same
    depth_stamp_tolerance_s: float = 0.02
    depth_wait_s: float = 0.1
    ring_size: int = 64


@dataclass
class WorkerHealth:
    """What /diagnostics needs to tell a working worker from a dead or stalled one."""

    errors: int = 0
    restarts: int = 0
    last_error: str = ""
    died: str = ""  # why the thread ended, while it is not running
    not_stopped: bool = False  # a stop() timed out: the old thread may still run
    last_graph_mono_ns: int = field(default_factory=time.monotonic_ns)


class InferenceWorker:
    """Owns the inference thread of one perception node."""

    def __init__(
        self,
        predictor: SGClipPredictor,
        hooks: WorkerHooks,
        drops: DropCounter,
        cameras_with_detections: frozenset[str] = frozenset(),
        settings: WorkerSettings | None = None,
        depth: DepthInput | None = None,
    ):
        self.predictor = predictor
        self.depth = depth
        self.hooks = hooks
        self.drops = drops
        self.settings = settings or WorkerSettings()
        self.pairing = FramePairing(
            cameras_with_detections,
            drops.add,
            self.settings.detection_wait_s,
            self.settings.detection_stamp_tolerance_s,
            self.settings.ring_size,
        )
        self.latency = LatencyStats()
        self.model_ms = LatencyStats()
        self.processed: dict[str, int] = {}  # per camera
        self.published: dict[str, int] = {}
        self.regions_outside: dict[str, int] = {}  # detector boxes reaching past the frame
        self.max_pending = 0
        self.health = WorkerHealth()
        self._changes: list[Callable[[SGClipPredictor], None]] = []
        self._changes_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._in_flight: list[str] = []
        self._generations: dict[str, int] = {}  # per camera: the generation the predictor has

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the thread; refuses while a previous thread of this worker still runs."""
        if self.alive:
            raise RuntimeError("the inference thread is already running")
        self.health.died = ""
        self._thread = threading.Thread(target=self._run, name="sgclip_inference", daemon=True)
        self._thread.start()

    def restart(self) -> bool:
        """Start a new thread after the old one died; True when one was started."""
        if self.alive or self.pairing.closed:
            return False
        self.health.restarts += 1
        self.start()
        self.hooks.warn(f"inference thread restarted (restart {self.health.restarts})")
        return True

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the thread; False (and reported) when it did not end within ``timeout`` s."""
        for camera, n in self.pairing.close().items():
            self.drops.add(camera, "inactive", n)
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            self.health.not_stopped = True
            self.hooks.error(f"the inference thread did not stop within {timeout:g} s")
            return False
        self._thread = None
        return True

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def running(self) -> bool:
        """Started and not stopped (whether or not the thread is alive)."""
        return self._thread is not None and not self.pairing.closed

    # ---- inputs (any thread) --------------------------------------------------------------
    def submit(self, camera: str, frame: PendingFrame) -> None:
        """Hand a frame to the worker (a camera without detections keeps only its newest)."""
        self.pairing.put_frame(camera, frame)
        self.max_pending = max(self.max_pending, self.pairing.pending())

    def add_detections(self, camera: str, stamp_ns: int, regions: list[Region]) -> None:
        self.pairing.put_detections(camera, stamp_ns, regions)

    def reset_camera(self, camera: str, reason: str = "clock_jump") -> int:
        """Start ``camera`` over (a clock jump): frames held now are dropped with ``reason``,
        frames taken before this are dropped when they reach inference, and the predictor
        forgets the camera's window before its next frame. Returns the frames dropped now."""
        if self.depth is not None and self.depth.has(camera):
            self.depth.clear(camera)
        return self.pairing.flush(camera, reason)

    def queue_change(self, change: Callable[[SGClipPredictor], None]) -> None:
        """Run ``change(predictor)`` on the worker thread before the next batch."""
        with self._changes_lock:
            self._changes.append(change)
        self.pairing.wake()

    def set_settings(self, settings: WorkerSettings) -> None:
        """Apply live detection and depth settings (pairing now, rescaling from the next frame)."""
        self.pairing.set_wait_s(settings.detection_wait_s)
        self.pairing.set_tolerance_s(settings.detection_stamp_tolerance_s)
        if self.depth is not None:
            self.depth.tolerance_s = settings.depth_stamp_tolerance_s
            self.depth.wait_s = settings.depth_wait_s
        self.settings = settings

    @property
    def pending(self) -> int:
        return self.pairing.pending()

    # ---- the loop -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self.pairing.closed:
                self._iterate()
        except BaseException as exc:  # noqa: BLE001 - the thread ends: say why, loudly
            self.health.died = f"{type(exc).__name__}: {exc}"
            self.hooks.error(f"inference thread died: {self.health.died}")

    def _iterate(self) -> None:
        """One pass; an exception is reported against the cameras in flight, then we go on."""
        try:
            self._apply_changes()
            ready = self.pairing.take(timeout=0.05)
            if ready:
                self.step(ready)
        except Exception as exc:  # noqa: BLE001 - MemoryError, cv2.error, ...: never fatal
            self._report(exc, self._in_flight)
        finally:
            self._in_flight = []

    def _apply_changes(self) -> None:
        with self._changes_lock:
            changes, self._changes = self._changes, []
        for change in changes:
            change(self.predictor)

    def step(self, ready: list[ReadyFrame]) -> list[SceneGraph]:
        """Convert and infer the ready frames; returns the graphs published."""
        self._in_flight = [r.camera for r in ready]
        inputs, images = [], {}
        for item in self._current(ready):
            frame = item.frame
            try:
                rgb = self.hooks.to_rgb(item.camera, frame.msg)
            except FrameRejected as exc:
                self.drops.add(item.camera, exc.reason)
                self.hooks.warn(f"{item.camera}: frame rejected: {exc}")
                continue
            regions = self._fit_regions(item.camera, item.regions, rgb.shape[1], rgb.shape[0])
            images[item.camera] = rgb
            depth, intrinsics = self._depth(item.camera, frame.stamp_ns, rgb)
            inputs.append(
                FrameInput(
                    item.camera, rgb, frame.stamp_ns, regions, frame.frame_id, depth, intrinsics
                )
            )
        self._in_flight = [i.camera for i in inputs]
        return self._infer(inputs, images) if inputs else []

    def _current(self, ready: list[ReadyFrame]) -> list[ReadyFrame]:
        """Frames of each camera's current generation; the window restarts on a new one."""
        current = []
        for item in ready:
            generation = self.pairing.generation(item.camera)
            if item.generation < generation:
                self.drops.add(item.camera, "clock_jump")  # taken just before the jump
                continue
            if self._generations.get(item.camera, 0) < generation:
                self.predictor.reset(item.camera)
                self._generations[item.camera] = generation
            current.append(item)
        return current

    def _depth(self, camera: str, stamp_ns: int, rgb: np.ndarray) -> tuple:
        """The frame's aligned depth and intrinsics, or (None, None): the frame then goes on
        without positions, and the depth problem is counted (DepthInput.problems)."""
        if self.depth is None or not self.depth.has(camera):
            return None, None
        try:
            return self.depth.lookup(camera, stamp_ns, rgb.shape[1], rgb.shape[0])
        except DepthRejected as exc:
            self.hooks.warn(f"{camera}: frame processed without depth: {exc}")
            return None, None

    def _fit_regions(self, camera: str, regions, width: int, height: int):
        """Detector boxes in frame pixels: rescaled from the detector's resolution when set."""
        if regions is None:
            return None
        det_w, det_h = self.settings.detection_image_size
        if det_w > 0 and det_h > 0 and (det_w, det_h) != (width, height):
            regions = scale_regions(regions, width / det_w, height / det_h)
        outside = sum(1 for r in regions if _reaches_outside(r, width, height))
        if outside:
            self.regions_outside[camera] = self.regions_outside.get(camera, 0) + outside
            self.hooks.warn(
                f"{camera}: {outside} detection box(es) reach past the {width}x{height} frame; "
                "set detection_image_size to the detector's input size if it differs"
            )
        return regions

    def _infer(self, inputs: list[FrameInput], images: dict) -> list[SceneGraph]:
        """The batch in one call; when it fails, each camera alone, so one bad camera fails
        alone."""
        try:
            graphs = self.predictor.add_frames(inputs)
        except Exception as exc:  # noqa: BLE001
            if len(inputs) == 1:
                self._report(exc, [inputs[0].camera])
                return []
            published = []
            for item in inputs:
                published += self._infer([item], images)
            return published
        return self._publish(inputs, graphs, images)

    def _publish(self, inputs, graphs, images) -> list[SceneGraph]:
        published = []
        for item, graph in zip(inputs, graphs):
            self.processed[item.camera] = self.processed.get(item.camera, 0) + 1
            if graph is None:
                continue
            self.hooks.publish(item.camera, graph, images[item.camera])
            self.published[item.camera] = self.published.get(item.camera, 0) + 1
            self.health.last_graph_mono_ns = time.monotonic_ns()
            self.model_ms.add(graph.inference_ms)
            self.latency.add((self.hooks.now_ns() - graph.stamp_ns) / 1e6)
            published.append(graph)
        return published

    def _report(self, exc: BaseException, cameras: list[str]) -> None:
        self.health.errors += 1
        self.health.last_error = f"{type(exc).__name__}: {exc}"
        self.hooks.warn(
            f"inference failed ({', '.join(cameras) or 'no camera'}): {self.health.last_error}"
        )
        for camera in cameras:
            self.drops.add(camera, "inference_error")


def _reaches_outside(region: Region, width: int, height: int) -> bool:
    box, slack = region.box, 1.0  # sub-pixel overshoot is rounding, not a wrong resolution
    return box.x1 < -slack or box.y1 < -slack or box.x2 > width + slack or box.y2 > height + slack
