"""The perception node's inference thread: newest frame per camera -> predictor -> publish.

No rclpy here: the node hands in callables to convert images and publish results, so the worker
is driven directly in tests. Configuration changes are queued and applied between batches, so
they take effect on the next window and never race with inference.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sgclip_ros.core.frame_encoder import FrameInput
from sgclip_ros.core.frame_slots import LatestFrameSlots
from sgclip_ros.core.input_checks import DropCounter, FrameRejected, LatencyStats
from sgclip_ros.core.predictor import SGClipPredictor
from sgclip_ros.core.scene_graph import SceneGraph
from sgclip_ros.ros.detections import DetectionBuffer

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


class InferenceWorker:
    """Owns the inference thread of one perception node."""

    def __init__(
        self,
        predictor: SGClipPredictor,
        hooks: WorkerHooks,
        drops: DropCounter,
        detections: DetectionBuffer | None = None,
        cameras_with_detections: frozenset[str] = frozenset(),
        detection_wait_s: float = 0.2,
    ):
        self.predictor = predictor
        self.hooks = hooks
        self.drops = drops
        self.detections = detections
        self.cameras_with_detections = cameras_with_detections
        self.detection_wait_ns = int(detection_wait_s * 1e9)
        self.slots = LatestFrameSlots(on_replaced=lambda cam, _old: drops.add(cam, "busy"))
        self.latency = LatencyStats()
        self.model_ms = LatencyStats()
        self.processed: dict[str, int] = {}  # per camera
        self.published: dict[str, int] = {}
        self.max_pending = 0
        self.last_error = ""
        self._held: dict[str, PendingFrame] = {}
        self._changes: list[Callable[[SGClipPredictor], None]] = []
        self._changes_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sgclip_inference", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.slots.close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # ---- inputs (any thread) --------------------------------------------------------------
    def submit(self, camera: str, frame: PendingFrame) -> None:
        """Queue the newest frame of ``camera``; an unprocessed older one is dropped as busy."""
        self.slots.put(camera, frame)
        self.max_pending = max(self.max_pending, self.slots.pending())

    def queue_change(self, change: Callable[[SGClipPredictor], None]) -> None:
        """Run ``change(predictor)`` on the worker thread before the next batch."""
        with self._changes_lock:
            self._changes.append(change)
        self.slots.wake()

    @property
    def pending(self) -> int:
        return self.slots.pending() + len(self._held)

    # ---- the loop -------------------------------------------------------------------------
    def _run(self) -> None:
        while not self.slots.closed:
            fresh = self.slots.take(timeout=0.05)
            self._apply_changes()
            for camera, frame in fresh.items():
                if camera in self._held:  # a newer frame overtook one waiting for detections
                    self.drops.add(camera, "busy")
                self._held[camera] = frame
            if self._held:
                self.step()

    def _apply_changes(self) -> None:
        with self._changes_lock:
            changes, self._changes = self._changes, []
        for change in changes:
            change(self.predictor)

    def step(self) -> list[SceneGraph]:
        """Process every held frame that is ready; returns the graphs published."""
        inputs, images = [], {}
        for camera in list(self._held):
            frame = self._held[camera]
            regions, ready = self._regions_for(camera, frame)
            if not ready:
                continue
            del self._held[camera]
            try:
                rgb = self.hooks.to_rgb(camera, frame.msg)
            except FrameRejected as exc:
                self.drops.add(camera, exc.reason)
                self.hooks.warn(f"{camera}: frame rejected: {exc}")
                continue
            images[camera] = (rgb, frame)
            inputs.append(FrameInput(camera, rgb, frame.stamp_ns, regions, frame.frame_id))
        return self._infer(inputs, images) if inputs else []

    def _regions_for(self, camera: str, frame: PendingFrame):
        """(regions, ready): None regions = built-in proposer; not ready = still waiting."""
        if camera not in self.cameras_with_detections or self.detections is None:
            return None, True
        regions = self.detections.take(camera, frame.stamp_ns)
        if regions is not None:
            return regions, True
        if self.hooks.now_ns() - frame.arrival_ns < self.detection_wait_ns:
            return None, False
        del self._held[camera]
        self.drops.add(camera, "no_detections")
        self.hooks.warn(f"{camera}: no detections for the frame stamped {frame.stamp_ns} ns")
        return None, False

    def _infer(self, inputs: list[FrameInput], images: dict) -> list[SceneGraph]:
        try:
            graphs = self.predictor.add_frames(inputs)
        except (ValueError, RuntimeError) as exc:
            # A bad region or mask from a detector, or a backend failure: report, keep running.
            self.last_error = f"inference failed: {exc}"
            self.hooks.warn(self.last_error)
            for item in inputs:
                self.drops.add(item.camera, "inference_error")
            return []
        published = []
        for item, graph in zip(inputs, graphs):
            self.processed[item.camera] = self.processed.get(item.camera, 0) + 1
            if graph is None:
                continue
            self.hooks.publish(item.camera, graph, images[item.camera][0])
            self.published[item.camera] = self.published.get(item.camera, 0) + 1
            self.model_ms.add(graph.inference_ms)
            self.latency.add((self.hooks.now_ns() - graph.stamp_ns) / 1e6)
            published.append(graph)
        return published
