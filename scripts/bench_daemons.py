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
from pathlib import Path

import httpx
import psycopg
from bench_poll import drop_database, new_database, start_simulator, tracker, tracker_env

PG_ADMIN = os.environ.get("TRACKER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def sim_requests(base: str) -> int:
    return httpx.get(base.replace("/v1", "/_sim/health"), timeout=30).json()["requests"]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (0 for vanished ones)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (after the command)
    return total / CLOCK_TICKS


def postgres_cpu_seconds() -> float:
    """CPU time of the local PostgreSQL server: its live processes, plus the backends
    that already ended (the postmaster's reaped children)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() not in ("postgres", "postmaster"):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        parent = Path(f"/proc/{fields[1]}/comm")
        if not parent.exists() or parent.read_text().strip() not in ("postgres", "postmaster"):
            total += int(fields[13]) + int(fields[14])  # the postmaster: ended children
    return total / CLOCK_TICKS


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs together, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def wait_for_started(logs: list[Path], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(" started: " in log.read_text(errors="replace") for log in logs):
            return
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.1)
    raise RuntimeError("a daemon did not start: " + " | ".join(str(log) for log in logs))


def run_daemons(
    count: int, args: argparse.Namespace, base: str, workdir: Path, sim_pid: int
) -> dict[str, object]:
    url, dbname = new_database("postgresql", workdir / "unused.db")
    env = tracker_env(url, base)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        tracker("db", "upgrade", env=env)
        prefix = f"forever-d{count}-{uuid.uuid4().hex[:4]}"
        ids = "\n".join(f"{prefix}-{i}" for i in range(args.predictions))
        tracker("add", "--file", "-", env=env, input=ids)
        flags = [
            "--poll-min",
            str(args.poll),
            "--poll-max",
            str(args.poll),
            "--max-rps",
            str(args.max_rps),
            "--concurrency",
            str(args.concurrency),
        ]
        logs = [workdir / f"daemons-{count}-d{n}.log" for n in range(1, count + 1)]
        for n, log in enumerate(logs, start=1):
            command = [sys.executable, "-m", "tracker", "daemon", *flags, "--name", f"d{n}"]
            with log.open("w") as out:
                procs.append(subprocess.Popen(command, env=env, stderr=out))
        wait_for_started(logs, procs)
        time.sleep(args.warmup)

        pids = [p.pid for p in procs]
        before = sim_requests(base)
        cpu_before = (cpu_seconds(pids), cpu_seconds([sim_pid]), postgres_cpu_seconds())
        busy_before = machine_busy()
        started = time.monotonic()
        time.sleep(args.seconds)
        after = sim_requests(base)
        elapsed = time.monotonic() - started
        cpu_after = (cpu_seconds(pids), cpu_seconds([sim_pid]), postgres_cpu_seconds())
        busy_after = machine_busy()

        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(60) for proc in procs]
        with psycopg.connect(url) as conn:
            per_daemon = dict(conn.execute("select name, polls from daemons").fetchall())
            repeated = conn.execute(
                "select count(*) from (select prediction_id, from_status, to_status"
                " from status_transitions group by 1, 2, 3 having count(*) > 1) t"
            ).fetchone()
        dropped = sum(
            log.read_text(errors="replace").count("changed since it was read") for log in logs
        )
        requests = after - before
        daemon_cpu, sim_cpu, pg_cpu = (a - b for a, b in zip(cpu_after, cpu_before, strict=True))
        busy_jiffies = busy_after[0] - busy_before[0]
        busy = busy_jiffies / max(1, busy_after[1] - busy_before[1])
        others = busy_jiffies / CLOCK_TICKS - daemon_cpu - sim_cpu - pg_cpu
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
            "machine_busy_percent": round(100 * busy, 1),
            "other_processes_cpu_seconds": round(others, 2),
            "cpus": os.cpu_count(),
            "polls_by_daemon": {name: per_daemon.get(name) for name in sorted(per_daemon)},
            "answers_dropped_as_stale": dropped,
            "repeated_transitions": repeated[0] if repeated else None,
            "exit_codes": codes,
        }
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        drop_database(dbname)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    args = parser.parse_args()

    args.json.parent.mkdir(parents=True, exist_ok=True)
    counts = [int(n) for n in args.daemons.split(",")]
    sim, base = start_simulator()
    results = []
    try:
        for round_ in range(1, args.rounds + 1):
            for count in counts:
                result = run_daemons(count, args, base, args.json.parent, sim.pid)
                results.append({"round": round_, **result})
    finally:
        sim.terminate()
        sim.wait(10)
    header = (
        f"{'round':>5}{'daemons':>8}{'polls/s':>10}{'vs 1':>7}{'polls/CPU-s':>13}"
        f"{'daemon CPU':>12}{'sim CPU':>9}{'PG CPU':>8}{'other CPU':>11}{'busy %':>8}"
        f"{'stale':>7}  polls by daemon"
    )
    print(header)
    for r in results:
        first = next(x for x in results if x["round"] == r["round"])
        ratio = r["polls_per_second"] / first["polls_per_second"]  # type: ignore[operator]
        shares = " ".join(f"{k}={v}" for k, v in r["polls_by_daemon"].items())  # type: ignore[attr-defined]
        print(
            f"{r['round']:>5}{r['daemons']:>8}{r['polls_per_second']:>10}{ratio:>7.2f}"
            f"{r['polls_per_daemon_cpu_second']:>13}{r['daemon_cpu_seconds']:>12}"
            f"{r['simulator_cpu_seconds']:>9}{r['postgres_cpu_seconds']:>8}"
            f"{r['other_processes_cpu_seconds']:>11}"
            f"{r['machine_busy_percent']:>8}{r['answers_dropped_as_stale']:>7}  {shares}"
        )
    if args.rounds > 1:
        for count in counts:
            rates = [r["polls_per_second"] for r in results if r["daemons"] == count]
            print(f"{count} daemon(s): median {statistics.median(rates):.1f} polls/s of {rates}")
    args.json.write_text(json.dumps(results, indent=2))
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
