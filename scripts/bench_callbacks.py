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
import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from bench_poll import drop_database, free_port, new_database, tracker, tracker_env

PG_ADMIN = os.environ.get("TRACKER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
TERMINAL = ("succeeded", "failed", "canceled", "aborted")
#: a delivery slower than this is listed as slow (milliseconds)
SLOW_MS = 1000.0


# -- the webhook receiver (its own process) -----------------------------------


def serve_receiver(port: int) -> None:
    """Answer every POST /hook/{tag} with 200 at once, remembering when it arrived."""
    from aiohttp import web

    records: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        arrival = time.time()
        body = await request.read()
        try:
            prediction = json.loads(body)
            prediction_id, status = prediction.get("id"), prediction.get("status")
        except (ValueError, AttributeError):
            prediction_id = status = None
        records.append(
            {
                "tag": request.match_info["tag"],
                "arrival": arrival,
                "prediction_id": prediction_id,
                "status": status,
                "event": request.headers.get("tracker-event"),
                "webhook_id": request.headers.get("webhook-id"),
            }
        )
        return web.Response(text="ok")

    async def get_records(request: web.Request) -> web.Response:
        tag = request.query.get("tag")
        return web.json_response([r for r in records if tag is None or r["tag"] == tag])

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/hook/{tag}", hook)
        app.router.add_get("/records", get_records)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        await web.SockSite(runner, sock, backlog=1024).start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        print(f"receiver listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
        try:
            await stopping.wait()
        finally:
            await runner.cleanup()

    asyncio.run(serve())


# -- helpers --------------------------------------------------------------------


def start_listening(cmd: list[str], what: str) -> tuple[subprocess.Popen[str], str]:
    """Start a server process that prints '... listening on URL' once ready."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        stop(proc)
        raise RuntimeError(f"the {what} did not start (said {line!r})")
    return proc, line.rsplit(" ", 1)[1].strip()


def start_simulator(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "tracker", "simulate", "--port", str(free_port())]
    cmd += ["--run-median", str(args.run_median), "--queue-seconds", str(args.queue_seconds)]
    return start_listening(cmd, "simulator")


def start_receiver() -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-receiver", "0"]
    return start_listening(cmd, "receiver")


def stop(proc: subprocess.Popen[Any] | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not go within ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_daemon(proc: subprocess.Popen[Any], timeout: float) -> tuple[int, float, float]:
    """Wait for the daemon to exit by itself (SIGTERM after ``timeout`` seconds, SIGKILL 15 s
    later); returns (exit code, CPU seconds, peak RSS MB)."""
    deadline = time.monotonic() + timeout
    signalled = None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
        now = time.monotonic()
        if signalled is None and now > deadline:
            print(f"daemon still running after {timeout:g} s: stopping it", file=sys.stderr)
            proc.send_signal(signal.SIGTERM)
            signalled = now
        elif signalled is not None and now > signalled + 15:
            proc.kill()
        time.sleep(0.05)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of ``values`` (0 < q <= 100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary(values: list[float]) -> dict[str, float | int | None]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 1)

    return {
        "count": len(values),
        "median_ms": r(percentile(values, 50)),
        "p90_ms": r(percentile(values, 90)),
        "p99_ms": r(percentile(values, 99)),
        "max_ms": r(max(values) if values else None),
        "min_ms": r(min(values) if values else None),
    }


def read_database(url: str) -> dict[str, Any]:
    """Terminal transitions with upstream completion times, and delivery bookkeeping."""
    from sqlalchemy import func, select

    from tracker.store.engine import make_engine
    from tracker.store.tables import deliveries, delivery_attempts, predictions, status_transitions

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            first_terminal = (
                select(func.min(status_transitions.c.id))
                .where(status_transitions.c.to_status.in_(TERMINAL))
                .group_by(status_transitions.c.prediction_id)
            )
            rows = conn.execute(
                select(
                    status_transitions.c.prediction_id,
                    status_transitions.c.from_status,
                    status_transitions.c.to_status,
                    status_transitions.c.observed_at,
                    predictions.c.completed_at,
                )
                .join(predictions, predictions.c.id == status_transitions.c.prediction_id)
                .where(status_transitions.c.id.in_(first_terminal))
            ).all()
            states = dict(
                conn.execute(
                    select(deliveries.c.state, func.count()).group_by(deliveries.c.state)
                ).all()
            )
            attempts = conn.execute(select(func.count()).select_from(delivery_attempts)).scalar()
            failed_attempts = conn.execute(
                select(func.count())
                .select_from(delivery_attempts)
                .where(delivery_attempts.c.error.is_not(None))
            ).scalar()
            durations = [
                float(d)
                for d in conn.execute(
                    select(delivery_attempts.c.duration_ms).where(
                        delivery_attempts.c.duration_ms.is_not(None)
                    )
                ).scalars()
            ]
    finally:
        engine.dispose()
    return {
        "terminal": {
            r.prediction_id: {
                "from_status": r.from_status,
                "to_status": r.to_status,
                "observed_at": r.observed_at.timestamp(),
                "completed_at": r.completed_at.timestamp() if r.completed_at else None,
            }
            for r in rows
        },
        "delivery_states": states,
        "attempts": attempts,
        "failed_attempts": failed_attempts,
        "attempt_durations": durations,
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


def source_state() -> dict[str, Any]:
    """The commit and uncommitted files of the tracker that was measured."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"), "dirty": git("status", "--porcelain").splitlines()}


def log_counts(path: Path) -> dict[str, int]:
    counts = {"lines": 0, "WARNING": 0, "ERROR": 0, "claim_lost": 0}
    for line in path.read_text(errors="replace").splitlines():
        counts["lines"] += 1
        for level in ("WARNING", "ERROR"):
            if level in line:
                counts[level] += 1
        if "claim lost" in line:
            counts["claim_lost"] += 1
    return counts


# -- one engine -------------------------------------------------------------------


def run_engine(
    engine: str, args: argparse.Namespace, base: str, receiver: str, workdir: Path
) -> dict[str, Any]:
    tag = f"{engine}-{uuid.uuid4().hex[:6]}"
    url, dbname = new_database(engine, workdir / f"callbacks-{tag}.db")
    env = tracker_env(url, base)
    daemon: subprocess.Popen[bytes] | None = None
    log_path = workdir / f"callbacks-daemon-{engine}.log"
    try:
        tracker("db", "upgrade", env=env)
        ids = [f"ok-{tag}-{i}" for i in range(args.predictions)]
        webhook = f"{receiver}/hook/{tag}"
        tracker("add", "--file", "-", "--webhook", webhook, env=env, input="\n".join(ids))
        cmd = [sys.executable, "-m", "tracker", "daemon", "--exit-when-done"]
        cmd += ["--max-rps", str(args.max_rps), "--concurrency", str(args.concurrency)]
        cmd += ["--poll-min", str(args.poll_min), "--poll-max", str(args.poll_max)]
        started = time.monotonic()
        with log_path.open("w") as log_file:
            daemon = subprocess.Popen(cmd, env=env, stderr=log_file)
            exit_code, cpu, rss = wait_daemon(daemon, args.timeout)
        elapsed = time.monotonic() - started
        records = httpx.get(f"{receiver}/records", params={"tag": tag}, timeout=30).json()
        db = read_database(url)
    finally:
        stop(daemon)
        if dbname is None and not args.keep_db:
            for leftover in workdir.glob(f"callbacks-{tag}.db*"):
                leftover.unlink(missing_ok=True)
        drop_database(dbname)

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
        "engine": engine,
        "expected": args.predictions,
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
        "by_completion_window": windows(terminal, callback_ms, args.window),
        "send_duration": summary(db["attempt_durations"]),
        "delivery_states": db["delivery_states"],
        "delivery_attempts": db["attempts"],
        "failed_attempts": db["failed_attempts"],
        "daemon_exit_code": exit_code,
        "daemon_seconds": round(elapsed, 1),
        "daemon_cpu_seconds": round(cpu, 2),
        "daemon_peak_rss_mb": round(rss, 1),
        "daemon_log": str(log_path),
        "daemon_log_counts": log_counts(log_path),
    }


# -- main -------------------------------------------------------------------------


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks: stop processes, drop databases


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    parser.add_argument("--serve-receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver is not None:
        serve_receiver(args.serve_receiver)
        return
    if args.quick:
        args.predictions = 100

    signal.signal(signal.SIGTERM, _terminate)
    source = source_state()  # before the run: the tree may change while it goes on
    args.json.parent.mkdir(parents=True, exist_ok=True)
    sim = receiver = None
    results = []
    try:
        sim, base = start_simulator(args)
        receiver, receiver_url = start_receiver()
        for engine in args.engines.split(","):
            results.append(run_engine(engine, args, base, receiver_url, args.json.parent))
    finally:
        stop(receiver)
        stop(sim)
    print_table(results)
    print_notes(results)
    report = {
        "source": source,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "results": results,
    }
    args.json.write_text(json.dumps(report, indent=2))
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
