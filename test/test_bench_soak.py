"""The soak's figures: the RSS slope after warm-up (the node run itself is `make soak`)."""

from __future__ import annotations

import math

from bench.soak import rss_slope_mb_per_min


def test_rss_slope_ignores_the_warm_up_and_is_in_mb_per_minute():
    mb = 2**20
    # 30 s of warm-up growing 100 MB, then 120 s growing 2 MB per minute.
    samples = [(t, (500 + 100 * t / 30) * mb) for t in range(0, 30, 2)]
    samples += [(30 + t, (600 + 2 * t / 60) * mb) for t in range(0, 121, 2)]
    assert math.isclose(rss_slope_mb_per_min(samples), 2.0, rel_tol=1e-6)
    flat = [(t, 700 * mb) for t in range(0, 60, 2)]
    assert abs(rss_slope_mb_per_min(flat)) < 1e-9
    assert math.isnan(rss_slope_mb_per_min(flat[:2]))
