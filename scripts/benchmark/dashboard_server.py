"""`tracker serve --no-daemon` for the dashboard benchmark, with two additions that live
here, not in the product: a ``Server-Timing: app;dur=MS`` header on every answer (the
time from the outermost middleware's start to the handler's return: routing, the
session, the reads, the template; not the socket write), ``X-Bench-Overview-Reading:
1`` on an answer during which the overview's numbers were being read in the
background (the list starts that read too, ``Cached.peek``), and ``POST
/_bench/forget-overview``, which drops the overview's cached numbers so that the next
overview reads them again (as the first one after a start does).

    python -m benchmark.dashboard_server --port PORT   # TRACKER_DATABASE_URL from the env
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

import tracker.service.run as run
from tracker.cli.main import main as tracker_main
from tracker.service.context import Service
from tracker.service.dashboard.web import DASHBOARD

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def server_timing(request: web.Request, handler: Handler) -> web.StreamResponse:
    began = time.perf_counter()
    reading = _overview_reading(request)
    response = await handler(request)
    response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - began) * 1000:.3f}"
    if reading or _overview_reading(request):
        response.headers["X-Bench-Overview-Reading"] = "1"
    return response


def _overview_reading(request: web.Request) -> bool:
    """Whether the overview's numbers are being read in the background (started by an
    earlier page once they were older than FRESH_SECONDS)."""
    task = request.app[DASHBOARD].overview._task
    return task is not None and not task.done()


async def forget_overview(request: web.Request) -> web.Response:
    overview = request.app[DASHBOARD].overview
    async with overview._lock:  # a read in flight finishes first
        overview._value = None
    return web.Response(text="forgotten")


def _timed(build: Callable[[Service], web.Application]) -> Callable[[Service], web.Application]:
    def build_app(service: Service) -> web.Application:
        app = build(service)
        app.middlewares.insert(0, server_timing)  # outermost
        app.router.add_post("/_bench/forget-overview", forget_overview)
        return app

    return build_app


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.dashboard_server",
        description="tracker serve --no-daemon with a Server-Timing header (the database"
        " from TRACKER_DATABASE_URL).",
    )
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    run.build_app = _timed(run.build_app)
    tracker_main(["serve", "--no-daemon", "--port", str(args.port), "--log-level", "warning"])


if __name__ == "__main__":
    main()
