"""The daemon's deadlines: cancel, once, each active prediction whose ``deadline_at``
has passed.

Every sweep claims the due ones in one transaction (``Store.claim_deadlines``: a
conditional UPDATE of ``cancel_requested_at``, which no other daemon and no later
sweep can repeat; the ``deadline`` event is queued in it), then sends each cancel in a
task of its own through the poller's gate, so deadline cancels share the polls' request
budget and 429 pauses. A daemon that stops lets the requests in flight finish (up to
its drain time); one killed before an answer leaves its claim at ``sending``, which a
daemon claims and sends again once it has been unanswered for
``UNANSWERED_SECONDS`` (without a second ``deadline`` event).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from tracker.domain import CallbackSpec, CancelOutcome, CancelTarget
from tracker.exceptions import StoreError
from tracker.poll.cancel import Canceller
from tracker.store.cancels import DeadlineClaim
from tracker.store.runner import DatabaseRunner
from tracker.timeparse import utcnow

log = logging.getLogger(__name__)

#: how often the daemon looks for deadlines that have passed (seconds)
DEADLINE_SECONDS = 1.0
#: deadline cancels in flight at once (each claim takes at most the free room)
DEADLINE_CONCURRENCY = 8
#: a deadline cancel still ``sending`` after this long lost its daemon: sent again
#: (a live daemon's request ends well before: 3 tries, a rate-limit wait of up to 60 s)
UNANSWERED_SECONDS = 600.0
#: how often the daemon looks for such cancels (a scan of the active predictions)
RECLAIM_SECONDS = 30.0


class DeadlineQueue(Protocol):
    def next_deadline(self) -> datetime | None: ...

    def claim_deadlines(
        self, *, now: datetime, limit: int, default_callbacks: Sequence[CallbackSpec] = ()
    ) -> DeadlineClaim: ...

    def reclaim_deadline_cancels(
        self, *, now: datetime, unanswered_since: datetime, limit: int
    ) -> list[CancelTarget]: ...


class Deadlines:
    """Claims predictions past their deadline and cancels each of them once."""

    def __init__(
        self,
        queue: DeadlineQueue,
        db: DatabaseRunner,
        canceller: Canceller,
        *,
        default_callbacks: Sequence[CallbackSpec] = (),
        on_deliveries: Callable[[], None] = lambda: None,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self._queue = queue
        #: whether requests can go out now (no rate-limit pause, the key accepted):
        #: nothing is claimed before, so a deadline is not spent on a request that waits
        #: or is refused for reasons of the whole key
        self._ready = ready
        self._db = db
        self._canceller = canceller
        self._defaults = tuple(default_callbacks)
        self._on_deliveries = on_deliveries
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._reclaim_at = 0.0  #: monotonic time of the next look for unanswered cancels
        self.sent = 0  #: cancels the upstream accepted
        self.failed = 0  #: cancels it refused, or could not be reached for

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    async def sweep(self) -> int:
        """Claim the predictions whose deadline has passed, as many as there is room
        for, and start cancelling each; how many were claimed."""
        room = DEADLINE_CONCURRENCY - len(self._tasks)
        if self._stopping or room <= 0 or not self._ready():
            return 0
        now = utcnow()
        try:
            targets = await self._reclaimed(now, room)
            claim = await self._claimed(now, room - len(targets))
        except StoreError as exc:
            self._db.note_trouble(exc)
            return 0
        if claim is not None:
            targets += claim.targets
            if claim.deliveries:
                self._on_deliveries()
        for target in targets:
            task = asyncio.create_task(
                self._cancel(target), name=f"deadline {target.prediction_id}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(targets)

    async def _claimed(self, now: datetime, room: int) -> DeadlineClaim | None:
        if room <= 0:
            return None
        # a read first (on SQLite it takes no lock): most sweeps find nothing due
        due = await self._db.read(self._queue.next_deadline)
        if due is None or due > now:
            return None
        return await self._db.write(
            self._queue.claim_deadlines, now=now, limit=room, default_callbacks=self._defaults
        )

    async def _reclaimed(self, now: datetime, room: int) -> list[CancelTarget]:
        """The cancels a killed daemon left unanswered, every ``RECLAIM_SECONDS``."""
        if time.monotonic() < self._reclaim_at:
            return []
        self._reclaim_at = time.monotonic() + RECLAIM_SECONDS
        targets = await self._db.write(
            self._queue.reclaim_deadline_cancels,
            now=now,
            unanswered_since=now - timedelta(seconds=UNANSWERED_SECONDS),
            limit=room,
        )
        if targets:
            log.warning("sending %d unanswered deadline cancels again", len(targets))
        return targets

    async def tick(self) -> None:
        """The scheduled job: one sweep."""
        await self.sweep()

    async def sweep_once(self) -> None:
        """``--once``: every deadline due now is cancelled before the polls."""
        while await self.sweep():
            await asyncio.wait(set(self._tasks))
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    async def stop(self, timeout: float) -> None:
        """Claim nothing more; let the requests in flight finish, up to ``timeout``."""
        self._stopping = True
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("%d deadline cancels were not answered in time", len(pending))
            await asyncio.wait(pending)

    async def _cancel(self, target: CancelTarget) -> None:
        try:
            result = await self._canceller.send(target)
        except StoreError as exc:
            self._db.note_trouble(exc)
            return
        except Exception:
            log.exception("cancelling %s at its deadline failed", target.prediction_id)
            return
        extra = {"prediction_id": target.prediction_id}
        if result.outcome == CancelOutcome.REQUESTED:
            self.sent += 1
            log.info("%s: deadline passed, cancel requested", target.prediction_id, extra=extra)
        else:
            self.failed += 1
            log.warning("deadline passed: %s", result.message, extra=extra)
