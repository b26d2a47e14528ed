"""Input checks and meters for the perception front end: reject reasons, stamp guard, counters.

ROS-free (times are integer nanoseconds passed in by the caller), so every rule is tested without
a node or a clock. The node owns one StampGuard per camera and shares one DropCounter, RateMeter
and LatencyStats between its callbacks and its worker thread.
"""

from __future__ import annotations

import math
import threading
from collections import deque

# Stable reason codes: they appear in diagnostics and in tests, so never rename one.
REJECT_REASONS: tuple[str, ...] = (
    "unsupported_encoding",  # unknown encoding, or a compressed format that is not jpeg/png
    "bad_size",  # zero/negative sizes, or odd sizes an encoding cannot have (yuv422 width)
    "step_mismatch",  # step < width * bytes per pixel, or len(data) != step * height
    "too_large",  # more pixels than max_pixels
    "corrupt_compressed",  # jpeg/png data that does not decode
    "stale_stamp",  # older than now - max_age (or negative)
    "future_stamp",  # later than now + max_future
    "out_of_order",  # not after the last accepted stamp of the camera
    "clock_jump",  # the clock went backwards: the window was cleared
    "no_cv_bridge",  # a rarer encoding (Bayer, YUV) that only cv_bridge converts, not installed
    "busy",  # replaced by a newer frame before the worker got to it (latest-frame policy)
    "no_detections",  # detections were required but none matched the frame's stamp
    "inference_error",  # the backend or predictor failed on this frame (reported, not fatal)
    "bad_message",  # a stored message that could not be deserialised (offline runner)
    "inactive",  # still waiting for inference when the node deactivated or shut down
)

# Reasons that are the expected outcome of the latest-frame policy, not a fault: counted and
# reported, but they do not turn diagnostics to WARN (a 30 Hz camera on a 10 Hz model would
# otherwise WARN forever).
EXPECTED_REASONS: frozenset[str] = frozenset({"busy", "inactive"})

# A sane default for the max_pixels limit: 4096 x 4096 (a 16 MP sensor still fits).
DEFAULT_MAX_PIXELS = 4096 * 4096
_NS = 1_000_000_000


class FrameRejected(ValueError):
    """A frame refused before inference; ``reason`` is one of REJECT_REASONS."""

    def __init__(self, reason: str, detail: str):
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {reason!r}; expected one of {REJECT_REASONS}")
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.detail} [{self.reason}]"


def check_reason(reason: str) -> str:
    """Return ``reason`` or raise ValueError when it is not a known reason code."""
    if reason not in REJECT_REASONS:
        raise ValueError(f"unknown reject reason {reason!r}; expected one of {REJECT_REASONS}")
    return reason


class StampGuard:
    """Per-camera stamp checks: stale, future-dated, out-of-order, and backwards clock jumps.

    ``max_age_s`` = 0 disables the stale check and ``max_future_s`` = 0 the future check.
    A ``now_ns`` <= 0 (sim time before the first /clock message) skips both age checks.
    """

    def __init__(self, max_age_s: float, max_future_s: float, jump_tolerance_s: float = 0.1):
        for name, value in (
            ("max_age_s", max_age_s),
            ("max_future_s", max_future_s),
            ("jump_tolerance_s", jump_tolerance_s),
        ):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        self.max_age_ns = int(max_age_s * _NS)
        self.max_future_ns = int(max_future_s * _NS)
        self.jump_tolerance_ns = int(jump_tolerance_s * _NS)
        self._lock = threading.Lock()
        self._last_stamp_ns: int | None = None
        self._last_now_ns: int | None = None

    @property
    def last_stamp_ns(self) -> int | None:
        """Stamp of the last accepted frame (None before the first or after a reset)."""
        return self._last_stamp_ns

    def check(self, stamp_ns: int, now_ns: int) -> None:
        """Accept ``stamp_ns`` (it becomes the last accepted stamp) or raise FrameRejected."""
        with self._lock:
            self._check_age(stamp_ns, now_ns)
            last = self._last_stamp_ns
            if last is not None and stamp_ns <= last:
                raise FrameRejected(
                    "out_of_order",
                    f"stamp {_fmt(stamp_ns)} is not after the previous frame's {_fmt(last)}",
                )
            self._last_stamp_ns = stamp_ns

    def _check_age(self, stamp_ns: int, now_ns: int) -> None:
        if stamp_ns < 0:
            raise FrameRejected("stale_stamp", f"stamp {stamp_ns} ns is negative")
        if now_ns <= 0:
            return
        if self.max_future_ns and stamp_ns > now_ns + self.max_future_ns:
            ahead = (stamp_ns - now_ns) / _NS
            raise FrameRejected(
                "future_stamp",
                f"stamp {_fmt(stamp_ns)} is {ahead:.3f} s ahead of the clock "
                f"(max_future {self.max_future_ns / _NS:g} s)",
            )
        if self.max_age_ns and stamp_ns < now_ns - self.max_age_ns:
            age = (now_ns - stamp_ns) / _NS
            raise FrameRejected(
                "stale_stamp",
                f"stamp {_fmt(stamp_ns)} is {age:.3f} s old (max_age {self.max_age_ns / _NS:g} s)",
            )

    def set_limits(self, max_age_s: float, max_future_s: float) -> None:
        """Change the stale and future limits (live parameters); applies to the next frame."""
        checked = StampGuard(max_age_s, max_future_s)  # the same validation as at start
        with self._lock:
            self.max_age_ns, self.max_future_ns = checked.max_age_ns, checked.max_future_ns

    def observe_clock(self, now_ns: int) -> bool:
        """Record the clock; True (and a reset) when it jumped backwards beyond the tolerance.

        A backwards jump is a sim-time reset or a looping bag: the caller clears the window and
        counts it as ``clock_jump``.
        """
        with self._lock:
            previous, self._last_now_ns = self._last_now_ns, now_ns
            if previous is None or now_ns >= previous - self.jump_tolerance_ns:
                return False
            self._last_stamp_ns = None
            return True

    def reset(self) -> None:
        """Forget the last stamp and clock reading."""
        with self._lock:
            self._last_stamp_ns = None
            self._last_now_ns = None


def _fmt(ns: int) -> str:
    return f"{ns // _NS}.{ns % _NS:09d} s" if ns >= 0 else f"{ns} ns"


class DropCounter:
    """Thread-safe drop counts per (camera, reason), with a per-reporting-period view."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._period_base: dict[tuple[str, str], int] = {}

    def add(self, camera: str, reason: str, n: int = 1) -> None:
        check_reason(reason)
        if n < 0:
            raise ValueError(f"drop count must be >= 0, got {n}")
        with self._lock:
            key = (camera, reason)
            self._counts[key] = self._counts.get(key, 0) + n

    def count(self, camera: str | None = None, reason: str | None = None) -> int:
        """Total drops, optionally of one camera and/or one reason."""
        with self._lock:
            return sum(
                n
                for (cam, why), n in self._counts.items()
                if (camera is None or cam == camera) and (reason is None or why == reason)
            )

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)

    def by_reason(self, camera: str | None = None) -> dict[str, int]:
        """{reason: count} of one camera (or all cameras), non-zero entries only."""
        return drops_by_reason(self.snapshot(), camera)

    def period(self) -> dict[tuple[str, str], int]:
        """Drops since the previous call (the reporting period), non-zero entries only."""
        with self._lock:
            delta = {
                key: n - self._period_base.get(key, 0)
                for key, n in self._counts.items()
                if n != self._period_base.get(key, 0)
            }
            self._period_base = dict(self._counts)
        return delta

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
            self._period_base.clear()


def drops_by_reason(counts: dict[tuple[str, str], int], camera: str | None = None) -> dict:
    """Fold a snapshot or period of a DropCounter into {reason: count} for one camera or all."""
    out: dict[str, int] = {}
    for (cam, reason), n in counts.items():
        if n and (camera is None or cam == camera):
            out[reason] = out.get(reason, 0) + n
    return out


class RateMeter:
    """Input rate per camera over a sliding time window (thread-safe; times passed in)."""

    def __init__(self, window_s: float = 2.0, max_events: int = 10_000):
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_ns = int(window_s * _NS)
        self._max_events = max_events
        self._lock = threading.Lock()
        self._events: dict[str, deque[int]] = {}

    def tick(self, camera: str, now_ns: int) -> None:
        """Record one frame of ``camera`` arriving at ``now_ns``."""
        with self._lock:
            events = self._events.setdefault(camera, deque(maxlen=self._max_events))
            if events and now_ns < events[-1]:
                events.clear()  # the clock went backwards: old arrivals say nothing any more
            events.append(now_ns)
            self._prune(events, now_ns)

    def rate(self, camera: str, now_ns: int) -> float:
        """Frames per second: (arrivals in the window - 1) / time since the first of them.

        Exact for a steady stream at ``now_ns`` = its newest arrival; decays to 0 when the
        stream stops (fewer than 2 arrivals left in the window).
        """
        with self._lock:
            events = self._events.get(camera)
            if not events:
                return 0.0
            self._prune(events, now_ns)
            if len(events) < 2 or now_ns <= events[0]:
                return 0.0
            return (len(events) - 1) * _NS / (now_ns - events[0])

    def rates(self, now_ns: int) -> dict[str, float]:
        with self._lock:
            cameras = list(self._events)
        return {camera: self.rate(camera, now_ns) for camera in cameras}

    def _prune(self, events: deque[int], now_ns: int) -> None:
        while events and events[0] < now_ns - self.window_ns:
            events.popleft()


class LatencyStats:
    """Ring buffer of the last ``size`` latencies in ms -> p50 / p99 / mean (NaN when empty)."""

    def __init__(self, size: int = 1000):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self._lock = threading.Lock()
        self._values: deque[float] = deque(maxlen=size)

    def add(self, ms: float) -> None:
        if not math.isfinite(ms):
            raise ValueError(f"latency must be finite, got {ms}")
        with self._lock:
            self._values.append(float(ms))

    def __len__(self) -> int:
        return len(self._values)

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile ``q`` in [0, 100] of the buffered values."""
        if not 0 <= q <= 100:
            raise ValueError(f"percentile must be in [0, 100], got {q}")
        with self._lock:
            values = sorted(self._values)
        if not values:
            return math.nan
        rank = max(1, math.ceil(q / 100 * len(values)))
        return values[rank - 1]

    def p50(self) -> float:
        return self.percentile(50)

    def p99(self) -> float:
        return self.percentile(99)

    def mean(self) -> float:
        with self._lock:
            values = list(self._values)
        return sum(values) / len(values) if values else math.nan

    def max(self) -> float:
        with self._lock:
            return max(self._values, default=math.nan)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
