"""The baseline: the official client's wait() loop, one task per prediction, in its own
process (or, with ``--fast``, in a thread of the benchmark's)."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tracker.poll.ratelimit import RateLimiter
from tracker.poll.upstream import make_http_client

from .databases import TERMINAL
from .harness import module_command, proc_rss_mb, stop
from .stats import dist

#: the official client's default poll interval (replicate-python's REPLICATE_POLL_INTERVAL)
BASELINE_INTERVAL = 0.5


def serve_baseline(spec_path: str) -> None:
    """Subprocess body: create each prediction at its moment, then GET it every 0.5 s
    (sleep first, as replicate-python's wait() does) until it is terminal, all GETs
    drawing from one shared rate limit. Writes what it saw to the spec's `out`."""
    spec = json.loads(Path(spec_path).read_text())
    print("baseline ready", flush=True)
    t0 = float(sys.stdin.readline())
    asyncio.run(_baseline(spec, t0))


async def _baseline(spec: dict[str, Any], t0: float, who: int = resource.RUSAGE_SELF) -> None:
    limiter = RateLimiter(spec["max_rps"])
    interval = spec["interval"]
    results: dict[str, dict[str, Any]] = {}
    gets: list[float] = []
    errors: list[float] = []
    lags: list[float] = []
    if spec.get("http") == "httpx":  # replicate-python's own transport
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        http = httpx.AsyncClient(timeout=30, limits=limits)
    else:  # the tracker's: httpx's API over aiohttp's connection pool
        http = make_http_client(max_connections=64)
    async with http as client:

        async def follow(item: dict[str, Any]) -> None:
            pid = item["id"]
            await asyncio.sleep(max(0.0, t0 + item["offset"] - time.time()))
            await client.put(f"{spec['root']}/_sim/predictions/{pid}", json=item["plan"])
            requests = 0
            while True:
                await asyncio.sleep(interval)
                await limiter.acquire()
                requests += 1
                began = time.monotonic()
                try:
                    response = await client.get(f"{spec['base']}/predictions/{pid}")
                    body = response.json()
                except (httpx.HTTPError, ValueError):
                    errors.append(time.monotonic() - began)
                    continue
                gets.append(time.monotonic() - began)
                if body.get("status") in TERMINAL:
                    seen = time.time()
                    break
            completed = datetime.fromisoformat(body["completed_at"]).timestamp()
            results[pid] = {"seen_at": seen, "completed_at": completed, "requests": requests}

        async def loop_lag() -> None:
            while True:
                began = time.monotonic()
                await asyncio.sleep(0.1)
                lags.append(time.monotonic() - began - 0.1)

        probe = asyncio.create_task(loop_lag())
        await asyncio.gather(*(follow(item) for item in spec["items"]))
        probe.cancel()
    usage = resource.getrusage(who)
    Path(spec["out"]).write_text(
        json.dumps(
            {
                "results": results,
                "get_seconds": dist(gets),
                "errors": len(errors),
                "event_loop_lag_seconds": dist(lags),
                "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
                # VmHWM: ru_maxrss would include the parent's peak (see DaemonProcess.stop)
                "peak_rss_mb": proc_rss_mb(os.getpid()) if who == resource.RUSAGE_SELF else None,
            }
        )
    )


class BaselineClient:
    """The baseline in its own process; with ``inline`` (--fast, one process less to
    start) in a thread of this one, its CPU time taken from that thread alone."""

    def __init__(self, spec: dict[str, Any], workdir: Path, run: str, *, inline: bool) -> None:
        self.spec_path = workdir / f"{run}-baseline-spec.json"
        self.out = workdir / f"{run}-baseline-out.json"
        self.spec = {**spec, "out": str(self.out)}
        self.proc: subprocess.Popen[str] | None = None
        self.thread: threading.Thread | None = None
        if inline:
            return
        self.spec_path.write_text(json.dumps(self.spec))
        cmd, env = module_command("benchmark.baseline", str(self.spec_path))
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "ready" not in line:
            stop(self.proc)
            raise RuntimeError(f"the baseline did not start (said {line!r})")

    def go(self, t0: float) -> None:
        if self.proc is None:
            self.thread = threading.Thread(
                target=lambda: asyncio.run(_baseline(self.spec, t0, resource.RUSAGE_THREAD)),
                daemon=True,
            )
            self.thread.start()
            return
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{t0}\n")
        self.proc.stdin.flush()

    def finished(self) -> bool:
        if self.proc is None:
            return self.thread is not None and not self.thread.is_alive()
        return self.proc.poll() is not None

    def result(self) -> dict[str, Any]:
        if self.proc is not None:
            stop(self.proc)
        elif self.thread is not None:
            self.thread.join(5)
        if not self.out.exists():
            return {"results": {}, "cpu_seconds": None, "peak_rss_mb": None}
        return json.loads(self.out.read_text())


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m benchmark.baseline",
        description="Run the baseline (the official client's wait() loop) on a workload"
        " spec that the benchmark wrote (it waits for the start time on stdin and writes"
        " what it saw to the spec's `out`).",
    )
    parser.add_argument("spec", help="the JSON spec file the benchmark wrote")
    serve_baseline(parser.parse_args(argv).spec)


if __name__ == "__main__":
    main()
