"""Registrations per second through `tracker serve`'s JSON API.

Runs `tracker serve --no-daemon` as a process of its own (on a fresh database, with
TRACKER_SERVE_TOKEN set) and registers through ``POST /api/predictions``:

- single: N requests of one ID each, one after another on one keep-alive connection
  (each request's time is the latency), then N more from ``--clients`` concurrent
  connections;
- batched: ``--batches`` requests of 1,000 IDs each (goal: under 1 s each).

``--prefill N`` registers N IDs first (not measured), to see the rates on a table
that is not empty.

Every registration is a new ID, checked and written as `tracker add` writes it.
Runs on SQLite and on PostgreSQL; prints a table and writes JSON.

    .venv/bin/python scripts/bench_serve.py register [--requests 500] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from .databases import new_database
from .harness import log, machine, proc_cpu_seconds, tracker, tracker_env
from .serving import TOKEN, start_service, stop_and_drop
from .stats import summary

#: IDs in one batched request
BATCH = 1000
#: the goal (issue 14): one request of BATCH IDs, in seconds
GOAL_BATCH_SECONDS = 1.0


def single(url: str, ids: list[str]) -> dict[str, Any]:
    """One request per ID, one after another on one connection."""
    times = []
    with httpx.Client(base_url=url, headers=_auth(), timeout=60, trust_env=False) as http:
        http.get("/healthz")  # connect before the clock starts
        started = time.perf_counter()
        for pid in ids:
            sent = time.perf_counter()
            answer = http.post("/api/predictions", json={"id": pid})
            times.append((time.perf_counter() - sent) * 1000)
            _check(answer, 201)
        seconds = time.perf_counter() - started
    return {
        "requests": len(ids),
        "seconds": round(seconds, 3),
        **_rate(len(ids), seconds),
        "latency": summary(times),
    }


async def concurrent(url: str, ids: list[str], clients: int) -> dict[str, Any]:
    """One request per ID from ``clients`` connections at once."""
    queue = list(reversed(ids))
    times: list[float] = []

    async def client() -> None:
        async with httpx.AsyncClient(
            base_url=url, headers=_auth(), timeout=60, trust_env=False
        ) as http:
            while queue:
                pid = queue.pop()
                sent = time.perf_counter()
                answer = await http.post("/api/predictions", json={"id": pid})
                times.append((time.perf_counter() - sent) * 1000)
                _check(answer, 201)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    seconds = time.perf_counter() - started
    return {
        "requests": len(ids),
        "clients": clients,
        "seconds": round(seconds, 3),
        **_rate(len(ids), seconds),
        "latency": summary(times),
    }


def batched(url: str, batches: list[list[str]]) -> dict[str, Any]:
    """One request per batch of IDs."""
    times = []
    with httpx.Client(base_url=url, headers=_auth(), timeout=60, trust_env=False) as http:
        http.get("/healthz")
        for ids in batches:
            body = [{"id": pid} for pid in ids]
            sent = time.perf_counter()
            answer = http.post("/api/predictions", json=body)
            times.append(time.perf_counter() - sent)
            _check(answer, 201)
            if answer.json()["added"] != len(ids):
                raise RuntimeError(f"a batch added {answer.json()['added']} of {len(ids)}")
    total = sum(len(b) for b in batches)
    return {
        "requests": len(batches),
        "ids_per_request": BATCH,
        "seconds": round(sum(times), 3),
        **_rate(total, sum(times)),
        "request_ms": summary([t * 1000 for t in times]),
    }


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def _check(answer: httpx.Response, status: int) -> None:
    if answer.status_code != status:
        raise RuntimeError(
            f"{answer.request.method} {answer.request.url.path}:"
            f" {answer.status_code} {answer.text[:200]}"
        )


def _rate(count: int, seconds: float) -> dict[str, float | None]:
    return {"per_second": round(count / seconds, 1) if seconds else None}


def run_engine(engine: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    tag = f"register-{engine}-{uuid.uuid4().hex[:6]}"
    url, dbname = new_database(engine, workdir / f"{tag}.db")
    env = tracker_env(url, "http://127.0.0.1:9/v1")  # nothing is polled: --no-daemon
    env.update(TRACKER_SERVE_TOKEN=TOKEN, TRACKER_LOG_LEVEL="warning")
    log_path = workdir / f"{tag}-serve.log"
    service = None
    try:
        tracker("db", "upgrade", env=env)
        service, service_url = start_service(env, log_path, "--no-daemon")
        if args.prefill:
            log(f"{engine}: registering {args.prefill:,} first (not measured)")
            starts = range(0, args.prefill, BATCH)
            prefill = [
                [f"{tag}-p{i}" for i in range(c, min(c + BATCH, args.prefill))] for c in starts
            ]
            batched(service_url, prefill)
        n = args.requests
        log(
            f"{engine}: {n} single requests, {n} from {args.clients} clients, "
            f"{args.batches} batches of {BATCH}"
        )
        one = single(service_url, [f"{tag}-s{i}" for i in range(n)])
        many = asyncio.run(concurrent(service_url, [f"{tag}-c{i}" for i in range(n)], args.clients))
        batches = [[f"{tag}-b{b}-{i}" for i in range(BATCH)] for b in range(args.batches)]
        batch = batched(service_url, batches)
        cpu = proc_cpu_seconds(service.pid)
    finally:
        stop_and_drop(service, dbname, workdir, tag)
    return {
        "engine": engine,
        "prefill": args.prefill,
        "single": one,
        "concurrent": many,
        "batched": batch,
        "serve_cpu_seconds": round(cpu, 2),
        "serve_log": str(log_path),
    }


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def print_table(results: list[dict[str, Any]]) -> None:
    print(
        f"{'engine':<11} | {'single (1 ID per request)':^29} | {'concurrent':^19} |"
        f" {'batched (1,000 IDs per request)':^33}"
    )
    print(
        f"{'':<11} | {'IDs/s':>9}{'p50 ms':>10}{'p99 ms':>10} | {'clients':>8}{'IDs/s':>11} |"
        f" {'IDs/s':>9}{'p50 s':>8}{'max s':>8}{'goal':>8}"
    )
    for r in results:
        one, many, batch = r["single"], r["concurrent"], r["batched"]
        worst = batch["request_ms"]["max_ms"] / 1000
        met = "met" if worst < GOAL_BATCH_SECONDS else "MISSED"
        print(
            f"{r['engine']:<11} | {fmt(one['per_second']):>9}"
            f"{fmt(one['latency']['median_ms']):>10}{fmt(one['latency']['p99_ms']):>10} |"
            f" {many['clients']:>8}{fmt(many['per_second']):>11} |"
            f" {fmt(batch['per_second']):>9}{batch['request_ms']['median_ms'] / 1000:>8.3f}"
            f"{worst:>8.3f}{met:>8}"
        )
    print(f"goal: {BATCH:,} IDs in one request in under {GOAL_BATCH_SECONDS:g} s (every batch)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_serve.py register", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=500,
        help="single-ID requests, sequential and again concurrent",
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections")
    parser.add_argument("--batches", type=int, default=5, help=f"requests of {BATCH:,} IDs")
    parser.add_argument(
        "--prefill", type=int, default=0, help="register this many IDs first (not measured)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 50 requests, 1 batch")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--json", type=Path, default=Path("bench-results/serve-register.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.requests = min(args.requests, 50)
        args.batches = 1
    return args


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    results = [run_engine(engine, args, args.json.parent) for engine in args.engines.split(",")]
    print_table(results)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report = {
        "benchmark": "register",
        "settings": settings,
        "machine": machine(),
        "results": results,
    }
    args.json.write_text(json.dumps(report, indent=2))
    print(f"results: {args.json}")
    return results
