"""Poll throughput: how many polls per second (and per daemon CPU-second) the daemon sustains.

Starts the simulator in its own process, registers N never-ending predictions
(`forever-*`, whose logs grow all the time, so most answers carry a change and a
write), runs `tracker daemon` for a fixed time and counts the requests the
simulator answered. Runs on SQLite and on PostgreSQL, prints a table and writes
JSON.

    .venv/bin/python scripts/bench_poll.py [--predictions 2000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from .databases import drop_database, new_database
from .harness import SimulatorProcess, tracker, tracker_env


def run_engine(
    engine: str, args: argparse.Namespace, sim: SimulatorProcess, workdir: Path
) -> dict[str, object]:
    url, dbname = new_database(engine, workdir / f"bench-{uuid.uuid4().hex[:6]}.db")
    env = tracker_env(url, sim.base)
    try:
        tracker("db", "upgrade", env=env)
        prefix = f"forever-{engine}-{uuid.uuid4().hex[:4]}"
        ids = "\n".join(f"{prefix}-{i}" for i in range(args.predictions))
        tracker("add", "--file", "-", env=env, input=ids)
        before = sim.request_count()
        flags = ["--poll-min", str(args.poll_min), "--poll-max", str(args.poll_min)]
        flags += ["--max-rps", str(args.max_rps), "--concurrency", str(args.concurrency)]
        daemon = subprocess.Popen(
            [sys.executable, "-m", "tracker", "daemon", *flags],
            env=env,
            stderr=(workdir / f"daemon-{engine}.log").open("w"),
        )
        time.sleep(args.seconds)
        daemon.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(daemon.pid, 0)
        daemon.returncode = os.waitstatus_to_exitcode(status)
        requests = sim.request_count() - before
        cpu = usage.ru_utime + usage.ru_stime
        return {
            "engine": engine,
            "predictions": args.predictions,
            "seconds": args.seconds,
            "requests": requests,
            "polls_per_second": round(requests / args.seconds, 1),
            "daemon_cpu_seconds": round(cpu, 2),
            "polls_per_cpu_second": round(requests / cpu, 1) if cpu else None,
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "exit_code": daemon.returncode,
        }
    finally:
        drop_database(dbname)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--predictions", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--poll-min", type=float, default=0.5)
    parser.add_argument("--max-rps", type=float, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--json", type=Path, default=Path("bench-results/poll.json"))
    return parser.parse_args(argv)


def print_table(results: list[dict[str, object]]) -> None:
    print(f"{'engine':<11}{'polls/s':>10}{'polls/CPU-s':>13}{'CPU s':>8}{'RSS MB':>8}")
    for r in results:
        print(
            f"{r['engine']:<11}{r['polls_per_second']:>10}{r['polls_per_cpu_second']:>13}"
            f"{r['daemon_cpu_seconds']:>8}{r['peak_rss_mb']:>8}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    sim = SimulatorProcess()
    results = []
    try:
        for engine in args.engines.split(","):
            results.append(run_engine(engine, args, sim, args.json.parent))
    finally:
        sim.stop()
    print_table(results)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"written to {args.json}")
