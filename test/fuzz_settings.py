"""The hypothesis settings every property test shares: reproducible in CI (the same examples
every run, nothing written to a .hypothesis database), no per-example deadline."""

from __future__ import annotations

from hypothesis import HealthCheck, settings


def fuzz(max_examples: int = 200) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
