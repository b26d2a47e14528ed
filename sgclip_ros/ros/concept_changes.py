"""Concept-list changes as jobs for the inference thread: deduplicated and rate-limited.

A change costs one text encode. It runs on the worker thread between batches, never on the
executor, so image callbacks and diagnostics keep flowing while it encodes. A request equal to
the active (or already pending) lists costs nothing; a flood beyond the token bucket is refused
and counted. No rclpy here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sgclip_ros.core.concepts import ConceptSet

# A peer may change concepts 20 times back to back, then about 2 times a second.
DEFAULT_BURST = 20
DEFAULT_RATE_PER_S = 2.0


@dataclass
class ConceptJob:
    """One requested change; ``done`` is set once the lists are active (or failed)."""

    concepts: ConceptSet
    source: str
    done: threading.Event = field(default_factory=threading.Event)
    error: str = ""

    @property
    def concepts_id(self) -> str:
        return self.concepts.concepts_id


@dataclass
class ConceptChangeCounts:
    requested: int = 0
    applied: int = 0
    identical: int = 0  # equal to the active or pending lists: answered without an encode
    rate_limited: int = 0
    failed: int = 0


class TokenBucket:
    """``burst`` tokens, refilled at ``rate_per_s``; ``take`` spends one when there is one."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic):
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got {rate_per_s}, {burst}")
        self.rate, self.burst, self._clock = rate_per_s, burst, clock
        self._tokens, self._at = float(burst), clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class ConceptChanges:
    """Admission of concept changes: identical ones are free, a flood is refused."""

    def __init__(self, bucket: TokenBucket | None = None):
        self.counts = ConceptChangeCounts()
        self._bucket = bucket or TokenBucket(DEFAULT_RATE_PER_S, DEFAULT_BURST)
        self._lock = threading.Lock()
        self._pending: ConceptJob | None = None

    def request(
        self, concepts: ConceptSet, source: str, active_id: str
    ) -> tuple[ConceptJob, bool]:
        """(job, True) for a new job to run; (job, False) for one already pending or done for
        these lists (no encode); raises RateLimited on a flood."""
        with self._lock:
            self.counts.requested += 1
            pending = self._pending
            if pending is not None and not pending.done.is_set():
                if pending.concepts_id == concepts.concepts_id:
                    self.counts.identical += 1
                    return pending, False
            if concepts.concepts_id == active_id and (pending is None or pending.done.is_set()):
                self.counts.identical += 1
                job = ConceptJob(concepts, source)
                job.done.set()
                return job, False
            if not self._bucket.take():
                self.counts.rate_limited += 1
                raise RateLimited(
                    f"too many concept changes: at most {self._bucket.burst} at once, then "
                    f"{self._bucket.rate:g} per second"
                )
            self._pending = ConceptJob(concepts, source)
            return self._pending, True

    def finished(self, job: ConceptJob, error: str = "") -> None:
        """Record the outcome of a job the worker ran and wake its waiters."""
        with self._lock:
            job.error = error
            if error:
                self.counts.failed += 1
            else:
                self.counts.applied += 1
        job.done.set()


class RateLimited(RuntimeError):
    """A concept change refused because a peer asked too often."""
