"""The CPU-cost model of scripts/bench_daemons.py: from the median CPU seconds per
1,000 polls of the daemons (d) and of the PostgreSQL server (p) at each daemon count n,

- the polls per second one PostgreSQL core sustains: 1000 / p(n);
- the PostgreSQL cores one busy daemon needs (a daemon is one Python process, at most
  about one core): p(n) / d(n);
- how p and d grow with n (least-squares lines over the measured counts: contention
  shows as p rising);
- the daemon count at which PostgreSQL's CPU per poll reaches the daemons' (the lines
  cross), and how many one-core daemons a PostgreSQL server of C cores can feed before
  its CPU is the limit: the largest n with n * p(n) / d(n) <= C;
- the same, pessimistic: every daemon keeps the one-daemon cost d(1) (on a machine
  with a core per daemon its batches stay as large as alone; on 2 CPUs d rises with n
  because starved daemons batch less), while p grows as measured.

Assumes CPU per poll is what limits both sides (no disk or network bound; the
database fits in shared_buffers), that the lines extend beyond the counts measured
(a straight line through 1, 2 and 4 daemons), and that on a bigger machine every
daemon has a core of its own while PostgreSQL has C."""

from __future__ import annotations

from typing import Any

#: PostgreSQL server sizes (cores) the model is evaluated for
PG_CORES = (2, 4, 8, 16)


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares intercept and slope (slope 0 for one point)."""
    if len(xs) < 2:
        return ys[0], 0.0
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return my - slope * mx, slope


def model(
    rows: list[dict[str, Any]], key: str = "postgres_ours_cpu_per_1000_polls"
) -> dict[str, Any]:
    """The model from the medians of one workload (``key``: which PostgreSQL figure)."""
    rows = sorted(
        (r for r in rows if r.get(key) and r.get("daemon_cpu_per_1000_polls")),
        key=lambda r: r["daemons"],
    )
    if not rows:
        return {}
    ns = [float(r["daemons"]) for r in rows]
    ds = [r["daemon_cpu_per_1000_polls"] for r in rows]
    ps = [r[key] for r in rows]
    d0, d_slope = _fit(ns, ds)
    p0, p_slope = _fit(ns, ps)

    def d(n: float) -> float:
        return d0 + d_slope * n

    def p(n: float) -> float:
        return max(1e-9, p0 + p_slope * n)

    crossing = None
    if p_slope > d_slope:
        crossing = round((d0 - p0) / (p_slope - d_slope), 1)
    # Pessimistic: every daemon keeps the one-daemon cost (a core of its own, its batches
    # as large as alone), PostgreSQL's cost grows as measured.
    d1 = ds[0]
    crossing_fixed = round((d1 - p0) / p_slope, 1) if p_slope > 0 else None
    return {
        "pg_figure": key,
        "per_count": [
            {
                "daemons": r["daemons"],
                "daemon_ms_per_poll": r["daemon_cpu_per_1000_polls"],
                "pg_ms_per_poll": r[key],
                "polls_per_second_per_pg_core": round(1000 / r[key]),
                "pg_cores_per_busy_daemon": round(r[key] / r["daemon_cpu_per_1000_polls"], 3),
            }
            for r in rows
        ],
        "daemon_ms_per_poll_line": [round(d0, 4), round(d_slope, 4)],
        "pg_ms_per_poll_line": [round(p0, 4), round(p_slope, 4)],
        "pg_growth_percent_first_to_last": round(100 * (ps[-1] / ps[0] - 1), 1),
        "daemon_growth_percent_first_to_last": round(100 * (ds[-1] / ds[0] - 1), 1),
        "daemons_where_pg_cpu_per_poll_reaches_the_daemons": crossing,
        "busy_daemons_fed_by_pg_cores": _feeds(d, p),
        "pessimistic_daemon_ms_per_poll": d1,
        "pessimistic_daemons_where_pg_reaches_the_daemons": crossing_fixed,
        "pessimistic_busy_daemons_fed_by_pg_cores": _feeds(lambda _n: d1, p),
    }


def _feeds(d: Any, p: Any) -> dict[str, int | None]:
    """Per PostgreSQL size C: the largest n with n * p(n) / d(n) <= C."""
    feeds: dict[str, int | None] = {}
    for cores in PG_CORES:
        n = 0
        while n < 10_000 and (n + 1) * p(n + 1) / d(n + 1) <= cores:
            n += 1
        feeds[str(cores)] = n if n < 10_000 else None
    return feeds


def print_model(workload: str, m: dict[str, Any]) -> None:
    if not m:
        return
    print(f"\nModel ({workload}; PostgreSQL = {m['pg_figure']}):")
    for c in m["per_count"]:
        print(
            f"  {c['daemons']} daemon(s): daemon {c['daemon_ms_per_poll']} ms/poll,"
            f" PostgreSQL {c['pg_ms_per_poll']} ms/poll ->"
            f" {c['polls_per_second_per_pg_core']} polls/s per PostgreSQL core,"
            f" {c['pg_cores_per_busy_daemon']} PostgreSQL cores per busy daemon"
        )
    d0, ds = m["daemon_ms_per_poll_line"]
    p0, ps = m["pg_ms_per_poll_line"]
    print(
        f"  lines: daemon {d0} + {ds} n ms/poll, PostgreSQL {p0} + {ps} n ms/poll"
        f" (1 -> last count: daemon {m['daemon_growth_percent_first_to_last']:+} %,"
        f" PostgreSQL {m['pg_growth_percent_first_to_last']:+} %)"
    )
    crossing = m["daemons_where_pg_cpu_per_poll_reaches_the_daemons"]
    print(
        "  PostgreSQL's CPU per poll reaches the daemons' at "
        + (f"n = {crossing}" if crossing is not None else "no n (its line does not rise faster)")
    )
    feeds = ", ".join(f"{c} cores: {n}" for c, n in m["busy_daemons_fed_by_pg_cores"].items())
    print(f"  busy daemons a PostgreSQL server feeds before its CPU is the limit: {feeds}")
    fixed = m["pessimistic_daemons_where_pg_reaches_the_daemons"]
    feeds = ", ".join(
        f"{c} cores: {n}" for c, n in m["pessimistic_busy_daemons_fed_by_pg_cores"].items()
    )
    print(
        f"  pessimistic (every daemon at the 1-daemon {m['pessimistic_daemon_ms_per_poll']}"
        f" ms/poll, PostgreSQL's line as measured): PostgreSQL's CPU per poll reaches"
        f" the daemons' at n = {fixed}; busy daemons fed: {feeds}"
    )
