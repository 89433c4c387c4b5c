"""Percentiles and distributions, in seconds and in milliseconds."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of ``values`` (0 < q <= 100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary(values: list[float]) -> dict[str, float | int | None]:
    """Count, median, p90, p99, max and min of milliseconds."""

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 1)

    return {
        "count": len(values),
        "median_ms": r(percentile(values, 50)),
        "p90_ms": r(percentile(values, 90)),
        "p99_ms": r(percentile(values, 99)),
        "max_ms": r(max(values) if values else None),
        "min_ms": r(min(values) if values else None),
    }


def dist(values: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean and nearest-rank percentiles of seconds."""

    def r(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "count": len(values),
        "mean": r(sum(values) / len(values)) if values else None,
        "p50": r(percentile(list(values), 50)),
        "p95": r(percentile(list(values), 95)),
        "p99": r(percentile(list(values), 99)),
        "max": r(max(values)) if values else None,
    }


def dist_ms(values_ms: Sequence[float]) -> dict[str, float | int | None]:
    """``dist`` of milliseconds, in milliseconds."""
    return {
        k: (v if k == "count" or v is None else round(v * 1000, 1))
        for k, v in dist([x / 1000 for x in values_ms]).items()
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)
