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
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg

PG_ADMIN = os.environ.get("TRACKER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tracker(*args: str, env: dict[str, str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracker", "simulate", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "simulator listening on ..."
    return proc, f"http://127.0.0.1:{port}/v1"


def new_database(engine: str, sqlite_path: Path) -> tuple[str, str | None]:
    """A database URL for one run, and the PostgreSQL database to drop after it
    (None for SQLite, whose file is ``sqlite_path``)."""
    if engine == "sqlite":
        return f"sqlite:///{sqlite_path}", None
    dbname = f"tracker_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    return PG_ADMIN.rpartition("/")[0] + f"/{dbname}", dbname


def drop_database(dbname: str | None) -> None:
    if dbname:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def tracker_env(url: str, base: str) -> dict[str, str]:
    """This process's environment without TRACKER_ settings, plus the run's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env.update(TRACKER_DATABASE_URL=url, TRACKER_API_BASE=base, TRACKER_API_KEY="bench")
    env["TRACKER_WEBHOOK_ALLOWED_HOSTS"] = "loopback"  # the receiver listens on 127.0.0.1
    return env


def run_engine(
    engine: str, args: argparse.Namespace, base: str, workdir: Path
) -> dict[str, object]:
    url, dbname = new_database(engine, workdir / f"bench-{uuid.uuid4().hex[:6]}.db")
    env = tracker_env(url, base)
    try:
        tracker("db", "upgrade", env=env)
        prefix = f"forever-{engine}-{uuid.uuid4().hex[:4]}"
        ids = "\n".join(f"{prefix}-{i}" for i in range(args.predictions))
        tracker("add", "--file", "-", env=env, input=ids)
        before = httpx.get(base.replace("/v1", "/_sim/health")).json()["requests"]
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tracker",
                "daemon",
                "--poll-min",
                str(args.poll_min),
                "--poll-max",
                str(args.poll_min),
                "--max-rps",
                str(args.max_rps),
                "--concurrency",
                str(args.concurrency),
            ],
            env=env,
            stderr=(workdir / f"daemon-{engine}.log").open("w"),
        )
        time.sleep(args.seconds)
        daemon.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(daemon.pid, 0)
        daemon.returncode = os.waitstatus_to_exitcode(status)
        after = httpx.get(base.replace("/v1", "/_sim/health")).json()["requests"]
        requests = after - before
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--poll-min", type=float, default=0.5)
    parser.add_argument("--max-rps", type=float, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--json", type=Path, default=Path("bench-results/poll.json"))
    args = parser.parse_args()

    args.json.parent.mkdir(parents=True, exist_ok=True)
    sim, base = start_simulator()
    results = []
    try:
        for engine in args.engines.split(","):
            results.append(run_engine(engine, args, base, args.json.parent))
    finally:
        sim.terminate()
        sim.wait(10)
    header = f"{'engine':<11}{'polls/s':>10}{'polls/CPU-s':>13}{'CPU s':>8}{'RSS MB':>8}"
    print(header)
    for r in results:
        print(
            f"{r['engine']:<11}{r['polls_per_second']:>10}{r['polls_per_cpu_second']:>13}"
            f"{r['daemon_cpu_seconds']:>8}{r['peak_rss_mb']:>8}"
        )
    args.json.write_text(json.dumps(results, indent=2))
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
