"""The soak's figures: the RSS slope after warm-up (the node run itself is `make soak`)."""

from __future__ import annotations

import math

from bench.soak import CONCEPT_LISTS, HZ, PARAM_SCHEDULE, Schedule, rss_slope_mb_per_min


def test_rss_slope_ignores_the_warm_up_and_is_in_mb_per_minute():
    mb = 2**20
    # 30 s of warm-up growing 100 MB, then 120 s growing 2 MB per minute.
    samples = [(t, (500 + 100 * t / 30) * mb) for t in range(0, 30, 2)]
    samples += [(30 + t, (600 + 2 * t / 60) * mb) for t in range(0, 121, 2)]
    assert math.isclose(rss_slope_mb_per_min(samples), 2.0, rel_tol=1e-6)
    flat = [(t, 700 * mb) for t in range(0, 60, 2)]
    assert abs(rss_slope_mb_per_min(flat)) < 1e-9
    assert math.isnan(rss_slope_mb_per_min(flat[:2]))
    # A warm-up given in seconds: the 100 MB step before it does not count.
    assert math.isclose(rss_slope_mb_per_min(samples, fit_from_s=30.0), 2.0, rel_tol=1e-6)
    assert rss_slope_mb_per_min(samples, fit_from_s=10.0) > 10.0  # the step would count


def _applied(schedule: Schedule, period_s: float, seconds: float) -> list[tuple[float, int]]:
    due = ((k / HZ, schedule.due(k, period_s)) for k in range(int(seconds * HZ)))
    return [(t, n) for t, n in due if n is not None]


def test_every_list_and_setting_comes_twice_and_the_fit_starts_after_the_first_pass():
    for minutes in (1, 10):
        seconds = 60.0 * minutes
        schedule = Schedule(seconds)
        warmup = schedule.warmup_s(burst_end_s=0.2 * seconds + 1.0)
        for period, count in ((schedule.concept_period_s, len(CONCEPT_LISTS)),
                              (schedule.param_period_s, len(PARAM_SCHEDULE))):
            applied = _applied(schedule, period, seconds)
            first_pass_done = applied[count - 1][0]
            # The warm-up covers the first pass; the fitted part sees every change again.
            assert first_pass_done < warmup, (minutes, period, first_pass_done, warmup)
            again = {n % count for t, n in applied if t >= warmup}
            assert again == set(range(count)), (minutes, period, again)
        assert warmup >= 0.2 * seconds + 3.0 and seconds - warmup >= 0.6 * seconds
    # The ten-minute run keeps its documented periods (every 10 s and 7 s).
    ten = Schedule(600.0)
    assert (ten.concept_period_s, ten.param_period_s) == (10.0, 7.0)
