"""Periodic jobs on APScheduler (an in-process timer, never a shared job store),
which shutdown lets finish instead of cancelling."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)

Job = Callable[[], Coroutine[Any, Any, None]]

#: every job: one run at a time, missed runs folded into one
_COMMON: dict[str, Any] = {"max_instances": 1, "coalesce": True, "misfire_grace_time": 5}


class Jobs:
    def __init__(self, stopping: asyncio.Event) -> None:
        self._stopping = stopping
        self._scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        self._running: set[asyncio.Future[None]] = set()

    def every(self, seconds: float, job: Job, *, first: datetime | None = None) -> None:
        """Run ``job`` every ``seconds`` (the first time at ``first``, if given)."""
        when = {} if first is None else {"next_run_time": first}
        self._scheduler.add_job(self._shielded(job), "interval", seconds=seconds, **when, **_COMMON)

    async def run_until_stopped(self) -> None:
        self._scheduler.start()
        try:
            await self._stopping.wait()
        finally:
            await self._shut_down()

    async def _shut_down(self) -> None:
        """Stop the timer, then let every job already handed to the loop start.

        AsyncIOScheduler shuts down on a later turn of the loop and cancels the jobs
        it handed over before they began, which its executor logs as a crash; paused
        first, it hands over none, and the ones handed over start (and shield
        themselves) before the shutdown reaches them.
        """
        self._scheduler.pause()
        await asyncio.sleep(0)
        self._scheduler.shutdown(wait=False)
        await asyncio.sleep(0)
        await self._finish()

    def _shielded(self, job: Job) -> Callable[[], Any]:
        """``job`` in its own task, which shutdown waits for.

        APScheduler cancels the jobs still running when it shuts down; a claim
        cancelled while it waits for the database would still commit in its thread,
        unseen, and the cancellation would be logged as a crash.
        """

        @functools.wraps(job)
        async def run() -> None:
            task = asyncio.ensure_future(job())
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not self._stopping.is_set():
                    raise

        return run

    async def _finish(self) -> None:
        if not self._running:
            return
        done, _ = await asyncio.wait(set(self._running))
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("a scheduled job failed at shutdown", exc_info=task.exception())
