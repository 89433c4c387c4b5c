"""The daemon's scheduled jobs: the table of what runs how often while it polls (the
due-work tick, the summary line, the outbox's and the archiver's ticks, heartbeats,
deadlines, pruning, --exit-when-done) and the jobs themselves. They run on ``Jobs``
(APScheduler, an in-process timer) until the daemon stops; ``tracker.poll.daemon``
owns the life around them."""

from __future__ import annotations

import asyncio
import logging
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


class DaemonParts(Protocol):
    """What the jobs use of the daemon (``tracker.poll.daemon.Daemon``): the parts it was
    handed, and its ``stop`` (``--exit-when-done`` calls it when nothing is left)."""

    store: DaemonStore
    settings: Settings
    owner: str
    db: DatabaseRunner
    poller: Poller
    outbox: Outbox
    archiver: Archiver | None
    deadlines: Deadlines | None

    def stop(self) -> None: ...


class DaemonJobs:
    """The jobs of one daemon, over its parts."""

    def __init__(
        self,
        daemon: DaemonParts,
        *,
        health: HealthCheck | None,
        summary: IntervalSummary,
        stopping: asyncio.Event,
    ) -> None:
        self._daemon = daemon
        self._health = health
        self._summary = summary
        self._stopping = stopping

    async def run(
        self, *, exit_when_done: bool, heartbeat_seconds: float, first_prune_delay: float
    ) -> None:
        """Run the jobs until the daemon stops."""
        d = self._daemon
        jobs = Jobs(self._stopping)
        jobs.every(TICK_SECONDS, d.poller.tick)
        jobs.every(d.settings.log_interval, self.report)
        jobs.every(OUTBOX_SECONDS, self._outbox_tick)
        jobs.every(heartbeat_seconds, self.heartbeat)
        if d.archiver is not None:
            jobs.every(ARCHIVE_SECONDS, self._archive_tick)
        if d.deadlines is not None:
            jobs.every(DEADLINE_SECONDS, d.deadlines.tick)
        if d.settings.prune_older_than is not None:
            first = utcnow() + timedelta(seconds=first_prune_delay)
            jobs.every(PRUNE_SECONDS, self.prune, first=first)
        if exit_when_done:
            jobs.every(1.0, self._stop_when_done)
        await jobs.run_until_stopped()

    async def heartbeat(self) -> None:
        """Say the daemon is alive and extend the leases of what it holds."""
        d = self._daemon
        now = utcnow()
        try:
            await d.db.read(
                d.store.heartbeat,
                d.owner,
                now=now,
                polls=d.poller.stats.requests,
                lease_until=now + timedelta(seconds=d.settings.lease_seconds),
                in_flight=d.poller.in_flight,
            )
        except StoreError as exc:
            d.db.note_trouble(exc)
        if d.archiver is not None:
            await d.archiver.renew_leases()

    async def _outbox_tick(self) -> None:
        self._daemon.outbox.wake()

    def _archiving(self) -> bool:
        return self._daemon.archiver is not None and self._daemon.archiver.busy

    async def _archive_tick(self) -> None:
        if self._daemon.archiver is not None:
            self._daemon.archiver.wake()

    async def report(self) -> None:
        """The failing endpoints' interval lines, then the summary of the interval."""
        d = self._daemon
        d.poller.failure_log.flush()
        d.outbox.failure_log.flush()
        snapshot = None
        if self._health is not None:
            try:
                snapshot = await d.db.read(
                    self._health, now=utcnow(), live_within=timedelta(seconds=LIVE_WITHIN_SECONDS)
                )
            except StoreError as exc:
                d.db.note_trouble(exc)
        text, fields = self._summary.take(snapshot, len(d.poller.in_flight))
        log.info("%s", text, extra=fields)

    async def prune(self) -> None:
        d = self._daemon
        if d.settings.prune_older_than is not None:
            older_than = timedelta(seconds=d.settings.prune_older_than)
            await prune_in_batches(d.store, d.db, older_than, self._stopping)

    async def _stop_when_done(self) -> None:
        d = self._daemon
        archiving = d.archiver is not None
        if d.poller.in_flight or d.outbox.busy or self._archiving():
            return
        if d.deadlines is not None and d.deadlines.busy:
            return
        try:
            active = await d.db.read(d.store.count_active)
            kinds = tuple(d.outbox.senders)
            due = await d.db.read(d.store.next_delivery_due, kinds) if kinds else None
            files = await d.db.read(d.store.next_artifact_due) if archiving else None
        except StoreError:
            return
        soon = utcnow() + timedelta(seconds=EXIT_RETRY_HORIZON_SECONDS)
        if active == 0 and all(at is None or at > soon for at in (due, files)):
            log.info("no active predictions left")
            d.stop()
