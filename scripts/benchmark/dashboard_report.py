"""The dashboard benchmark's printed report: a table per engine (each page's round trip
and server time, median and p95, PASS or FAIL against the goal) and the query plans."""

from __future__ import annotations

from typing import Any

GOAL_MS = 200.0


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(
        f"\ndashboard benchmark, {report['date']}: {m['nproc']} CPUs ({m.get('cpu', '?')}),"
        f" {m.get('memory_gb', '?')} GB, PostgreSQL {m.get('postgresql', '-')}, SQLite"
        f" {m['sqlite']}; load average {m['loadavg_start']} at start, {m['loadavg_end']} at"
        f" end; {report['seconds']:.0f} s"
    )
    print("rtt: the HTTP round trip on loopback (about the server's time there); server:")
    print("its Server-Timing; bg: requests answered while the overview's numbers were read")
    print("in the background; alone: server time of the others (ms);")
    print(f"PASS: server p95 < {GOAL_MS:g} ms")
    for r in report["results"]:
        rows = [*r["pages"], *r["batch"]["pages"], *r["batch"].get("index_trial_pages", [])]
        print(
            f"\n{r['engine']}: {int(report['settings']['predictions']):,} predictions"
            f" (+{r['batch']['rows']:,} at one time for the batch: rows), {r['artifacts']:,}"
            f" files, {r['detailed']['dead_deliveries']} dead deliveries;"
            f" {r['database_bytes'] / 1e9:.2f} GB, filled in {r['fill_seconds']} s;"
            f" first overview after the start {r['cold_first_overview_ms']} ms;"
            f" load {r['loadavg_start']} -> {r['loadavg_end']}"
        )
        print(
            f"{'page':<52}{'n':>4}{'rtt p50':>9}{'p95':>8}{'server p50':>12}{'p95':>8}"
            f"{'max':>8}{'bg':>4}{'alone p50':>11}{'p95':>8}{'KB':>5}  verdict"
        )
        for p in rows:
            print(
                f"{p['page']:<52}{p['requests']:>4}{p['rtt_median_ms']:>9.1f}"
                f"{p['rtt_p95_ms']:>8.1f}{p['server_median_ms']:>12.1f}{p['server_p95_ms']:>8.1f}"
                f"{p['server_max_ms']:>8.1f}{p['beside_overview_read']:>4}"
                f"{_ms(p['server_median_alone_ms']):>11}{_ms(p['server_p95_alone_ms']):>8}"
                f"{p['bytes_median'] / 1024:>5.0f}  {'PASS' if p['pass'] else 'FAIL'}"
            )
        print_plans(r["engine"], r["plans"])
        print_plans(r["engine"], r["batch"]["plans"])
        print_plans(r["engine"], r["batch"].get("index_trial_plans", []))


def print_plans(engine: str, plans: list[dict[str, Any]]) -> None:
    if not plans:
        return
    what = (
        "EXPLAIN QUERY PLAN, ms best of 3" if engine == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS)"
    )
    print(f"\nquery plans, {engine} ({what})")
    for op in plans:
        print(f"\n  {op['operation']}")
        for st in op["statements"]:
            print(f"    -- {st['ms']} ms: {st['sql'][:160]}{'...' if len(st['sql']) > 160 else ''}")
            for line in st["plan"]:
                print(f"      {line}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
