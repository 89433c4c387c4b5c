"""The storage benchmark (issue 18 item 2): bytes per finished prediction, per table, on
SQLite and PostgreSQL, two ways.

- ``fill``: finished predictions written in bulk with SQL, each shaped like what the
  daemon writes for a 20 s image prediction with a webhook (``fill.fill_finished``, as
  the ``scale`` section of ``scripts/bench``), then compacted.
- ``daemon``: what the daemon itself writes: ``ok-`` predictions of the simulator
  (log-normal run times around ``--run-median`` seconds, a progress line every half
  second), registered with a webhook to a local receiver, polled by ``tracker
  daemon`` to their end and their webhooks delivered; then compacted.

Compacted means ``VACUUM`` on SQLite and ``VACUUM FULL`` on PostgreSQL, so dead row
versions and half-empty pages left by the updates of a poll loop do not count: the
figure is what a prediction costs once the database has settled. Bytes per table
include its indexes (``dbstat``, ``pg_total_relation_size``).

    .venv/bin/python scripts/bench_storage.py [--engines sqlite,postgresql] [--fill N]
        [--daemon N] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

from .databases import TABLES, Databases, Reader, table_bytes
from .fill import fill_finished
from .harness import (
    ROOT,
    DaemonProcess,
    SimulatorProcess,
    count_arg,
    engines_arg,
    log,
    report_header,
    stop,
    tracker,
    tracker_env,
    write_report,
)
from .profile import FULL
from .receiver import start_receiver

#: the goal of issue 18 item 2: half of these bytes per finished prediction (the fill,
#: measured on 2026-12-07 before migration 0012, docs/performance.md "Database size")
BASELINE = {"sqlite": 11_499, "postgresql": 7_340}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="sqlite,postgresql", type=engines_arg)
    parser.add_argument("--fill", type=count_arg, default=3000, help="predictions bulk-written")
    parser.add_argument(
        "--daemon", type=count_arg, default=400, help="predictions polled (0: skip)"
    )
    parser.add_argument("--run-median", type=float, default=20.0)
    parser.add_argument("--json", type=Path, default=ROOT / "bench-results" / "storage.json")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument(
        "--workdir", type=Path, help="for the SQLite files (default: a temporary one)"
    )
    return parser.parse_args(argv)


def compact(url: str) -> None:
    """VACUUM (SQLite) or VACUUM FULL (PostgreSQL): only live data is counted."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("VACUUM")
        finally:
            conn.close()
        return
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute("VACUUM FULL ANALYZE")


def per_prediction(url: str, finished: int) -> dict[str, Any]:
    tables = table_bytes(url)
    return {
        "finished": finished,
        "bytes_per_finished": round(sum(tables.values()) / finished),
        "table_bytes_per_finished": {n: round(b / finished) for n, b in tables.items()},
    }


def measure_fill(engine: str, dbs: Databases, count: int) -> dict[str, Any]:
    url = dbs.new(engine, f"storage-fill-{engine}")
    fill = fill_finished(url, count, FULL, seed=8)
    compact(url)
    return {**per_prediction(url, count), "fill": fill}


def measure_daemon(
    engine: str, dbs: Databases, count: int, run_median: float, workdir: Path
) -> dict[str, Any]:
    url = dbs.new(engine, f"storage-daemon-{engine}")
    sim = SimulatorProcess("--run-median", str(run_median), "--seed", "8")
    receiver, hook_base = start_receiver()
    daemon = None
    try:
        env = tracker_env(url, sim.base)
        ids = "\n".join(f"ok-storage-{i:05d}" for i in range(count))
        tracker("add", "--file", "-", "--webhook", f"{hook_base}/hook/storage", env=env, input=ids)
        began = time.monotonic()
        daemon = DaemonProcess(
            url, sim.base, workdir / f"storage-daemon-{engine}.log", "--poll-min", "1"
        )
        daemon.wait_ready()
        deadline = began + 20 * run_median + 120
        while _delivered(hook_base) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{engine}: not every webhook arrived in time")
            time.sleep(1)
        seconds = time.monotonic() - began
        result = daemon.stop()
        requests = sim.request_count()
    finally:
        if daemon is not None:
            daemon.stop()
        stop(receiver)
        sim.stop()
    compact(url)
    return {
        **per_prediction(url, count),
        "raw_logs_moved": _moved(url),
        "seconds": round(seconds, 1),
        "requests_per_prediction": round(requests / count, 1),
        "daemon_exit_code": result["exit_code"],
    }


def _moved(url: str) -> int:
    """Finished predictions whose stored answer keeps no second copy of its logs."""
    reader = Reader(url)
    try:
        return int(
            reader.scalar(
                "SELECT count(*) FROM predictions WHERE raw_logs_moved AND tracking = 'done'"
            )
        )
    finally:
        reader.close()


def _delivered(hook_base: str) -> int:
    records = httpx.get(f"{hook_base}/records", params={"tag": "storage"}, timeout=30).json()
    return len({r["prediction_id"] for r in records if r["event"] == "completed"})


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(
        f"\nstorage benchmark: {m.get('nproc')} CPUs ({m.get('cpu', '?')}),"
        f" SQLite {m.get('sqlite')}, PostgreSQL {m.get('postgresql', '-')};"
        " bytes per finished prediction, compacted"
    )
    header = f"{'engine':<11} {'written by':<8} {'count':>6} {'total':>7}"
    header += "".join(f" {name[:12]:>12}" for name in TABLES) + "  vs goal"
    print(header)
    for engine, parts in report["results"].items():
        goal = BASELINE[engine] / 2
        for part, r in parts.items():
            row = f"{engine:<11} {part:<8} {r['finished']:>6} {r['bytes_per_finished']:>7}"
            row += "".join(f" {r['table_bytes_per_finished'][n]:>12}" for n in TABLES)
            row += f"  {r['bytes_per_finished'] / goal:.2f} x {goal:.0f}"
            print(row)
    print(
        "goal: half of "
        + ", ".join(f"{e} {b:,} B" for e, b in BASELINE.items())
        + " (the fill, before migration 0012)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = report_header("storage", args, args.engines)
    report["results"] = {}
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-storage-"))
        )
        workdir.mkdir(parents=True, exist_ok=True)
        dbs = Databases(workdir, keep=args.keep)
        try:
            for engine in args.engines:
                parts: dict[str, Any] = {}
                if args.fill:
                    log(f"storage {engine}: bulk-writing {args.fill} finished predictions")
                    parts["fill"] = measure_fill(engine, dbs, args.fill)
                if args.daemon:
                    log(f"storage {engine}: the daemon polls {args.daemon} predictions")
                    parts["daemon"] = measure_daemon(
                        engine, dbs, args.daemon, args.run_median, workdir
                    )
                report["results"][engine] = parts
        finally:
            dbs.drop_all()
    write_report(report, args.json)
    print_report(report)
    print(f"written to {args.json}")
    return 0
