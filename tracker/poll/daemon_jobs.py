"""The daemon's scheduled jobs: the table of what runs how often while it polls (the
due-work tick, the summary line, the outbox's and the archiver's ticks, heartbeats,
deadlines, pruning, --exit-when-done) and the jobs themselves. They run on ``Jobs``
(APScheduler, an in-process timer) until the daemon stops; ``tracker.poll.daemon``
owns the life around them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from tracker.archive.archiver import Archiver
from tracker.callbacks.outbox import Outbox
from tracker.config import LIVE_WITHIN_SECONDS, Settings
from tracker.exceptions import StoreError
from tracker.poll.deadlines import DEADLINE_SECONDS, Deadlines
from tracker.poll.jobs import Jobs
from tracker.poll.poller import Poller
from tracker.poll.stats import IntervalSummary, Snapshot
from tracker.store.interfaces import DaemonStore
from tracker.store.retention import PruneResult
from tracker.store.runner import DatabaseRunner
from tracker.timeparse import utcnow

#: the daemon's logger: the summary lines and pruning are the daemon's to tell
log = logging.getLogger("tracker.poll.daemon")

#: how often the due-work tick runs (seconds)
TICK_SECONDS = 0.1
#: how often the outbox looks for due deliveries besides being woken (seconds)
OUTBOX_SECONDS = 0.25
#: --exit-when-done still waits for delivery retries due within this many seconds
EXIT_RETRY_HORIZON_SECONDS = 60.0
#: how often the archiver looks for due downloads besides being woken (seconds)
ARCHIVE_SECONDS = 1.0
#: with --prune-older-than, how often old history is pruned (seconds)
PRUNE_SECONDS = 3600.0


class HealthCheck(Protocol):
    """``Store.health``: the database's state, which the summary line ends with."""

    def __call__(self, *, now: datetime, live_within: timedelta) -> Snapshot: ...


async def prune_in_batches(
    store: DaemonStore, db: DatabaseRunner, older_than: timedelta, stopping: asyncio.Event
) -> None:
    """Prune history older than ``older_than`` one batch (one short transaction) at a
    time, so polls and deliveries keep getting the database in between."""
    cutoff = utcnow() - older_than
    total = PruneResult()
    try:
        batches = store.prune_batches(cutoff=cutoff)
        while not stopping.is_set():
            batch = await db.read(next, batches, None)
            if batch is None:
                break
            total += batch
    except StoreError as exc:
        log.error("pruning stopped: %s", exc)
    except Exception:
        log.exception("pruning stopped by an unexpected error")
    log.info(
        "pruned predictions finished before %s: %s",
        cutoff.isoformat(timespec="seconds"),
        total.summary(),
    )


class DaemonJobs:
    """The jobs of one daemon (``owner``), over the parts it was handed; ``stop`` is the
    daemon's (``--exit-when-done`` calls it when nothing is left)."""

    def __init__(
        self,
        store: DaemonStore,
        settings: Settings,
        *,
        owner: str,
        db: DatabaseRunner,
        poller: Poller,
        outbox: Outbox,
        archiver: Archiver | None,
        deadlines: Deadlines | None,
        health: HealthCheck | None,
        summary: IntervalSummary,
        stopping: asyncio.Event,
        stop: Callable[[], None],
    ) -> None:
        self.store = store
        self.settings = settings
        self.owner = owner
        self.db = db
        self.poller = poller
        self.outbox = outbox
        self.archiver = archiver
        self.deadlines = deadlines
        self._health = health
        self._summary = summary
        self._stopping = stopping
        self._stop = stop

    async def run(
        self, *, exit_when_done: bool, heartbeat_seconds: float, first_prune_delay: float
    ) -> None:
        """Run the jobs until the daemon stops."""
        jobs = Jobs(self._stopping)
        jobs.every(TICK_SECONDS, self.poller.tick)
        jobs.every(self.settings.log_interval, self.report)
        jobs.every(OUTBOX_SECONDS, self._outbox_tick)
        jobs.every(heartbeat_seconds, self.heartbeat)
        if self.archiver is not None:
            jobs.every(ARCHIVE_SECONDS, self._archive_tick)
        if self.deadlines is not None:
            jobs.every(DEADLINE_SECONDS, self.deadlines.tick)
        if self.settings.prune_older_than is not None:
            first = utcnow() + timedelta(seconds=first_prune_delay)
            jobs.every(PRUNE_SECONDS, self.prune, first=first)
        if exit_when_done:
            jobs.every(1.0, self._stop_when_done)
        await jobs.run_until_stopped()

    async def heartbeat(self) -> None:
        """Say the daemon is alive and extend the leases of what it holds."""
        now = utcnow()
        try:
            await self.db.read(
                self.store.heartbeat,
                self.owner,
                now=now,
                polls=self.poller.stats.requests,
                lease_until=now + timedelta(seconds=self.settings.lease_seconds),
                in_flight=self.poller.in_flight,
            )
        except StoreError as exc:
            self.db.note_trouble(exc)
        if self.archiver is not None:
            await self.archiver.renew_leases()

    async def _outbox_tick(self) -> None:
        self.outbox.wake()

    def _archiving(self) -> bool:
        return self.archiver is not None and self.archiver.busy

    async def _archive_tick(self) -> None:
        if self.archiver is not None:
            self.archiver.wake()

    async def report(self) -> None:
        """The failing endpoints' interval lines, then the summary of the interval."""
        self.poller.failure_log.flush()
        self.outbox.failure_log.flush()
        snapshot = None
        if self._health is not None:
            try:
                snapshot = await self.db.read(
                    self._health, now=utcnow(), live_within=timedelta(seconds=LIVE_WITHIN_SECONDS)
                )
            except StoreError as exc:
                self.db.note_trouble(exc)
        text, fields = self._summary.take(snapshot, len(self.poller.in_flight))
        log.info("%s", text, extra=fields)

    async def prune(self) -> None:
        if self.settings.prune_older_than is not None:
            older_than = timedelta(seconds=self.settings.prune_older_than)
            await prune_in_batches(self.store, self.db, older_than, self._stopping)

    async def _stop_when_done(self) -> None:
        archiving = self.archiver is not None
        if self.poller.in_flight or self.outbox.busy or self._archiving():
            return
        if self.deadlines is not None and self.deadlines.busy:
            return
        try:
            active = await self.db.read(self.store.count_active)
            kinds = tuple(self.outbox.senders)
            due = await self.db.read(self.store.next_delivery_due, kinds) if kinds else None
            files = await self.db.read(self.store.next_artifact_due) if archiving else None
        except StoreError:
            return
        soon = utcnow() + timedelta(seconds=EXIT_RETRY_HORIZON_SECONDS)
        if active == 0 and all(at is None or at > soon for at in (due, files)):
            log.info("no active predictions left")
            self._stop()
