"""A circuit breaker for the LLM endpoint: fail fast while it is down, probe for recovery.

closed: calls go through; ``threshold`` consecutive failures open it.
open: calls are refused until ``reset_s`` has passed; then it is half-open.
half-open: exactly one probe call goes through; success closes it, failure opens it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """Thread-safe consecutive-failure breaker with a half-open probe."""

    def __init__(
        self, threshold: int = 3, reset_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ):
        if threshold < 1 or reset_s < 0:
            raise ValueError("threshold must be >= 1 and reset_s >= 0")
        self.threshold, self.reset_s, self._clock = int(threshold), float(reset_s), clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    @property
    def consecutive_failures(self) -> int:
        with self._lock:
            return self._failures

    def _state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self._probing or self._clock() - self._opened_at >= self.reset_s:
            return HALF_OPEN
        return OPEN

    def acquire(self) -> str | None:
        """The state a call may proceed in (closed or half_open), or None when refused."""
        with self._lock:
            state = self._state()
            if state == OPEN or (state == HALF_OPEN and self._probing):
                return None  # one probe at a time: the others fail fast
            if state == HALF_OPEN:
                self._probing = True
            return state

    def seconds_until_probe(self) -> float:
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.reset_s - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._probing = 0, None, False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._probing or self._failures >= self.threshold:
                self._opened_at = self._clock()  # (re)open: the next probe waits reset_s again
            self._probing = False
