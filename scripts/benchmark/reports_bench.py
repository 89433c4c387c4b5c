"""The reports benchmark (issue 18 item 1): every canned report of `tracker report` over
1M (and 5M) predictions, on SQLite and PostgreSQL; goal: each under 2 s.

- **The data**: the dashboard benchmark's predictions (``dashboard_fill``: 12 models,
  four final statuses, labels, run times log-normal around each model's median,
  registration times over ``--days`` days, the newest 0.2 % still active), 20,000 of
  them with transitions, logs and a delivered webhook (one in 40 dead), and a stored
  file for each that succeeded in the last day. Then ``VACUUM ANALYZE`` on PostgreSQL.
- **The reports**: each through the store call `tracker report NAME` makes (the CLI's
  ``REPORTS`` table), without a filter, then ``models``, ``status`` and ``daily`` with
  ``--since 3d`` (a registration-time bound inside an hour), ``models`` with
  ``--model`` and with ``--label`` (which always reads the rows). ``--runs`` runs each;
  the first (cold) and the median are reported, wall-clock seconds and this process's
  CPU seconds (SQLite runs in it; PostgreSQL's work is in its server).
- ``--keep`` keeps the databases and prints their URLs; ``--url`` measures an existing
  database (``--upgrade`` migrates it to the newest revision first and times that: the
  rollup's backfill), so the same rows can be measured before and after a change.

    .venv/bin/python scripts/bench_reports.py [--rows 1000000] [--engines sqlite,postgresql]
        [--runs 3] [--keep] [--url URL --upgrade] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

from tracker.cli.report import REPORTS
from tracker.store import migrate
from tracker.store.reports import ReportFilter
from tracker.store.store import Store
from tracker.timeparse import utcnow

from . import dashboard_fill as fill
from .databases import Databases, database_size, pg_create
from .harness import ROOT, engines_arg, loadavg, log, report_header, write_report

#: the goal: every report under this many seconds
GOAL_SECONDS = 2.0
DETAILED = 20_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--engines", default="sqlite,postgresql", type=engines_arg)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--url", help="measure this database instead of filling one")
    parser.add_argument("--upgrade", action="store_true", help="migrate --url to --revision first")
    parser.add_argument("--revision", default="head", help="migrate new databases to this")
    parser.add_argument("--workdir", type=Path, help="where SQLite files go (with --keep)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench-results" / "reports.json")
    return parser.parse_args(argv)


def fill_database(url: str, rows: int, days: float, seed: int) -> dict[str, Any]:
    t0 = time.monotonic()
    detailed = min(DETAILED, rows // 10)
    fill.fill_detailed(url, detailed, seed)
    fill.fill_bulk(url, rows - detailed, days=days, active_share=0.002, seed=seed)
    files = fill.add_artifacts(url, since=utcnow() - timedelta(days=1))
    if url.startswith("postgresql"):
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
    return {"rows": rows, "files": files, "fill_seconds": round(time.monotonic() - t0, 1)}


def cases(store: Store) -> list[tuple[str, str, ReportFilter]]:
    """(report, filter shown, filter): every report, then the filtered ones."""
    now = utcnow()
    since = (now - timedelta(days=3)).replace(minute=17, second=5)
    model = "stability-ai/sdxl"
    found = [(name, "", ReportFilter()) for name in REPORTS]
    found += [
        (name, "--since 3d", ReportFilter(since=since)) for name in ("status", "models", "daily")
    ]
    found.append(("models", f"--model {model}", ReportFilter(model=model)))
    found.append(("models", "--label team=studio", ReportFilter(labels={"team": "studio"})))
    return found


def time_reports(url: str, runs: int) -> list[dict[str, Any]]:
    store = Store.from_url(url)
    results = []
    try:
        for name, shown, flt in cases(store):
            walls, cpus, size = [], [], 0
            for _ in range(runs):
                w0, c0 = time.perf_counter(), time.process_time()
                size = len(REPORTS[name].run(store, flt, 0))
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
            median = statistics.median(walls)
            results.append(
                {
                    "report": name,
                    "filter": shown,
                    "rows": size,
                    "first_seconds": round(walls[0], 3),
                    "median_seconds": round(median, 3),
                    "median_cpu_seconds": round(statistics.median(cpus), 3),
                    "goal_met": max(walls) < GOAL_SECONDS,
                    "loadavg": loadavg(),
                }
            )
            log(f"  {name} {shown}: first {walls[0]:.3f} s, median {median:.3f} s")
    finally:
        store.close()
    return results


def new_database(engine: str, args: argparse.Namespace, dbs: Databases) -> str:
    """A fresh database at ``--revision`` (the shared template is at head)."""
    if args.revision == "head":
        return dbs.new(engine, f"reports-{engine}")
    if engine == "sqlite":
        url = f"sqlite:///{dbs.workdir / f'reports-{args.revision}.db'}"
    else:
        name = f"tracker_bench_reports_{args.revision}_{uuid.uuid4().hex[:6]}"
        url = pg_create(name)
        if not args.keep:
            dbs._pg.append(name)  # dropped with the others
    store = Store.from_url(url)
    try:
        migrate.upgrade(store, args.revision)
    finally:
        store.close()
    return url


def run_engine(engine: str, args: argparse.Namespace, dbs: Databases) -> dict[str, Any]:
    result: dict[str, Any] = {"engine": engine, "loadavg_start": loadavg()}
    if args.url:
        url = args.url
    else:
        url = new_database(engine, args, dbs)
        log(f"{engine}: writing {args.rows:,} predictions")
        result["fill"] = fill_database(url, args.rows, args.days, args.seed)
        if args.keep:
            log(f"{engine}: kept at {url}")
    if args.upgrade:
        store = Store.from_url(url)
        try:
            t0 = time.monotonic()
            migrate.upgrade(store, args.revision)
            result["upgrade_seconds"] = round(time.monotonic() - t0, 1)
        finally:
            store.close()
        log(f"{engine}: upgraded in {result['upgrade_seconds']} s")
    store = Store.from_url(url)
    try:
        result["revision"] = store.schema_revision()
    finally:
        store.close()
    result["database_bytes"] = database_size(url)
    log(f"{engine}: timing the reports ({args.runs} runs each)")
    result["reports"] = time_reports(url, args.runs)
    result["loadavg_end"] = loadavg()
    return result


def print_report(report: dict[str, Any]) -> None:
    print(f"\nReports over {report['settings']['rows']:,} predictions, goal < {GOAL_SECONDS} s")
    for result in report["results"]:
        print(
            f"\n{result['engine']} (schema {result['revision']}, load average"
            f" {result['loadavg_start']} -> {result['loadavg_end']})"
        )
        print(
            f"{'report':<10} {'filter':<30} {'rows':>6} {'first s':>8} {'median s':>9}"
            f" {'CPU s':>6}  goal"
        )
        for r in result["reports"]:
            verdict = "met" if r["goal_met"] else "NOT MET"
            print(
                f"{r['report']:<10} {r['filter']:<30} {r['rows']:>6} {r['first_seconds']:>8.3f}"
                f" {r['median_seconds']:>9.3f} {r['median_cpu_seconds']:>6.2f}  {verdict}"
            )
        print("(CPU s: this process's, the median run; SQLite's work runs in it, PostgreSQL's not)")
    print(
        "\nPercentiles (p50, p95) of `models` and the dashboard come from the rollup's"
        " histogram: within 5 % of percentile_cont over the rows (docs/schema.md)."
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = report_header("reports", args, args.engines)
    report.update(goal_seconds=GOAL_SECONDS, results=[])
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-reports-"))
        )
        dbs = Databases(workdir, keep=args.keep)
        try:
            for engine in args.engines:
                report["results"].append(run_engine(engine, args, dbs))
        finally:
            dbs.drop_all()
    write_report(report, args.json)
    print_report(report)
    met = all(r["goal_met"] for res in report["results"] for r in res["reports"])
    print(f"\ngoal (every report under {GOAL_SECONDS} s): {'met' if met else 'NOT MET'}")
    return 0
