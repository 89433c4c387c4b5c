"""`tracker serve` in the test's event loop, on 127.0.0.1 and a port the system picks,
for tests that talk to it with a real HTTP client (httpx)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import text

from tracker.config import Settings
from tracker.service.run import Listening, serve
from tracker.store.store import Store

#: the bearer token the tests' services ask for
TOKEN = "serve-token-DO-NOT-LEAK-5c2e"


def settings_for(database_url: str, **env: str) -> Settings:
    """Settings from exactly these variables (never the test process's environment):
    the database, TOKEN, webhooks to loopback allowed."""
    variables = {
        "TRACKER_DATABASE_URL": database_url,
        "TRACKER_SERVE_TOKEN": TOKEN,
        "TRACKER_WEBHOOK_ALLOWED_HOSTS": "loopback",
        **env,
    }
    return Settings.build(env={k: v for k, v in variables.items() if v})


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows ``sql`` reads from the database at ``url``, as plain tuples."""
    store = Store.from_url(url)
    try:
        with store.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        store.close()


@dataclass
class Running:
    url: str
    stop: asyncio.Event
    task: asyncio.Task[int]

    def client(self, token: str | None = TOKEN, **kwargs: object) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running_service(
    settings: Settings, *, with_daemon: bool = False
) -> AsyncIterator[Running]:
    """The service until the block ends; then it is stopped as SIGTERM stops it, and
    must exit 0."""
    stop = asyncio.Event()
    ready: asyncio.Future[Listening] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(
            settings,
            host="127.0.0.1",
            port=0,
            with_daemon=with_daemon,
            on_listening=ready.set_result,
            stop=stop,
            handle_signals=False,
        )
    )
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        task.result()  # raises what stopped it
        raise AssertionError("the service ended before listening")
    running = Running(ready.result().url, stop, task)
    try:
        yield running
    finally:
        stop.set()
        code = await asyncio.wait_for(task, 60)
    assert code == 0
