"""Reject reasons, the per-camera stamp guard, and the thread-safe meters (no ROS, no clock)."""

from __future__ import annotations

import math
import threading

import pytest

from sgclip_ros.core.input_checks import (
    REJECT_REASONS,
    DropCounter,
    FrameRejected,
    LatencyStats,
    RateMeter,
    StampGuard,
    drops_by_reason,
)

S = 1_000_000_000
NOW = 1_700_000_000 * S


def test_reason_codes_are_unique_and_cover_the_issue_matrix():
    assert len(set(REJECT_REASONS)) == len(REJECT_REASONS)
    required = {
        "unsupported_encoding",
        "bad_size",
        "step_mismatch",
        "too_large",
        "corrupt_compressed",
        "stale_stamp",
        "future_stamp",
        "out_of_order",
        "clock_jump",
        "no_cv_bridge",
        "busy",
    }
    assert required <= set(REJECT_REASONS)


def test_frame_rejected_carries_reason_and_detail():
    exc = FrameRejected("step_mismatch", "step 100 < width 64 * 3 bytes")
    assert isinstance(exc, ValueError)
    assert exc.reason == "step_mismatch"
    assert "step 100 < width 64 * 3 bytes" in str(exc) and "step_mismatch" in str(exc)
    with pytest.raises(ValueError, match="unknown reject reason 'typo'"):
        FrameRejected("typo", "x")


def _reason(fn, *args) -> str | None:
    try:
        fn(*args)
    except FrameRejected as exc:
        return exc.reason
    return None


def test_stamp_guard_accepts_increasing_stamps_and_rejects_repeats():
    guard = StampGuard(max_age_s=1.0, max_future_s=0.5)
    guard.check(NOW - S // 10, NOW)
    guard.check(NOW, NOW)
    assert guard.last_stamp_ns == NOW
    assert _reason(guard.check, NOW, NOW) == "out_of_order"
    assert _reason(guard.check, NOW - 1, NOW) == "out_of_order"
    # A rejected frame is not remembered: the next newer one passes.
    guard.check(NOW + 1, NOW)


def test_stamp_guard_age_limits_at_their_boundaries():
    guard = StampGuard(max_age_s=1.0, max_future_s=0.5)
    assert _reason(guard.check, NOW - S - 1, NOW) == "stale_stamp"
    assert _reason(guard.check, NOW + S // 2 + 1, NOW) == "future_stamp"
    guard.check(NOW - S, NOW)  # exactly max_age old: accepted
    guard.check(NOW + S // 2, NOW)  # exactly max_future ahead: accepted


def test_stamp_guard_messages_name_the_problem():
    guard = StampGuard(max_age_s=1.0, max_future_s=0.5)
    with pytest.raises(FrameRejected, match=r"3\.000 s old \(max_age 1 s\)"):
        guard.check(NOW - 3 * S, NOW)
    with pytest.raises(FrameRejected, match=r"2\.000 s ahead"):
        guard.check(NOW + 2 * S, NOW)
    with pytest.raises(FrameRejected, match="negative"):
        guard.check(-5, NOW)


def test_zero_limits_disable_age_checks_and_zero_clock_skips_them():
    guard = StampGuard(max_age_s=0.0, max_future_s=0.0)
    guard.check(NOW - 1000 * S, NOW)
    guard.check(NOW + 1000 * S, NOW)
    strict = StampGuard(max_age_s=1.0, max_future_s=0.5)
    strict.check(5 * S, 0)  # sim time before the first /clock: no age check
    assert _reason(strict.check, 4 * S, 0) == "out_of_order"  # order still checked


def test_invalid_guard_settings_are_refused():
    with pytest.raises(ValueError, match="max_age_s"):
        StampGuard(-1.0, 0.5)
    with pytest.raises(ValueError, match="max_future_s"):
        StampGuard(1.0, math.inf)


def test_backwards_clock_jump_resets_the_guard():
    guard = StampGuard(max_age_s=1.0, max_future_s=0.5, jump_tolerance_s=0.1)
    assert guard.observe_clock(100 * S) is False
    guard.check(100 * S, 100 * S)
    assert guard.observe_clock(100 * S + 1) is False
    assert guard.observe_clock(100 * S - S // 20) is False  # within tolerance: no jump
    assert guard.observe_clock(3 * S) is True  # sim reset / bag loop
    assert guard.last_stamp_ns is None
    guard.check(3 * S, 3 * S)  # the old, larger stamp no longer blocks new frames
    assert guard.observe_clock(4 * S) is False


def test_drop_counter_counts_per_camera_and_reason_and_periods():
    drops = DropCounter()
    drops.add("/a", "bad_size", 3)
    drops.add("/a", "busy")
    drops.add("/b", "bad_size")
    assert drops.count() == 5
    assert drops.count("/a") == 4
    assert drops.count(reason="bad_size") == 4
    assert drops.by_reason("/a") == {"bad_size": 3, "busy": 1}
    assert drops.by_reason() == {"bad_size": 4, "busy": 1}
    assert drops.period() == {("/a", "bad_size"): 3, ("/a", "busy"): 1, ("/b", "bad_size"): 1}
    assert drops.period() == {}
    drops.add("/b", "stale_stamp", 2)
    assert drops.period() == {("/b", "stale_stamp"): 2}
    assert drops_by_reason(drops.snapshot(), "/b") == {"bad_size": 1, "stale_stamp": 2}
    with pytest.raises(ValueError, match="unknown reject reason"):
        drops.add("/a", "nope")


def test_drop_counter_is_thread_safe():
    drops = DropCounter()

    def work():
        for _ in range(2000):
            drops.add("/cam", "busy")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert drops.count("/cam", "busy") == 8000


def test_rate_meter_measures_steady_rate_and_decays_when_the_stream_stops():
    meter = RateMeter(window_s=2.0)
    period = S // 30
    for k in range(90):  # 3 s of 30 Hz
        meter.tick("/a", k * period)
    last = 89 * period
    assert meter.rate("/a", last) == pytest.approx(30.0, rel=1e-6)
    assert 0 < meter.rate("/a", last + S) < 30.0
    assert meter.rate("/a", last + 3 * S) == 0.0
    assert meter.rate("/missing", last) == 0.0


def test_rate_meter_keeps_cameras_apart():
    meter = RateMeter(window_s=1.0)
    for k in range(11):
        meter.tick("/fast", k * S // 10)
        if k % 2 == 0:
            meter.tick("/slow", k * S // 10)
    rates = meter.rates(S)
    assert rates["/fast"] == pytest.approx(10.0)
    assert rates["/slow"] == pytest.approx(5.0)


def test_latency_stats_percentiles_over_a_ring_buffer():
    stats = LatencyStats(size=100)
    assert math.isnan(stats.p50()) and math.isnan(stats.mean())
    values = [float(v) for v in range(1, 201)]  # only the last 100 (101..200) stay
    for v in values:
        stats.add(v)
    kept = sorted(values[-100:])
    assert len(stats) == 100
    assert stats.p50() == kept[49]
    assert stats.p99() == kept[98]
    assert stats.mean() == pytest.approx(sum(kept) / len(kept))
    with pytest.raises(ValueError, match="finite"):
        stats.add(math.nan)
