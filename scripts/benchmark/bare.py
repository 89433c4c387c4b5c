"""Bare GET loops, the floor under the daemon's cost per poll (issue 18 item 3): the
same GETs the daemon sends (one per prediction, ``concurrency`` at once, the API key
in a header), each answer read whole and parsed as JSON, and nothing else: no
database, no scheduling, no change detection. A third loop, ``tracker``, sends them
through the daemon's own client (``UpstreamClient``), to tell its HTTP stack's cost
from the rest of a poll's.

Run in a process of its own, beside the simulator the daemon polled:

    python -m benchmark.bare --base URL --client aiohttp --ids 2000 --seconds 10

prints one JSON line: requests answered and this process's CPU seconds over the
measured window (after ``--warmup`` seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from tracker import eventloop
from tracker.poll.upstream import UpstreamClient, make_http_client

#: aiohttp and plain httpx; ``tracker``: the daemon's own client (``UpstreamClient``:
#: httpx over aiohttp's pool, the answer's size cap, parse and checks), no database
CLIENTS = ("aiohttp", "httpx", "tracker")
#: what a bare loop gets for one prediction: the parsed answer
Get = Callable[[str], Awaitable[Any]]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(
    client: str, base: str, ids: list[str], concurrency: int, warmup: float, seconds: float
) -> dict[str, Any]:
    headers = {"Authorization": "Bearer bench"}
    if client == "aiohttp":
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

            async def get(url: str) -> Any:
                async with session.get(url) as answer:
                    return json.loads(await answer.read())

            return await _loop(get, base, ids, concurrency, warmup, seconds)
    if client == "tracker":
        async with make_http_client(max_connections=concurrency) as own:
            upstream = UpstreamClient(own, base, "bench")

            async def get_tracker(url: str) -> Any:
                return (await upstream.get_prediction(url.rsplit("/", 1)[1])).body

            return await _loop(get_tracker, base, ids, concurrency, warmup, seconds)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers=headers, limits=limits) as http:

        async def get_httpx(url: str) -> Any:
            answer = await http.get(url)
            return json.loads(answer.content)

        return await _loop(get_httpx, base, ids, concurrency, warmup, seconds)


async def _loop(
    get: Get, base: str, ids: list[str], concurrency: int, warmup: float, seconds: float
) -> dict[str, Any]:
    urls = itertools.cycle([f"{base}/predictions/{i}" for i in ids])
    done = 0
    start = time.monotonic()
    measure_from, measure_to = start + warmup, start + warmup + seconds
    window: dict[str, float] = {}

    async def worker() -> None:
        nonlocal done
        while (now := time.monotonic()) < measure_to:
            if now >= measure_from and "cpu" not in window:
                window.update(cpu=cpu_seconds(), done=done, at=now)
            await get(next(urls))
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if "cpu" not in window:  # no request ended inside the window (a very busy machine)
        return {"requests": 0, "cpu_seconds": 0.0, "seconds": 0.0, "requests_per_cpu_second": None}
    cpu, elapsed = cpu_seconds() - window["cpu"], time.monotonic() - window["at"]
    requests = done - int(window["done"])
    return {
        "requests": requests,
        "cpu_seconds": round(cpu, 3),
        "seconds": round(elapsed, 2),
        "requests_per_cpu_second": round(requests / cpu, 1) if cpu else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the simulator's API base (…/v1)")
    parser.add_argument("--client", choices=CLIENTS, required=True)
    parser.add_argument("--ids", type=int, default=2000, help="forever-eff-0 … forever-eff-N-1")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    ids = [f"forever-eff-{i}" for i in range(args.ids)]
    result = eventloop.run(  # the loop the daemon runs on, so the floor is like for like
        run(args.client, args.base, ids, args.concurrency, args.warmup, args.seconds)
    )
    print(json.dumps({"client": args.client, **result}), flush=True)


if __name__ == "__main__":
    sys.exit(main())


def measure(
    base: str, ids: int, warmup: float, seconds: float, *, together: bool = False
) -> dict[str, Any]:
    """Each bare loop in its own process against ``base``: one after the other, or
    both at once with ``together`` (``--fast``: a figure, not a measurement)."""
    procs: dict[str, subprocess.Popen[str]] = {}
    results: dict[str, Any] = {}
    for client in CLIENTS:
        flags = ["--base", base, "--client", client, "--ids", str(ids)]
        flags += ["--warmup", str(warmup), "--seconds", str(seconds)]
        procs[client] = subprocess.Popen(
            [sys.executable, "-m", "benchmark.bare", *flags],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
            text=True,
        )
        if not together:
            results[client] = _wait(procs.pop(client), warmup + seconds)
    results.update({client: _wait(proc, warmup + seconds) for client, proc in procs.items()})
    return {client: results[client] for client in CLIENTS}


def _wait(proc: subprocess.Popen[str], seconds: float) -> Any:
    out, _ = proc.communicate(timeout=seconds + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"a bare GET loop failed (exit {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])
