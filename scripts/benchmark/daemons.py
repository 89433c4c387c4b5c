"""Several daemons on one PostgreSQL database: does poll throughput grow with them, and
where does PostgreSQL rather than the daemons become the limit?

Starts the simulator in its own process, then for 1, 2 and 4 daemons in turn (rounds
interleaved): creates a fresh PostgreSQL database, registers N predictions, starts the
daemons together, lets them warm up, and counts the requests the simulator answers
over a fixed window. Two workloads:

- ``forever``: never-ending predictions (``forever-*``, whose logs grow all the time,
  so most answers carry a change and a write). No prediction ends, so the reports'
  rollup trigger (advisory lock 18001011, taken when a prediction ends) never fires.
- ``ending``: predictions that succeed after a run of about --run-median seconds
  (``ok-*``); a feeder thread registers new ones as they end (about every 0.25 s, with
  the tracker's own Store.add_predictions), so N stay active and the terminal
  transitions, their rollup triggers and the INSERTs of new predictions are part of
  the load, as in a real deployment. Warms up longer (--warmup-ending), so that the
  first cohort's ends are spread out.

Per run it reports the polls per second, the CPU seconds per 1,000 polls of the
daemons, of the PostgreSQL backends that serve them (matched by TCP port), of the whole
PostgreSQL server (background processes, the feeder's backend and other databases
included; the sampler's own backend excluded) and of the simulator, how busy the
machine was, the load average before and after, the answers dropped because another
daemon had taken the prediction meanwhile, each daemon's polls and connections, and
what PostgreSQL shows about contention: pg_stat_database (commits, blocks, tuples,
deadlocks), pg_stat_user_tables for ``predictions`` (updates, HOT updates, dead
tuples), WAL bytes, and pg_stat_activity / pg_locks sampled every 0.2 s (backends
waiting, on what; ungranted locks by type). Then the medians per workload and daemon
count, and a CPU-cost model: polls per second one PostgreSQL core sustains, PostgreSQL
cores per busy daemon, and where PostgreSQL's CPU would catch up with the daemons'.
Prints the machine, the date and the load, and writes everything to JSON.

    .venv/bin/python scripts/bench_daemons.py [--predictions 4000] [--seconds 15]
        [--daemons 1,2,4] [--workloads forever,ending] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from tracker.store.store import Store

from .daemons_model import model, print_model
from .daemons_pg import PgSampler, wait_for_connections
from .databases import drop_database, new_database, pg_version
from .harness import (
    CLK_TCK,
    SimulatorProcess,
    cpu_of,
    loadavg,
    log,
    machine,
    machine_busy,
    source_state,
    tracker,
    tracker_env,
    wait_for_log,
)

WORKLOADS = ("forever", "ending")
PREFIX = {"forever": "forever", "ending": "ok"}


def start_daemons(
    count: int, args: argparse.Namespace, env: dict[str, str], workdir: Path, tag: str
) -> tuple[list[subprocess.Popen[bytes]], list[Path]]:
    """``count`` daemons named d1, d2, ... on one database, once all have started."""
    flags = ["--poll-min", str(args.poll), "--poll-max", str(args.poll)]
    flags += ["--max-rps", str(args.max_rps), "--concurrency", str(args.concurrency)]
    procs: list[subprocess.Popen[bytes]] = []
    logs = [workdir / f"daemons-{tag}-{count}-d{n}.log" for n in range(1, count + 1)]
    for n, path in enumerate(logs, start=1):
        command = [sys.executable, "-m", "tracker", "daemon", *flags, "--name", f"d{n}"]
        with path.open("w") as out:
            procs.append(subprocess.Popen(command, env=env, stderr=out))
    if not wait_for_log(logs, procs, 60):
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        raise RuntimeError("a daemon did not start: " + " | ".join(str(log) for log in logs))
    return procs, logs


class Feeder:
    """Keeps ``target`` predictions active: every ``interval`` seconds, registers as many
    new ``prefix-N`` IDs as have ended (Store.add_predictions, as `tracker add`)."""

    def __init__(self, url: str, prefix: str, first: int, target: int, poll: float) -> None:
        self.store = Store.from_url(url, pool_size=1)
        self.prefix, self.next, self.target, self.poll = prefix, first, target, poll
        self.added = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.store.close()

    def _run(self) -> None:
        from sqlalchemy import text

        while not self._stop.wait(0.25):
            with self.store.engine.connect() as conn:
                active = conn.execute(
                    text("select count(*) from predictions where tracking = 'active'")
                ).scalar_one()
            missing = self.target - active
            if missing <= 0:
                continue
            ids = [f"{self.prefix}-{i}" for i in range(self.next, self.next + missing)]
            now = datetime.now(UTC)
            self.store.add_predictions(ids, now=now, first_poll_at=now)
            self.next += missing
            self.added += missing


def measure(
    seconds: float, sim: SimulatorProcess, pids: list[int], sampler: PgSampler
) -> dict[str, Any]:
    """Over ``seconds``: requests answered, elapsed time, CPU seconds of the daemons and
    the simulator, busy / total jiffies of the machine, and PostgreSQL's side."""
    load_before = loadavg()
    sampler.start()
    before = sim.request_count()
    cpu_before = (cpu_of(pids), cpu_of([sim.pid]), cpu_of([os.getpid()]))
    busy_before = machine_busy()
    started = time.monotonic()
    time.sleep(seconds)
    after = sim.request_count()
    elapsed = time.monotonic() - started
    cpu_after = (cpu_of(pids), cpu_of([sim.pid]), cpu_of([os.getpid()]))
    busy_after = machine_busy()
    sampler.stop()
    cpu = [a - b for a, b in zip(cpu_after, cpu_before, strict=True)]
    return {
        "requests": after - before,
        "elapsed": elapsed,
        "daemon_cpu": cpu[0],
        "sim_cpu": cpu[1],
        "bench_cpu": cpu[2],
        "busy": (busy_after[0] - busy_before[0], busy_after[1] - busy_before[1]),
        "load_before": load_before,
        "load_after": loadavg(),
        "pg": sampler.result(),
    }


def run_daemons(
    count: int, workload: str, args: argparse.Namespace, sim: SimulatorProcess, workdir: Path
) -> dict[str, object]:
    url, dbname = new_database("postgresql", workdir / "unused.db")
    env = tracker_env(url, sim.base)
    procs: list[subprocess.Popen[bytes]] = []
    feeder: Feeder | None = None
    sampler: PgSampler | None = None
    try:
        tracker("db", "upgrade", env=env)
        prefix = f"{PREFIX[workload]}-d{count}-{uuid.uuid4().hex[:4]}"
        ids = "\n".join(f"{prefix}-{i}" for i in range(args.predictions))
        tracker("add", "--file", "-", env=env, input=ids)
        procs, logs = start_daemons(count, args, env, workdir, workload)
        daemons = {f"d{n}": p.pid for n, p in enumerate(procs, start=1)}
        if workload == "ending":
            feeder = Feeder(url, prefix, args.predictions, args.predictions, args.poll)
            feeder.start()
        wait_for_connections(daemons)
        time.sleep(args.warmup_ending if workload == "ending" else args.warmup)
        sampler = PgSampler(url, daemons, os.getpid() if feeder else None)
        added_before = feeder.added if feeder else 0
        m = measure(args.seconds, sim, [p.pid for p in procs], sampler)
        added = (feeder.added if feeder else 0) - added_before
        if feeder is not None:
            feeder.stop()
            feeder = None
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(60) for proc in procs]
        per_daemon, repeated = _read_counts(url)
        dropped = sum(
            log.read_text(errors="replace").count("changed since it was read") for log in logs
        )
    finally:
        if sampler is not None:
            sampler.close()
        if feeder is not None:
            feeder.stop()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        drop_database(dbname)
    return _result(count, workload, args, m, per_daemon, dropped, repeated, codes, added)


def _per_1000(seconds: float, polls: int) -> float | None:
    return round(1000 * seconds / polls, 3) if polls else None


def _result(
    count: int,
    workload: str,
    args: argparse.Namespace,
    m: dict[str, Any],
    per_daemon: dict[str, int],
    dropped: int,
    repeated: int | None,
    codes: list[int],
    added: int,
) -> dict[str, Any]:
    requests, elapsed, pg = m["requests"], m["elapsed"], m["pg"]
    busy = m["busy"]
    counters = pg["counters"]
    pg_server, pg_backends = pg["server_cpu_seconds"], pg["backends_cpu_seconds"]
    pg_ours = pg["ours_cpu_seconds"]
    daemon_cpu, sim_cpu = m["daemon_cpu"], m["sim_cpu"]
    ended = counters.get("ended_predictions", 0)
    upd = counters.get("predictions_n_tup_upd", 0)
    return {
        "workload": workload,
        "daemons": count,
        "predictions": args.predictions,
        "seconds": round(elapsed, 2),
        "requests": requests,
        "polls_per_second": round(requests / elapsed, 1),
        "wanted_polls_per_second": round(args.predictions / args.poll, 1),
        "daemon_cpu_seconds": round(daemon_cpu, 2),
        "daemon_cpu_per_1000_polls": _per_1000(daemon_cpu, requests),
        "polls_per_daemon_cpu_second": round(requests / daemon_cpu, 1) if daemon_cpu else None,
        "daemon_cores": round(daemon_cpu / elapsed, 2),
        "postgres_backends_cpu_seconds": pg_backends,
        "postgres_backends_cpu_per_1000_polls": _per_1000(pg_backends, requests),
        "postgres_ours_cpu_seconds": pg_ours,
        "postgres_ours_cpu_per_1000_polls": _per_1000(pg_ours, requests),
        "postgres_cpu_seconds": pg_server,
        "postgres_cpu_per_1000_polls": _per_1000(pg_server, requests),
        "rollup_lock_held_percent": round(100 * pg["rollup_lock_held_share"], 1),
        "simulator_cpu_seconds": round(sim_cpu, 2),
        "simulator_cpu_per_1000_polls": _per_1000(sim_cpu, requests),
        "benchmark_cpu_seconds": round(m["bench_cpu"], 2),
        "machine_busy_percent": round(100 * busy[0] / max(1, busy[1]), 1),
        "other_processes_cpu_seconds": round(
            busy[0] / CLK_TCK - daemon_cpu - sim_cpu - pg_server - m["bench_cpu"], 2
        ),
        "load_before": m["load_before"],
        "load_after": m["load_after"],
        "cpus": os.cpu_count(),
        "polls_by_daemon": {name: per_daemon.get(name) for name in sorted(per_daemon)},
        "answers_dropped_as_stale": dropped,
        "repeated_transitions": repeated,
        "ended_per_second": round(ended / elapsed, 1),
        "polls_per_end": round(requests / ended, 1) if ended else None,
        "registered_in_window": added,
        "commits_per_poll": round(counters.get("xact_commit", 0) / max(1, requests), 3),
        "updates_per_poll": round(counters.get("tup_updated", 0) / max(1, requests), 2),
        "blocks_hit_per_poll": round(counters.get("blks_hit", 0) / max(1, requests), 1),
        "blocks_read": counters.get("blks_read", 0),
        "wal_bytes_per_poll": round(counters.get("wal_bytes", 0) / max(1, requests)),
        "hot_update_percent": round(100 * counters.get("predictions_n_tup_hot_upd", 0) / upd, 1)
        if upd
        else None,
        "deadlocks": counters.get("deadlocks", 0),
        "rollbacks": counters.get("xact_rollback", 0),
        "postgres": pg,
        "exit_codes": codes,
    }


def _read_counts(url: str) -> tuple[dict[str, int], int | None]:
    """Polls per daemon name, and how many transitions were recorded more than once."""
    with psycopg.connect(url) as conn:
        per_daemon: dict[str, int] = dict(
            conn.execute("select name, polls from daemons").fetchall()
        )
        repeated = conn.execute(
            "select count(*) from (select prediction_id, from_status, to_status"
            " from status_transitions group by 1, 2, 3 having count(*) > 1) t"
        ).fetchone()
    return per_daemon, repeated[0] if repeated else None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--predictions", type=int, default=4000, help="active predictions")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument(
        "--warmup-ending", type=float, default=25.0, help="seconds before measuring (ending)"
    )
    parser.add_argument("--poll", type=float, default=0.5, help="--poll-min and --poll-max")
    parser.add_argument("--max-rps", type=float, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--daemons", default="1,2,4", help="comma list of daemon counts")
    parser.add_argument(
        "--workloads", default="forever,ending", help="comma list of: " + ", ".join(WORKLOADS)
    )
    parser.add_argument(
        "--run-median",
        type=float,
        default=20.0,
        help="the ending predictions' median run time (the simulator's --run-median)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure every count this often, interleaved"
    )
    parser.add_argument("--json", type=Path, default=Path("bench-results/daemons.json"))
    parser.add_argument(
        "--model-of",
        type=Path,
        metavar="JSON",
        help="measure nothing: print the medians and the model of a saved run's JSON",
    )
    args = parser.parse_args(argv)
    for name in args.workloads.split(","):
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}: use {', '.join(WORKLOADS)}")
    return args


def _fmt(value: object) -> str:
    return "-" if value is None else str(value)


def print_table(results: list[dict[str, Any]]) -> None:
    print(
        "CPU: seconds per 1,000 polls (= ms per poll); PG bk = the daemons' backends,"
        " PG = those + the feeder's backend + background processes (the model's figure),"
        " PG srv = the whole server, other databases included"
    )
    print(
        f"{'rnd':>3} {'workload':<8}{'n':>2}{'polls/s':>9}{'daemon':>8}{'PG bk':>7}{'PG':>7}"
        f"{'PG srv':>8}{'sim':>7}{'busy%':>7}{'load':>11}{'ends/s':>8}{'stale':>6}"
        f"{'conns':>9}  polls by daemon"
    )
    for r in results:
        shares = " ".join(f"{k}={v}" for k, v in r["polls_by_daemon"].items())
        conns = ",".join(str(v) for v in r["postgres"]["connections_by_daemon"].values())
        load = f"{r['load_before'][0]:.1f}>{r['load_after'][0]:.1f}"
        print(
            f"{r['round']:>3} {r['workload']:<8}{r['daemons']:>2}{r['polls_per_second']:>9}"
            f"{_fmt(r['daemon_cpu_per_1000_polls']):>8}"
            f"{_fmt(r['postgres_backends_cpu_per_1000_polls']):>7}"
            f"{_fmt(r['postgres_ours_cpu_per_1000_polls']):>7}"
            f"{_fmt(r['postgres_cpu_per_1000_polls']):>8}"
            f"{_fmt(r['simulator_cpu_per_1000_polls']):>7}{r['machine_busy_percent']:>7}"
            f"{load:>11}{r['ended_per_second']:>8}{r['answers_dropped_as_stale']:>6}"
            f"{conns:>9}  {shares}"
        )
    print()
    print("PostgreSQL: per poll, and backends waiting (mean per 0.2 s sample)")
    print(
        f"{'rnd':>3} {'workload':<8}{'n':>2}{'commits':>8}{'upd':>6}{'blk hit':>8}{'WAL B':>7}"
        f"{'HOT %':>7}{'dlk':>4}{'rb':>5}{'lock%':>6}{'active':>7}{'idle-tx':>8}"
        "  waits / ungranted locks"
    )
    for r in results:
        pg = r["postgres"]
        states = pg["mean_backends_by_state"]
        waits = " ".join(f"{k}={v}" for k, v in list(pg["mean_backends_waiting"].items())[:4])
        locks = " ".join(f"{k}={v}" for k, v in pg["mean_ungranted_locks"].items())
        print(
            f"{r['round']:>3} {r['workload']:<8}{r['daemons']:>2}{r['commits_per_poll']:>8}"
            f"{r['updates_per_poll']:>6}"
            f"{r['blocks_hit_per_poll']:>8}{r['wal_bytes_per_poll']:>7}"
            f"{_fmt(r['hot_update_percent']):>7}{r['deadlocks']:>4}{r['rollbacks']:>5}"
            f"{r['rollup_lock_held_percent']:>6}"
            f"{states.get('active', 0):>7}{states.get('idle in transaction', 0):>8}"
            f"  {waits or '-'} / {locks or '-'}"
        )


def medians(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The median of every figure per workload and daemon count."""
    keys = (
        "polls_per_second",
        "daemon_cpu_per_1000_polls",
        "postgres_backends_cpu_per_1000_polls",
        "postgres_ours_cpu_per_1000_polls",
        "postgres_cpu_per_1000_polls",
        "rollup_lock_held_percent",
        "updates_per_poll",
        "simulator_cpu_per_1000_polls",
        "machine_busy_percent",
        "daemon_cores",
        "ended_per_second",
        "commits_per_poll",
        "wal_bytes_per_poll",
        "answers_dropped_as_stale",
    )
    out = []
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["workload"], r["daemons"]), []).append(r)
    for (workload, count), rs in groups.items():
        row: dict[str, Any] = {"workload": workload, "daemons": count, "runs": len(rs)}
        for key in keys:
            values = [r[key] for r in rs if r[key] is not None]
            row[key] = round(statistics.median(values), 3) if values else None
        row["polls_per_second_runs"] = [r["polls_per_second"] for r in rs]
        out.append(row)
    return out


def print_medians(rows: list[dict[str, Any]]) -> None:
    print()
    print("Medians over the rounds (CPU: seconds per 1,000 polls)")
    print(
        f"{'workload':<8}{'n':>2}{'polls/s':>9}{'daemon':>8}{'PG bk':>7}{'PG':>7}{'PG srv':>8}"
        f"{'sim':>7}{'busy%':>7}{'ends/s':>8}{'lock%':>6}{'stale':>6}  polls/s per run"
    )
    for r in rows:
        print(
            f"{r['workload']:<8}{r['daemons']:>2}{r['polls_per_second']:>9}"
            f"{_fmt(r['daemon_cpu_per_1000_polls']):>8}"
            f"{_fmt(r['postgres_backends_cpu_per_1000_polls']):>7}"
            f"{_fmt(r['postgres_ours_cpu_per_1000_polls']):>7}"
            f"{_fmt(r['postgres_cpu_per_1000_polls']):>8}"
            f"{_fmt(r['simulator_cpu_per_1000_polls']):>7}{r['machine_busy_percent']:>7}"
            f"{r['ended_per_second']:>8}{r['rollup_lock_held_percent']:>6}"
            f"{r['answers_dropped_as_stale']:>6}  {r['polls_per_second_runs']}"
        )


def describe() -> dict[str, Any]:
    info = machine()
    info["postgresql"] = pg_version()
    info["date_utc"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    info["source"] = source_state()
    return info


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.model_of:
        saved = json.loads(args.model_of.read_text())
        rows = medians(saved["runs"])
        print_medians(rows)
        for workload in dict.fromkeys(r["workload"] for r in rows):
            print_model(workload, model([r for r in rows if r["workload"] == workload]))
        return
    args.json.parent.mkdir(parents=True, exist_ok=True)
    counts = [int(n) for n in args.daemons.split(",")]
    workloads = args.workloads.split(",")
    info = describe()
    print(
        f"{info['date_utc']} UTC, {info.get('cpu', '?')}, nproc {info['nproc']},"
        f" Linux {platform.release()}, PostgreSQL {info['postgresql']},"
        f" commit {info['source']['commit'][:7]}, load {info['loadavg_start']}",
        flush=True,
    )
    sim = SimulatorProcess("--run-median", str(args.run_median), "--queue-seconds", "1")
    results: list[dict[str, Any]] = []
    try:
        for round_ in range(1, args.rounds + 1):
            for workload in workloads:
                for count in counts:
                    result = run_daemons(count, workload, args, sim, args.json.parent)
                    log(
                        f"round {round_} {workload} {count} daemon(s):"
                        f" {result['polls_per_second']} polls/s, load {result['load_after']}"
                    )
                    results.append({"round": round_, **result})
    finally:
        sim.stop()
    info["date_utc_end"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    info["loadavg_end"] = loadavg()
    print_table(results)
    rows = medians(results)
    print_medians(rows)
    models = {w: model([r for r in rows if r["workload"] == w]) for w in workloads}
    for workload, m in models.items():
        print_model(workload, m)
    print(
        f"\nended {info['date_utc_end']} UTC, load {info['loadavg_start']} -> {info['loadavg_end']}"
    )
    args.json.write_text(
        json.dumps(
            {
                "machine": info,
                "args": {k: str(v) for k, v in vars(args).items()},
                "runs": results,
                "medians": rows,
                "model": models,
            },
            indent=2,
        )
    )
    print(f"written to {args.json}")
