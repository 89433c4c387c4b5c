"""The database, off the event loop: one runner shared by the poller, the
observation writer and the outbox, so every write rides out a short outage the
same way."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from tracker.exceptions import StoreError, StoreGone, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

#: waits before retrying a write the database refused (seconds): at once first, since
#: a cut connection is replaced by a fresh one from the pool, then backing off
WRITE_RETRY_DELAYS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


class Runner(Protocol):
    """How the layers above run store operations: ``read`` once, ``write`` with retries."""

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...


class DatabaseRunner:
    """Runs store operations in a small thread pool.

    ``read`` tries once (a failed claim or report is simply tried again later);
    ``write`` retries while the database is unreachable, so a result that was
    paid for (a poll, a sent webhook) is not lost to an outage of a few seconds.
    Every write it is given must be safe to repeat: a write that committed
    before its connection dropped must come back as a no-op or a known result.
    """

    def __init__(self, *, workers: int, stopping: Callable[[], bool] = lambda: False) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tracker-db")
        self._stopping = stopping
        self._down = False
        self._checks: list[Callable[[], None]] = []

    def add_check(self, check: Callable[[], None]) -> None:
        """Run ``check`` (in the pool) before every call; it raises StoreError to refuse."""
        self._checks.append(check)

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        if self._checks:
            call = functools.partial(self._checked, fn, *args, **kwargs)
        else:
            call = functools.partial(fn, *args, **kwargs)
        return await loop.run_in_executor(self._executor, call)

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        for delay in (*WRITE_RETRY_DELAYS, None):
            try:
                result = await self.read(fn, *args, **kwargs)
            except StoreUnavailable as exc:
                if delay is None or self._stopping():
                    raise
                self.note_trouble(exc)
                await asyncio.sleep(delay)
                continue
            self.note_ok()
            return result
        raise AssertionError("unreachable")

    def _checked(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        for check in self._checks:
            check()
        return fn(*args, **kwargs)

    def note_trouble(self, exc: StoreError) -> None:
        """Say once that the database is unreachable; other errors every time."""
        if isinstance(exc, StoreGone):
            return  # said once, by the check that found it
        if isinstance(exc, StoreUnavailable):
            if not self._down:
                log.error("%s; retrying", exc)
            self._down = True
        else:
            log.error("%s", exc)

    def note_ok(self) -> None:
        if self._down:
            log.warning("database reachable again")
            self._down = False

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)
