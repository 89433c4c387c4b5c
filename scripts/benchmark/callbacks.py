"""Callback latency: how long after the tracker records a completion its webhook arrives.

Starts the simulator and a webhook receiver (an aiohttp server recording the arrival
time of every POST) in their own processes, registers N predictions (`ok-*`, whose
completions are spread over the run) with `tracker add --webhook URL` (event
`completed`), runs `tracker daemon --exit-when-done` and compares, per prediction, the
`observed_at` of its terminal status transition with the arrival of its webhook. The
upstream detection latency (`observed_at` - upstream `completed_at`) is shown for
context. Runs on SQLite and on PostgreSQL, prints a table and writes JSON. All
processes share the machine clock, so wall-clock differences are valid.

    .venv/bin/python scripts/bench_callbacks.py [--predictions 1000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from .databases import drop_database, new_database, read_database
from .harness import (
    SimulatorProcess,
    log_counts,
    source_state,
    stop,
    terminate_on_sigterm,
    tracker,
    tracker_env,
    wait_for_exit,
)
from .receiver import start_receiver
from .stats import summary

#: a delivery slower than this is listed as slow (milliseconds)
SLOW_MS = 1000.0


def run_engine(
    engine: str, args: argparse.Namespace, base: str, receiver: str, workdir: Path
) -> dict[str, Any]:
    tag = f"{engine}-{uuid.uuid4().hex[:6]}"
    url, dbname = new_database(engine, workdir / f"callbacks-{tag}.db")
    env = tracker_env(url, base)
    log_path = workdir / f"callbacks-daemon-{engine}.log"
    try:
        tracker("db", "upgrade", env=env)
        ids = [f"ok-{tag}-{i}" for i in range(args.predictions)]
        webhook = f"{receiver}/hook/{tag}"
        tracker("add", "--file", "-", "--webhook", webhook, env=env, input="\n".join(ids))
        daemon = _run_daemon(args, env, log_path)
        records = httpx.get(f"{receiver}/records", params={"tag": tag}, timeout=30).json()
        db = read_database(url)
    finally:
        if dbname is None and not args.keep_db:
            for leftover in workdir.glob(f"callbacks-{tag}.db*"):
                leftover.unlink(missing_ok=True)
        drop_database(dbname)
    return {
        "engine": engine,
        "expected": args.predictions,
        **_latencies(db, records, args.window),
        "send_duration": summary(db["attempt_durations"]),
        "delivery_states": db["delivery_states"],
        "delivery_attempts": db["attempts"],
        "failed_attempts": db["failed_attempts"],
        **daemon,
        "daemon_log": str(log_path),
        "daemon_log_counts": log_counts(log_path),
    }


def _run_daemon(args: argparse.Namespace, env: dict[str, str], log_path: Path) -> dict[str, Any]:
    """`tracker daemon --exit-when-done` until it exits: its exit code, time, CPU and RSS."""
    cmd = [sys.executable, "-m", "tracker", "daemon", "--exit-when-done"]
    cmd += ["--max-rps", str(args.max_rps), "--concurrency", str(args.concurrency)]
    cmd += ["--poll-min", str(args.poll_min), "--poll-max", str(args.poll_max)]
    started = time.monotonic()
    daemon = None
    try:
        with log_path.open("w") as log_file:
            daemon = subprocess.Popen(cmd, env=env, stderr=log_file)
            exit_code, cpu, rss = wait_for_exit(daemon, args.timeout)
    finally:
        stop(daemon)
    return {
        "daemon_exit_code": exit_code,
        "daemon_seconds": round(time.monotonic() - started, 1),
        "daemon_cpu_seconds": round(cpu, 2),
        "daemon_peak_rss_mb": round(rss, 1),
    }


def _latencies(db: dict[str, Any], records: list[dict[str, Any]], window: float) -> dict[str, Any]:
    """Per prediction: its terminal transition against its webhook's arrival."""
    terminal = db["terminal"]
    arrivals: dict[str, float] = {}
    duplicates = 0
    for rec in records:
        if rec["event"] != "completed" or rec["prediction_id"] not in terminal:
            continue
        if rec["prediction_id"] in arrivals:
            duplicates += 1
            continue
        arrivals[rec["prediction_id"]] = rec["arrival"]
    callback_ms = {pid: (at - terminal[pid]["observed_at"]) * 1000 for pid, at in arrivals.items()}
    detect_ms = [
        (t["observed_at"] - t["completed_at"]) * 1000
        for t in terminal.values()
        if t["completed_at"] is not None and t["from_status"] is not None
    ]
    observed = sorted(t["observed_at"] for t in terminal.values())
    arrived = sorted(arrivals.values())
    slowest = sorted(callback_ms.items(), key=lambda kv: kv[1], reverse=True)[:10]
    return {
        "terminal_recorded": len(terminal),
        "delivered": len(arrivals),
        "posts_received": len(records),
        "duplicate_posts": duplicates,
        "callback_latency": summary(list(callback_ms.values())),
        "callback_slow_count": sum(1 for v in callback_ms.values() if v > SLOW_MS),
        "negative_latency_count": sum(1 for v in callback_ms.values() if v < 0),
        "slowest": [{"prediction_id": pid, "ms": round(ms, 1)} for pid, ms in slowest],
        "detection_latency": summary(detect_ms),
        "completions_spread_seconds": round(observed[-1] - observed[0], 2) if observed else None,
        "arrivals_spread_seconds": round(arrived[-1] - arrived[0], 2) if arrived else None,
        "by_completion_window": windows(terminal, callback_ms, window),
    }


def windows(
    terminal: dict[str, dict[str, Any]], callback_ms: dict[str, float], width: float
) -> list[dict[str, Any]]:
    """Callback latency of the predictions completed in each ``width``-second window
    (counted from the first recorded completion): shows whether a backlog builds up."""
    if not terminal:
        return []
    first = min(t["observed_at"] for t in terminal.values())
    completed: dict[int, int] = {}
    latencies: dict[int, list[float]] = {}
    for pid, t in terminal.items():
        index = int((t["observed_at"] - first) // width)
        completed[index] = completed.get(index, 0) + 1
        if pid in callback_ms:
            latencies.setdefault(index, []).append(callback_ms[pid])
    result = []
    for index in sorted(completed):
        stats = summary(latencies.get(index, []))
        result.append(
            {
                "from_s": index * width,
                "completed": completed[index],
                "delivered": stats["count"],
                "median_ms": stats["median_ms"],
                "max_ms": stats["max_ms"],
            }
        )
    return result


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(results: list[dict[str, Any]]) -> None:
    print(
        f"{'':<11}{'':>11} | {'tracked -> webhook arrival (ms)':^35} |"
        f" {'upstream -> tracked (ms)':^35}"
    )
    cols = f"{'median':>8}{'p90':>9}{'p99':>9}{'max':>9}"
    print(f"{'engine':<11}{'delivered':>11} | {cols} | {cols}")
    for r in results:
        cb, det = r["callback_latency"], r["detection_latency"]
        delivered = f"{r['delivered']}/{r['expected']}"
        cells = [
            f"{fmt(s['median_ms']):>8}{fmt(s['p90_ms']):>9}{fmt(s['p99_ms']):>9}"
            f"{fmt(s['max_ms']):>9}"
            for s in (cb, det)
        ]
        print(f"{r['engine']:<11}{delivered:>11} | {cells[0]} | {cells[1]}")


def print_notes(results: list[dict[str, Any]]) -> None:
    for r in results:
        span = r["arrivals_spread_seconds"] or 0
        rate = f"{r['delivered'] / span:.1f}/s" if span else "-"
        print(
            f"{r['engine']}: {r['callback_slow_count']} of {r['delivered']} webhooks later than"
            f" {SLOW_MS / 1000:g} s; completions over {r['completions_spread_seconds']} s,"
            f" arrivals over {span} s ({rate}); {r['delivery_attempts']} attempts,"
            f" {r['failed_attempts']} failed, {r['duplicate_posts']} duplicates;"
            f" daemon exit {r['daemon_exit_code']} after {r['daemon_seconds']} s"
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--predictions", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 100 predictions")
    parser.add_argument("--run-median", type=float, default=5.0, help="simulator run time (s)")
    parser.add_argument("--queue-seconds", type=float, default=1.0, help="simulator queue (s)")
    parser.add_argument("--poll-min", type=float, default=0.5)
    parser.add_argument("--poll-max", type=float, default=2.0)
    parser.add_argument("--max-rps", type=float, default=400)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=300, help="longest daemon run (s)")
    parser.add_argument("--window", type=float, default=5.0, help="seconds per JSON window")
    parser.add_argument("--keep-db", action="store_true", help="keep the SQLite database file")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--json", type=Path, default=Path("bench-results/callbacks.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.predictions = 100
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    terminate_on_sigterm()
    source = source_state()  # before the run: the tree may change while it goes on
    args.json.parent.mkdir(parents=True, exist_ok=True)
    sim = receiver = None
    results = []
    try:
        sim = SimulatorProcess(
            "--run-median", str(args.run_median), "--queue-seconds", str(args.queue_seconds)
        )
        receiver, receiver_url = start_receiver()
        for engine in args.engines.split(","):
            results.append(run_engine(engine, args, sim.base, receiver_url, args.json.parent))
    finally:
        stop(receiver)
        if sim is not None:
            sim.stop()
    print_table(results)
    print_notes(results)
    report = {
        "source": source,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "results": results,
    }
    args.json.write_text(json.dumps(report, indent=2))
    print(f"written to {args.json}")
