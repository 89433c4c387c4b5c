"""Push latency: from the upstream's push to the tracker's outgoing webhook.

Runs `tracker serve` (with its daemon) as a process of its own, with
TRACKER_UPSTREAM_WEBHOOK_SECRET set and a default webhook (event `completed`) that
points at the benchmark's receiver (an aiohttp server in its own process, answering
200 at once: a healthy receiver). This process plays the upstream: for each of N
predictions it POSTs a signed `processing` push (which registers the ID), then a
signed `succeeded` push, and notes when it began sending the latter. The latency is
the arrival of that prediction's `completed` webhook at the receiver minus that
moment: verification, the write through the daemon's writer, the outbox hand-off and
the outgoing POST, all included. The pushes of different predictions go out at
``--rate`` per second, each on its own (they overlap when the service is slower).
The daemon never polls meanwhile (--poll-max is far away). Runs on SQLite and on
PostgreSQL; all processes share the machine clock.

    .venv/bin/python scripts/bench_serve.py push [--predictions 500] [--rate 10] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from .databases import new_database
from .harness import loadavg, proc_cpu_seconds, stop, tracker, tracker_env
from .receiver import start_receiver
from .serving import start_service, stop_and_drop
from .stats import summary

#: the signing secret of the benchmark's "upstream"
SECRET = "whsec_" + base64.b64encode(b"push-latency-benchmark-secret-01").decode()
#: the goal (issue 14): push to outgoing webhook, p99, with a healthy receiver (ms)
GOAL_P99_MS = 50.0


def prediction(pid: str, status: str, logs: str) -> dict[str, Any]:
    """A prediction object as Replicate pushes it."""
    body: dict[str, Any] = {
        "id": pid,
        "model": "bench/push",
        "version": "v1",
        "input": {"prompt": "latency"},
        "status": status,
        "logs": logs,
        "output": None,
        "error": None,
        "metrics": {},
        "created_at": "2026-12-01T10:00:00.000000Z",
        "started_at": "2026-12-01T10:00:01.000000Z",
        "urls": {"get": f"https://api.example/v1/predictions/{pid}"},
    }
    if status == "succeeded":
        body.update(
            output=[f"https://cdn.example/{pid}.png"],
            metrics={"predict_time": 1.5},
            completed_at="2026-12-01T10:00:03.000000Z",
        )
    return body


class Upstream:
    """Sends signed pushes to the service, as Replicate would."""

    def __init__(self, http: httpx.AsyncClient, hook: str) -> None:
        self.http = http
        self.hook = hook
        self.signer = Webhook(SECRET)
        self.answers: list[float] = []  #: seconds from sending a push to its answer
        self.refused: list[str] = []

    async def push(self, document: dict[str, Any]) -> float:
        """POST one signed push; returns when sending began (epoch seconds)."""
        body = json.dumps(document).encode()
        webhook_id = f"msg_{uuid.uuid4().hex}"
        now = datetime.now(UTC)
        began = now.timestamp()
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(began)),
            "webhook-signature": self.signer.sign(webhook_id, now, body),
        }
        try:
            answer = await self.http.post(self.hook, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self.refused.append(f"{type(exc).__name__}: {exc}")
            return began
        self.answers.append(time.time() - began)
        if answer.status_code != 200:
            self.refused.append(f"{answer.status_code} {answer.text[:200]}")
        return began

    async def one(self, pid: str) -> float:
        """A prediction's `processing` push, then its `succeeded` one (measured)."""
        await self.push(prediction(pid, "processing", "step 1\n"))
        return await self.push(prediction(pid, "succeeded", "step 1\ndone\n"))


async def send_all(hook: str, ids: list[str], rate: float) -> tuple[dict[str, float], Upstream]:
    """Every prediction's pushes, started ``rate`` per second; when each end was sent."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits, trust_env=False) as http:
        upstream = Upstream(http, hook)
        start = time.monotonic()
        tasks = []
        for n, pid in enumerate(ids):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(upstream.one(pid)))
        sent = await asyncio.gather(*tasks)
    return dict(zip(ids, sent, strict=True)), upstream


def arrivals(receiver: str, tag: str, count: int, timeout: float) -> dict[str, float]:
    """The receiver's arrival time of each prediction's webhook, once all ``count`` came."""
    deadline = time.monotonic() + timeout
    while True:
        records = httpx.get(
            f"{receiver}/records", params={"tag": tag}, timeout=30, trust_env=False
        ).json()
        if len(records) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    first: dict[str, float] = {}
    for record in records:
        first.setdefault(record["prediction_id"], record["arrival"])
    return first


def run_engine(
    engine: str, args: argparse.Namespace, receiver: str, workdir: Path
) -> dict[str, Any]:
    tag = f"push-{engine}-{uuid.uuid4().hex[:6]}"
    url, dbname = new_database(engine, workdir / f"{tag}.db")
    env = tracker_env(url, "http://127.0.0.1:9/v1")  # never polled during the run
    env.update(
        TRACKER_UPSTREAM_WEBHOOK_SECRET=SECRET,
        TRACKER_DEFAULT_WEBHOOK=f"{receiver}/hook/{tag}",
        TRACKER_DEFAULT_EVENTS="completed",
        TRACKER_POLL_MIN="1",
        TRACKER_POLL_MAX="3600",
        TRACKER_LOG_LEVEL="warning",
    )
    log_path = workdir / f"{tag}-serve.log"
    service = None
    load_before = loadavg()
    try:
        tracker("db", "upgrade", env=env)
        service, service_url = start_service(env, log_path)
        ids = [f"{tag}-{n}" for n in range(args.predictions)]
        started = time.monotonic()
        sent, upstream = asyncio.run(send_all(f"{service_url}/webhooks/upstream", ids, args.rate))
        seconds = time.monotonic() - started
        arrived = arrivals(receiver, tag, len(ids), timeout=60)
        cpu = proc_cpu_seconds(service.pid)
    finally:
        stop_and_drop(service, dbname, workdir, tag)
    latency_ms = [(arrived[pid] - sent[pid]) * 1000 for pid in ids if pid in arrived]
    return {
        "engine": engine,
        "predictions": len(ids),
        "pushes": 2 * len(ids),
        "delivered": len(latency_ms),
        "refused_pushes": len(upstream.refused),
        "refusals": upstream.refused[:10],
        "push_to_webhook": summary(latency_ms),
        "push_answer": summary([s * 1000 for s in upstream.answers]),
        "seconds": round(seconds, 2),
        "pushes_per_second": round(2 * len(ids) / seconds, 1) if seconds else None,
        "serve_cpu_seconds": round(cpu, 2),
        "serve_cpu_ms_per_push": round(cpu * 1000 / (2 * len(ids)), 1),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "serve_log": str(log_path),
    }


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(results: list[dict[str, Any]]) -> None:
    cols = f"{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}"
    print(f"{'':<11}{'':>10} | {'push -> webhook (ms)':^32} | {'push answered (ms)':^32}")
    print(f"{'engine':<11}{'delivered':>10} | {cols} | {cols}")
    for r in results:
        cells = [
            "".join(f"{fmt(s[k]):>8}" for k in ("median_ms", "p90_ms", "p99_ms", "max_ms"))
            for s in (r["push_to_webhook"], r["push_answer"])
        ]
        delivered = f"{r['delivered']}/{r['predictions']}"
        print(f"{r['engine']:<11}{delivered:>10} | {cells[0]} | {cells[1]}")
    for r in results:
        p99 = r["push_to_webhook"]["p99_ms"]
        verdict = "met" if p99 is not None and p99 < GOAL_P99_MS else "MISSED"
        print(
            f"  [{verdict:^7}] {r['engine']}: push -> webhook p99 < {GOAL_P99_MS:g} ms: {fmt(p99)}"
            f" ms ({r['pushes']} pushes in {r['seconds']} s, serve CPU {r['serve_cpu_seconds']} s,"
            f" load average {r['loadavg_before'][0]:.1f}"
            f"{', refused: ' + str(r['refused_pushes']) if r['refused_pushes'] else ''})"
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_serve.py push", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--predictions", type=int, default=500)
    parser.add_argument(
        "--rate",
        type=float,
        default=10.0,
        help="predictions pushed per second (two pushes each); well below what the service"
        " takes, so that the latency is not a queue's",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 50 predictions")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--json", type=Path, default=Path("bench-results/push-latency.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.predictions = 50
    return args


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    receiver = None
    results = []
    try:
        receiver, receiver_url = start_receiver()
        for engine in args.engines.split(","):
            results.append(run_engine(engine, args, receiver_url, args.json.parent))
    finally:
        stop(receiver)
    print_table(results)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    args.json.write_text(json.dumps({"settings": settings, "results": results}, indent=2))
    print(f"written to {args.json}")
    return results
