"""A real webhook receiver on loopback for tests: verifies every request with the
`standardwebhooks` package and behaves as its path says.

Paths: `/ok/<name>` answers 200; `/fail<N>/<name>` answers 500 to the first N
requests for each webhook-id, then 200; `/gone/<name>` answers 410;
`/hang/<name>` never answers in time; `/redirect/<name>` answers 302;
`/busy/<name>` answers 429 with `Retry-After: 1` once per webhook-id, then 200.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Received:
    at: float  #: epoch seconds on arrival
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool | None  #: None when no secret is configured
    answered: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def event(self) -> str:
        return self.headers.get("tracker-event", "")


class Receiver:
    def __init__(self, secret: str | None = None) -> None:
        self._verifier = Webhook(secret) if secret else None
        self._received: list[Received] = []
        self._seen: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def __enter__(self) -> Receiver:
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            items = list(self._received)
        if path is None:
            return items
        return [r for r in items if r.path == "/" + path.lstrip("/")]

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        # Handlers still hanging (the /hang path) are cancelled, not abandoned.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = None
        if self._verifier is not None:
            try:
                self._verifier.verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
        kind = request.path.strip("/").split("/")[0]
        with self._lock:
            self._seen[(kind, headers.get("webhook-id", ""))] += 1
            nth = self._seen[(kind, headers.get("webhook-id", ""))]
        status, extra = self._behaviour(kind, nth)
        record = Received(time.time(), request.path, headers, body, verified, status)
        with self._lock:
            self._received.append(record)
        if kind == "hang":
            await asyncio.sleep(30)
        return web.Response(status=status, headers=extra, text="ok" if status < 300 else "no")

    @staticmethod
    def _behaviour(kind: str, nth: int) -> tuple[int, dict[str, str]]:
        failing = re.fullmatch(r"fail(\d+)", kind)
        if failing:
            return (500 if nth <= int(failing[1]) else 200), {}
        if kind == "gone":
            return 410, {}
        if kind == "redirect":
            return 302, {"Location": "/ok/elsewhere"}
        if kind == "busy" and nth == 1:
            return 429, {"Retry-After": "1"}
        return 200, {}
