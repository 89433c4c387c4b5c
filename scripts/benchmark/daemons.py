"""Several daemons on one PostgreSQL database: does poll throughput grow with them?

Starts the simulator in its own process, then for 1, 2 and 3 daemons in turn:
creates a fresh PostgreSQL database, registers N never-ending predictions
(`forever-*`, whose logs grow all the time, so most answers carry a change and a
write), starts the daemons together, lets them warm up, and counts the requests
the simulator answers over a fixed window. Also reports the CPU time of the
daemons, the simulator and the PostgreSQL server during the window, how busy the
machine was (and how much CPU everything else took: a loaded machine shows), and
how many answers were dropped because another daemon had taken the prediction
meanwhile. Prints a table and writes JSON.

    .venv/bin/python scripts/bench_daemons.py [--predictions 3000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from .databases import drop_database, new_database
from .harness import (
    CLK_TCK,
    SimulatorProcess,
    cpu_of,
    machine_busy,
    postgres_cpu_seconds,
    tracker,
    tracker_env,
    wait_for_log,
)


def start_daemons(
    count: int, args: argparse.Namespace, env: dict[str, str], workdir: Path
) -> tuple[list[subprocess.Popen[bytes]], list[Path]]:
    """``count`` daemons named d1, d2, ... on one database, once all have started."""
    flags = ["--poll-min", str(args.poll), "--poll-max", str(args.poll)]
    flags += ["--max-rps", str(args.max_rps), "--concurrency", str(args.concurrency)]
    procs: list[subprocess.Popen[bytes]] = []
    logs = [workdir / f"daemons-{count}-d{n}.log" for n in range(1, count + 1)]
    for n, log in enumerate(logs, start=1):
        command = [sys.executable, "-m", "tracker", "daemon", *flags, "--name", f"d{n}"]
        with log.open("w") as out:
            procs.append(subprocess.Popen(command, env=env, stderr=out))
    if not wait_for_log(logs, procs, 60):
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        raise RuntimeError("a daemon did not start: " + " | ".join(str(log) for log in logs))
    return procs, logs


def measure(
    seconds: float, sim: SimulatorProcess, pids: list[int]
) -> tuple[int, float, tuple[float, float, float], tuple[int, int]]:
    """Over ``seconds``: requests answered, elapsed time, CPU seconds of the daemons, the
    simulator and PostgreSQL, and busy / total jiffies of the machine."""
    before = sim.request_count()
    cpu_before = (cpu_of(pids), cpu_of([sim.pid]), postgres_cpu_seconds())
    busy_before = machine_busy()
    started = time.monotonic()
    time.sleep(seconds)
    after = sim.request_count()
    elapsed = time.monotonic() - started
    cpu_after = (cpu_of(pids), cpu_of([sim.pid]), postgres_cpu_seconds())
    busy_after = machine_busy()
    cpu = tuple(a - b for a, b in zip(cpu_after, cpu_before, strict=True))
    busy = (busy_after[0] - busy_before[0], busy_after[1] - busy_before[1])
    return after - before, elapsed, cpu, busy  # type: ignore[return-value]


def run_daemons(
    count: int, args: argparse.Namespace, sim: SimulatorProcess, workdir: Path
) -> dict[str, object]:
    url, dbname = new_database("postgresql", workdir / "unused.db")
    env = tracker_env(url, sim.base)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        tracker("db", "upgrade", env=env)
        prefix = f"forever-d{count}-{uuid.uuid4().hex[:4]}"
        ids = "\n".join(f"{prefix}-{i}" for i in range(args.predictions))
        tracker("add", "--file", "-", env=env, input=ids)
        procs, logs = start_daemons(count, args, env, workdir)
        time.sleep(args.warmup)
        requests, elapsed, cpu, busy = measure(args.seconds, sim, [p.pid for p in procs])
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(60) for proc in procs]
        per_daemon, repeated = _read_counts(url)
        dropped = sum(
            log.read_text(errors="replace").count("changed since it was read") for log in logs
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        drop_database(dbname)
    daemon_cpu, sim_cpu, pg_cpu = cpu
    return {
        "daemons": count,
        "predictions": args.predictions,
        "seconds": round(elapsed, 2),
        "requests": requests,
        "polls_per_second": round(requests / elapsed, 1),
        "wanted_polls_per_second": round(args.predictions / args.poll, 1),
        "daemon_cpu_seconds": round(daemon_cpu, 2),
        "polls_per_daemon_cpu_second": round(requests / daemon_cpu, 1) if daemon_cpu else None,
        "simulator_cpu_seconds": round(sim_cpu, 2),
        "postgres_cpu_seconds": round(pg_cpu, 2),
        "machine_busy_percent": round(100 * busy[0] / max(1, busy[1]), 1),
        "other_processes_cpu_seconds": round(busy[0] / CLK_TCK - daemon_cpu - sim_cpu - pg_cpu, 2),
        "cpus": os.cpu_count(),
        "polls_by_daemon": {name: per_daemon.get(name) for name in sorted(per_daemon)},
        "answers_dropped_as_stale": dropped,
        "repeated_transitions": repeated,
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
    parser.add_argument("--predictions", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--poll", type=float, default=0.5, help="--poll-min and --poll-max")
    parser.add_argument("--max-rps", type=float, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--daemons", default="1,2,3", help="comma list of daemon counts")
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure every count this often, interleaved"
    )
    parser.add_argument("--json", type=Path, default=Path("bench-results/daemons.json"))
    return parser.parse_args(argv)


def print_table(results: list[dict[str, Any]], counts: list[int], rounds: int) -> None:
    print(
        f"{'round':>5}{'daemons':>8}{'polls/s':>10}{'vs 1':>7}{'polls/CPU-s':>13}"
        f"{'daemon CPU':>12}{'sim CPU':>9}{'PG CPU':>8}{'other CPU':>11}{'busy %':>8}"
        f"{'stale':>7}  polls by daemon"
    )
    for r in results:
        first = next(x for x in results if x["round"] == r["round"])
        ratio = r["polls_per_second"] / first["polls_per_second"]
        shares = " ".join(f"{k}={v}" for k, v in r["polls_by_daemon"].items())
        print(
            f"{r['round']:>5}{r['daemons']:>8}{r['polls_per_second']:>10}{ratio:>7.2f}"
            f"{r['polls_per_daemon_cpu_second']:>13}{r['daemon_cpu_seconds']:>12}"
            f"{r['simulator_cpu_seconds']:>9}{r['postgres_cpu_seconds']:>8}"
            f"{r['other_processes_cpu_seconds']:>11}"
            f"{r['machine_busy_percent']:>8}{r['answers_dropped_as_stale']:>7}  {shares}"
        )
    if rounds > 1:
        for count in counts:
            rates = [r["polls_per_second"] for r in results if r["daemons"] == count]
            print(f"{count} daemon(s): median {statistics.median(rates):.1f} polls/s of {rates}")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    counts = [int(n) for n in args.daemons.split(",")]
    sim = SimulatorProcess()
    results: list[dict[str, Any]] = []
    try:
        for round_ in range(1, args.rounds + 1):
            for count in counts:
                result = run_daemons(count, args, sim, args.json.parent)
                results.append({"round": round_, **result})
    finally:
        sim.stop()
    print_table(results, counts, args.rounds)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"written to {args.json}")
