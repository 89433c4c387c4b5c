"""The distribution of detection latency per client: more percentiles than the table,
a coarse histogram, and a breakdown per model (issue 18 item 4: where the adaptive
scheduler gains or loses against fixed-interval polling)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .stats import percentile

QUANTILES = (50, 75, 90, 95, 99)
#: upper bounds of the histogram's bins (seconds); the last bin is everything above
HISTOGRAM_EDGES = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 20.0)


def detection_distribution(
    latency: Mapping[str, float], model_of: Mapping[str, str]
) -> dict[str, Any]:
    """Percentiles, histogram and per-model percentiles of ``latency`` (seconds by
    prediction id); ``model_of`` maps an id's workload index (its last five
    characters) to the model it ran."""
    values = list(latency.values())
    by_model: dict[str, list[float]] = {}
    for pid, seconds in latency.items():
        by_model.setdefault(model_of.get(pid[-5:], "?"), []).append(seconds)
    return {
        "percentiles": _percentiles(values),
        "histogram": _histogram(values),
        "by_model": {m: _percentiles(v) for m, v in sorted(by_model.items())},
    }


def _percentiles(values: list[float]) -> dict[str, float | int | None]:
    out: dict[str, float | int | None] = {"count": len(values)}
    for q in QUANTILES:
        found = percentile(values, q)
        out[f"p{q}"] = None if found is None else round(found, 3)
    return out


def _histogram(values: list[float]) -> list[list[Any]]:
    """``[upper bound or None, count]`` per bin."""
    counts = [0] * (len(HISTOGRAM_EDGES) + 1)
    for v in values:
        counts[next((i for i, e in enumerate(HISTOGRAM_EDGES) if v < e), -1)] += 1
    bounds: list[float | None] = [*HISTOGRAM_EDGES, None]
    return [[b, n] for b, n in zip(bounds, counts, strict=True)]


def print_detection(name: str, d: Mapping[str, Any]) -> None:
    """Three lines per client: percentiles, histogram (share of predictions per bin),
    and p50/p95 per model."""

    def f(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    p = d["percentiles"]
    total = p["count"] or 1
    print(
        f"  {name}: detection "
        + " ".join(f"p{q} {f(p[f'p{q}'])}" for q in QUANTILES)
        + f" s ({p['count']} predictions)"
    )
    low = 0.0
    bins = []
    for bound, count in d["histogram"]:
        label = f"{low:g}-{bound:g}" if bound is not None else f">{low:g}"
        bins.append(f"{label} {100 * count / total:.0f}%")
        low = bound if bound is not None else low
    print("    histogram (s): " + ", ".join(bins))
    print(
        "    by model: "
        + "; ".join(
            f"{model.rsplit('/', 1)[-1]} p50 {f(m['p50'])} p95 {f(m['p95'])} p99 {f(m['p99'])}"
            for model, m in d["by_model"].items()
        )
    )
