"""Frames waiting for inference, paired with their detector output by stamp (ROS-free).

A camera without a detector keeps only its newest frame: a newer one replaces it (`busy`).
A camera with a detector keeps a short ring of recent frames, because detections always arrive
after their image (a detector takes 30-300 ms). A detection set pairs with the ring frame of the
same stamp, or the nearest one within a tolerance for detectors that re-stamp, as
message_filters' ApproximateTime would. The newest paired frame is handed out; older paired
frames are dropped as `busy` (the worker was behind), older unpaired ones as `no_detections`,
as are frames that waited longer than the wait limit or fell off the full ring. Every frame put
in is either handed out or dropped with a reason, so the books balance.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_NS = 1_000_000_000


@dataclass
class ReadyFrame:
    """A frame for the worker: its regions from the detector, or None (built-in proposer)."""

    camera: str
    frame: Any  # has .stamp_ns
    regions: list | None = None
    generation: int = 0  # the camera's generation when the frame came (see flush)


@dataclass
class _Held:
    frame: Any
    arrived_ns: int
    generation: int
    regions: list | None = None


@dataclass
class PairingStats:
    """Detection sets that found no frame (their frame was gone or never came), per camera."""

    detections_unmatched: dict[str, int] = field(default_factory=dict)
    detections_paired: dict[str, int] = field(default_factory=dict)


def _seconds_to_ns(name: str, value: float) -> int:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return int(value * _NS)


class FramePairing:
    """Thread-safe hand-over of frames (and detections) from callbacks to the worker."""

    def __init__(
        self,
        detected: frozenset[str],
        on_drop: Callable[[str, str], None],
        wait_s: float = 0.2,
        tolerance_s: float = 0.0,
        ring_size: int = 64,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ):
        if ring_size < 1:
            raise ValueError(f"ring_size must be >= 1, got {ring_size}")
        self.detected = detected
        self.ring_size = ring_size
        self.stats = PairingStats()
        self._on_drop = on_drop
        self._clock = clock_ns
        self._wait_ns = _seconds_to_ns("detection_wait_s", wait_s)
        self._tolerance_ns = _seconds_to_ns("detection_stamp_tolerance_s", tolerance_s)
        self._cv = threading.Condition()
        self._latest: dict[str, Any] = {}
        self._rings: dict[str, list[_Held]] = {c: [] for c in detected}
        self._detections: dict[str, OrderedDict[int, list]] = {c: OrderedDict() for c in detected}
        self._generations: dict[str, int] = {}
        self._closed = False

    # ---- settings (live) ------------------------------------------------------------------
    def set_wait_s(self, wait_s: float) -> None:
        with self._cv:
            self._wait_ns = _seconds_to_ns("detection_wait_s", wait_s)
            self._cv.notify_all()

    def set_tolerance_s(self, tolerance_s: float) -> None:
        with self._cv:
            self._tolerance_ns = _seconds_to_ns("detection_stamp_tolerance_s", tolerance_s)
            self._cv.notify_all()

    # ---- inputs (callback threads) --------------------------------------------------------
    def put_frame(self, camera: str, frame: Any) -> None:
        """Hold ``frame`` (with ``.stamp_ns``) of ``camera`` for the worker."""
        dropped = []
        with self._cv:
            if self._closed:
                return
            held = _Held(frame, self._clock(), self._generations.get(camera, 0))
            if camera not in self.detected:
                if camera in self._latest:
                    dropped.append("busy")
                self._latest[camera] = held
            else:
                ring = self._rings[camera]
                ring.append(held)
                while len(ring) > self.ring_size:
                    held = ring.pop(0)
                    dropped.append("busy" if held.regions is not None else "no_detections")
            self._cv.notify_all()
        for reason in dropped:
            self._on_drop(camera, reason)

    def put_detections(self, camera: str, stamp_ns: int, regions: list) -> None:
        """The regions a detector found on the frame stamped ``stamp_ns``."""
        with self._cv:
            if self._closed or camera not in self.detected:
                return
            sets = self._detections[camera]
            sets[stamp_ns] = regions
            while len(sets) > self.ring_size:
                sets.popitem(last=False)
                self._count(self.stats.detections_unmatched, camera)
            self._cv.notify_all()

    # ---- the worker's side ----------------------------------------------------------------
    def take(self, timeout: float) -> list[ReadyFrame]:
        """Every frame ready now (waiting up to ``timeout`` s for one); [] once closed."""
        with self._cv:
            ready, dropped = self._collect()
            if not ready and not self._closed:
                self._cv.wait(timeout)
                ready, more = self._collect()
                dropped += more
            if self._closed:
                ready = []
        for camera, reason in dropped:
            self._on_drop(camera, reason)
        return ready

    def flush(self, camera: str, reason: str) -> int:
        """Drop every frame held for ``camera`` and start its next generation (a clock jump:
        frames put from now on carry the new generation); returns how many were dropped."""
        with self._cv:
            self._generations[camera] = self._generations.get(camera, 0) + 1
            n = int(self._latest.pop(camera, None) is not None)
            n += len(self._rings.get(camera, []))
            if camera in self._rings:
                self._rings[camera] = []
                self._detections[camera].clear()
        for _ in range(n):
            self._on_drop(camera, reason)
        return n

    def generation(self, camera: str) -> int:
        with self._cv:
            return self._generations.get(camera, 0)

    def pending(self) -> int:
        with self._cv:
            return len(self._latest) + sum(len(r) for r in self._rings.values())

    def wake(self) -> None:
        with self._cv:
            self._cv.notify_all()

    def close(self) -> dict[str, int]:
        """Stop handing out frames; returns how many each camera still held (not yet dropped)."""
        with self._cv:
            self._closed = True
            held = {c: 1 for c in self._latest}
            held.update({c: len(r) for c, r in self._rings.items() if r})
            self._latest.clear()
            for camera in self._rings:
                self._rings[camera] = []
                self._detections[camera].clear()
            self._cv.notify_all()
        return held

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- pairing (under the lock) ---------------------------------------------------------
    def _collect(self) -> tuple[list[ReadyFrame], list[tuple[str, str]]]:
        ready = [ReadyFrame(c, h.frame, None, h.generation) for c, h in self._latest.items()]
        self._latest = {}
        dropped: list[tuple[str, str]] = []
        now = self._clock()
        for camera, ring in self._rings.items():
            self._pair(camera, ring)
            chosen = self._newest_paired(camera, ring, dropped)
            if chosen is not None:
                ready.append(chosen)
            while ring and now - ring[0].arrived_ns >= self._wait_ns and ring[0].regions is None:
                ring.pop(0)
                dropped.append((camera, "no_detections"))
        return ready, dropped

    def _pair(self, camera: str, ring: list[_Held]) -> None:
        sets = self._detections[camera]
        for stamp in list(sets):
            held = self._match(ring, stamp)
            if held is not None:
                held.regions = sets.pop(stamp)
                self._count(self.stats.detections_paired, camera)
            elif not ring or stamp < ring[0].frame.stamp_ns - self._tolerance_ns:
                del sets[stamp]  # its frame already left the ring (or never came)
                self._count(self.stats.detections_unmatched, camera)

    def _match(self, ring: list[_Held], stamp: int) -> _Held | None:
        best, best_gap = None, self._tolerance_ns + 1
        for held in ring:
            gap = abs(held.frame.stamp_ns - stamp)
            if gap < best_gap and held.regions is None:
                best, best_gap = held, gap
        return best

    def _newest_paired(self, camera: str, ring: list[_Held], dropped: list) -> ReadyFrame | None:
        index = max((i for i, h in enumerate(ring) if h.regions is not None), default=None)
        if index is None:
            return None
        for held in ring[:index]:
            dropped.append((camera, "busy" if held.regions is not None else "no_detections"))
        chosen = ring[index]
        del ring[: index + 1]
        return ReadyFrame(camera, chosen.frame, chosen.regions, chosen.generation)

    @staticmethod
    def _count(counts: dict[str, int], camera: str) -> None:
        counts[camera] = counts.get(camera, 0) + 1
