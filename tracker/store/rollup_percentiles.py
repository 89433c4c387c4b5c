"""Percentiles from the rollup's buckets (``tracker.store.rollup``): counts of values by
bucket, read per group, and percentile_cont over them, as the views compute it from the
rows (within ``rollup.BUCKET_ERROR``: a bucket stands for the values in it)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(buckets: Sequence[tuple[float, int]], p: float) -> float | None:
    """percentile_cont(p) of the values counted in ``(bucket, n)`` pairs (sorted by
    bucket): the value at rank p * (N - 1), interpolated between its neighbours."""
    total = sum(n for _, n in buckets)
    if total <= 0:
        return None
    position = p * (total - 1)
    low = math.floor(position)
    frac = position - low
    low_value = high_value = None
    seen = 0
    for value, n in buckets:
        if n <= 0:
            continue
        if low_value is None and low < seen + n:
            low_value = value
        if low + 1 < seen + n or (low + 1 >= total and low_value is not None):
            high_value = value
            break
        seen += n
    assert low_value is not None
    if high_value is None or frac == 0:
        return low_value
    return low_value + (high_value - low_value) * frac


def group_buckets(
    rows: Iterable[tuple[Any, int, float, int]],
) -> dict[tuple[Any, int], list[tuple[float, int]]]:
    """``(key, metric, bucket, n)`` rows -> ``{(key, metric): [(bucket, n), ...]}``
    sorted by bucket."""
    grouped: dict[tuple[Any, int], dict[float, int]] = {}
    for key, metric, bucket, n in rows:
        counts = grouped.setdefault((key, metric), {})
        counts[float(bucket)] = counts.get(float(bucket), 0) + int(n)
    return {k: sorted(counts.items()) for k, counts in grouped.items()}
