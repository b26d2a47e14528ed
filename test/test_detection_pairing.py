"""Detections that lag their frames: the pairing ring, and the real InferenceWorker at 30 Hz.

A detector takes 30-300 ms per frame, so its detections always arrive after the image. Frames
wait in a short ring until their detection set comes, are paired by stamp (exact, or nearest
within a tolerance), and every frame is accounted for: processed, dropped with a reason, or
still pending.
"""

from __future__ import annotations

import queue
import threading
import time

import pytest
from test_core_predictor import SHAPES, _backend, _frame

from sgclip_ros.core.frame_pairing import FramePairing
from sgclip_ros.core.input_checks import DropCounter
from sgclip_ros.core.predictor import SGClipPredictor
from sgclip_ros.core.regions import Region
from sgclip_ros.core.scene_graph import Box
from sgclip_ros.ros.inference_worker import (
    InferenceWorker,
    PendingFrame,
    WorkerHooks,
    WorkerSettings,
)

PERIOD_NS = 33_333_333  # 30 Hz
CAM = "/camera/image_raw"


class FakeClock:
    def __init__(self):
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def _pairing(wait_s=0.5, tolerance_s=0.0, ring_size=64):
    drops, clock = DropCounter(), FakeClock()
    pairing = FramePairing(frozenset({CAM}), drops.add, wait_s, tolerance_s, ring_size, clock)
    return pairing, drops, clock


def _frame_at(k: int) -> PendingFrame:
    return PendingFrame(msg=k, stamp_ns=(k + 1) * PERIOD_NS, frame_id="cam", arrival_ns=0)


def _regions(k: int) -> list[Region]:
    return [Region(Box(0, 0, 10, 10), label=f"det{k}")]


def test_a_detection_set_pairs_with_its_frame_after_newer_frames_arrived():
    pairing, drops, clock = _pairing()
    for k in range(4):  # frames 0..3 arrive; the detector is 3 frames behind
        pairing.put_frame(CAM, _frame_at(k))
        clock.ns += PERIOD_NS
    assert pairing.take(0) == []
    pairing.put_detections(CAM, _frame_at(0).stamp_ns, _regions(0))
    ready = pairing.take(0)
    assert [(r.frame.msg, r.regions[0].label) for r in ready] == [(0, "det0")]
    assert pairing.pending() == 3 and drops.count() == 0


def test_the_newest_paired_frame_runs_and_older_ones_are_dropped_by_their_reason():
    pairing, drops, _ = _pairing()
    for k in range(5):
        pairing.put_frame(CAM, _frame_at(k))
    for k in (1, 3):  # frame 0 and 2 never get detections; 1 and 3 do, before the worker looks
        pairing.put_detections(CAM, _frame_at(k).stamp_ns, _regions(k))
    ready = pairing.take(0)
    assert [r.frame.msg for r in ready] == [3]
    assert drops.by_reason(CAM) == {"no_detections": 2, "busy": 1}
    assert pairing.pending() == 1  # frame 4 still waits


def test_a_restamping_detector_pairs_within_the_tolerance_only():
    pairing, drops, _ = _pairing(tolerance_s=0.005)
    pairing.put_frame(CAM, _frame_at(0))
    pairing.put_frame(CAM, _frame_at(1))
    pairing.put_detections(CAM, _frame_at(0).stamp_ns + 3_000_000, _regions(0))  # 3 ms off
    assert [r.frame.msg for r in pairing.take(0)] == [0]
    pairing.put_detections(CAM, _frame_at(1).stamp_ns + 9_000_000, _regions(1))  # 9 ms off
    assert pairing.take(0) == []
    pairing.set_tolerance_s(0.010)
    assert [r.frame.msg for r in pairing.take(0)] == [1]
    assert drops.count() == 0


def test_frames_without_detections_leave_after_the_wait_and_the_full_ring():
    pairing, drops, clock = _pairing(wait_s=0.1, ring_size=4)
    for k in range(6):  # ring of 4: frames 0 and 1 fall off
        pairing.put_frame(CAM, _frame_at(k))
    assert drops.by_reason(CAM) == {"no_detections": 2}
    clock.ns += 100_000_000
    assert pairing.take(0) == []
    assert drops.by_reason(CAM) == {"no_detections": 6} and pairing.pending() == 0
    # A late detection set whose frame is gone is counted, not held forever.
    pairing.put_frame(CAM, _frame_at(7))
    pairing.put_detections(CAM, _frame_at(2).stamp_ns, _regions(2))
    pairing.take(0)
    assert pairing.stats.detections_unmatched == {CAM: 1}


def test_a_camera_without_detector_keeps_its_newest_frame():
    drops = DropCounter()
    pairing = FramePairing(frozenset(), drops.add)
    for k in range(3):
        pairing.put_frame("/other", _frame_at(k))
    assert [r.frame.msg for r in pairing.take(0)] == [2]
    assert drops.by_reason("/other") == {"busy": 2}


def test_flush_and_close_account_for_every_held_frame():
    pairing, drops, _ = _pairing()
    for k in range(3):
        pairing.put_frame(CAM, _frame_at(k))
    assert pairing.flush(CAM, "clock_jump") == 3
    pairing.put_frame(CAM, _frame_at(5))
    assert pairing.close() == {CAM: 1}
    assert drops.by_reason(CAM) == {"clock_jump": 3}
    assert pairing.take(0) == []


# ---- the real worker, in real time ----------------------------------------------------------


class Stream:
    """A 30 Hz camera, and a detector thread that answers ``lag`` frame periods later."""

    def __init__(self, worker: InferenceWorker, frames: int, lag: int, every: int = 1):
        self.worker, self.frames, self.lag, self.every = worker, frames, lag, every
        self.sent_frames = self.sent_detections = 0

    def run(self) -> None:
        start = time.monotonic()
        jobs: queue.Queue = queue.Queue()
        detector = threading.Thread(target=self._detect, args=(jobs,), daemon=True)
        detector.start()
        for k in range(self.frames):
            _sleep_until(start + k * PERIOD_NS / 1e9)
            image, regions = _frame(k % 10)  # boxes stay inside the 128x96 frame
            stamp = (k + 1) * PERIOD_NS
            self.worker.submit(CAM, PendingFrame(image, stamp, "cam", time.monotonic_ns()))
            self.sent_frames += 1
            if k % self.every == 0:
                jobs.put((time.monotonic() + self.lag * PERIOD_NS / 1e9, stamp, regions))
        jobs.put(None)
        detector.join()

    def _detect(self, jobs: queue.Queue) -> None:
        while (job := jobs.get()) is not None:
            due, stamp, regions = job
            _sleep_until(due)
            self.worker.add_detections(CAM, stamp, regions)
            self.sent_detections += 1


def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _worker(graphs: list) -> InferenceWorker:
    hooks = WorkerHooks(
        to_rgb=lambda camera, msg: msg,
        publish=lambda camera, graph, rgb: graphs.append(graph),
        now_ns=time.monotonic_ns,
    )
    predictor = SGClipPredictor(_backend(), SHAPES)
    settings = WorkerSettings(detection_wait_s=0.6)
    return InferenceWorker(predictor, hooks, DropCounter(), frozenset({CAM}), settings)


@pytest.mark.parametrize(
    "lag,every",
    [(0, 1), (1, 1), (3, 1), (10, 1), (3, 5)],
    ids=["lag0", "lag1", "lag3", "lag10", "every5th"],
)
def test_lagging_detectors_at_30_hz_give_a_graph_per_detection_set(lag, every):
    # In real time on a shared 2-core runner, a scheduler hiccup can hold the worker past a
    # frame period; the newest-paired policy then drops the older paired frames as busy, by
    # design. So the 90% goal gets one more run; the books must balance in every run.
    for _attempt in range(2):
        graphs, paired, drops = _lagging_run(lag, every)
        if len(graphs) >= 0.9 * paired:
            break
    assert len(graphs) >= 0.9 * paired, (len(graphs), paired, drops)
    if every > 1:  # frames the detector skipped are dropped for that reason, not as busy
        assert drops.get("no_detections", 0) >= 0.9 * (90 - 90 // every), drops


def _lagging_run(lag: int, every: int):
    graphs: list = []
    worker = _worker(graphs)
    worker.start()
    stream = Stream(worker, frames=90, lag=lag, every=every)
    stream.run()
    deadline = time.monotonic() + 5
    while worker.pending and time.monotonic() < deadline:  # the last frames finish waiting
        time.sleep(0.05)
    assert worker.stop()
    drops = worker.drops.by_reason(CAM)
    paired = worker.pairing.stats.detections_paired.get(CAM, 0)
    assert stream.sent_detections == 90 // every
    # Every detection set found its frame still in the ring.
    assert paired == stream.sent_detections, (paired, drops)
    # The books balance: every frame was processed or dropped with a reason.
    processed = worker.processed.get(CAM, 0)
    assert processed + sum(drops.values()) == stream.sent_frames, (processed, drops)
    assert set(drops) <= {"busy", "no_detections"}, drops
    return graphs, paired, drops


def test_a_clock_jump_drops_the_frame_already_taken_and_the_camera_starts_over():
    """The race: the worker holds a pre-jump frame when the jump is seen. That frame is dropped
    as clock_jump, and the first post-jump frame is inferred on a fresh window, not refused."""
    graphs: list = []
    worker = _worker(graphs)
    worker.pairing.detected = frozenset()  # this camera has no detector
    image, _ = _frame(0)
    for k in (100, 101):  # before the jump: stamps around 100 s
        worker.submit("/cam", PendingFrame(image, k * 10**9, "cam", 0))
        worker.step(worker.pairing.take(0))
    worker.submit("/cam", PendingFrame(image, 102 * 10**9, "cam", 0))
    taken = worker.pairing.take(0)  # in the worker's hands when the jump is seen
    assert worker.reset_camera("/cam") == 0
    worker.submit("/cam", PendingFrame(image, 1 * 10**9, "cam", 0))  # after the jump: 1 s
    assert worker.step(taken) == []
    after = worker.step(worker.pairing.take(0))
    assert len(after) == 1 and after[0].stamp_ns == 10**9
    assert worker.drops.by_reason("/cam") == {"clock_jump": 1}
    assert worker.health.errors == 0
