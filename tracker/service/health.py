"""``GET /healthz``: the judgement of `tracker status` (``tracker.health``), for a load
balancer or an orchestrator. 200 ``{"status": "ok", ...}`` when healthy; 503 with
``"status": "unhealthy"`` and the ``problems``, or ``"unknown"`` when the database
cannot be read (or does not answer within CHECK_TIMEOUT)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tracker.health import Verdict, judge, unknown
from tracker.service.context import SERVICE, Service
from tracker.timeparse import utcnow

#: seconds the database has to answer a health check
CHECK_TIMEOUT = 5.0


def add_routes(app: web.Application, service: Service) -> None:
    app.router.add_get("/healthz", healthz)


async def healthz(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    try:
        verdict = await asyncio.wait_for(
            asyncio.to_thread(judge, service.store, now=utcnow()), CHECK_TIMEOUT
        )
    except TimeoutError:
        verdict = unknown(f"the database did not answer within {CHECK_TIMEOUT:g} s")
    return web.json_response(
        {"status": status_word(verdict), **verdict.report()},
        status=200 if verdict.healthy else 503,
    )


def status_word(verdict: Verdict) -> str:
    if verdict.healthy is None:
        return "unknown"
    return "ok" if verdict.healthy else "unhealthy"
