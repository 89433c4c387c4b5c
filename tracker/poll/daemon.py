"""The daemon: the life of one tracker process and the jobs that keep it going.

It is handed its parts (see ``tracker.poll.building.build_daemon``): a poller that
claims and polls due predictions, an outbox that sends callbacks, an observation
writer, the deadlines, and the database runner they share. The daemon owns what happens around them:
the SQLite lock and file guard, registering, signals, the scheduled jobs
(``tracker.poll.daemon_jobs``: the tick, heartbeats, summary lines, pruning; on
APScheduler, an in-process timer, never a shared job store), and the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from datetime import timedelta

from tracker.archive.archiver import Archiver
from tracker.callbacks.outbox import Outbox
from tracker.config import LIVE_WITHIN_SECONDS, Settings
from tracker.exceptions import StoreError, StoreGone, TrackerError
from tracker.poll.daemon_jobs import DaemonJobs, HealthCheck
from tracker.poll.deadlines import Deadlines
from tracker.poll.poller import DRAIN_SECONDS, FETCH_GRACE_SECONDS, Poller
from tracker.poll.pushes import PushApplier
from tracker.poll.singleton import DaemonLock, SqliteFileGuard
from tracker.poll.stats import IntervalSummary, PollStats
from tracker.poll.writer import ObservationWriter
from tracker.store.interfaces import DaemonStore
from tracker.store.runner import DatabaseRunner
from tracker.timeparse import utcnow
from tracker.version import __version__

__all__ = ["DRAIN_SECONDS", "FETCH_GRACE_SECONDS", "Daemon", "NothingPolled"]

log = logging.getLogger(__name__)
outbox_log = logging.getLogger("tracker.callbacks.outbox")
archive_log = logging.getLogger("tracker.archive.archiver")


class NothingPolled(TrackerError):
    """``--once`` found polls due and none of them succeeded (exit 1)."""


#: how often the daemon says it is alive and extends its leases (seconds)
HEARTBEAT_SECONDS = 5.0
#: seconds downloads in flight get to finish when the daemon stops; the rest are
#: dropped and fetched again by the next daemon (a large file can take minutes)
ARCHIVE_DRAIN_SECONDS = 2.0
#: with --prune-older-than, the first prune runs this long after the start (seconds;
#: then every PRUNE_SECONDS, tracker.poll.daemon_jobs)
PRUNE_FIRST_DELAY = 60.0


def pid_alive(pid: int) -> bool:
    """Whether a process with this ID, other than this one, runs on this host (a
    restarted container can get its predecessor's PID)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


class Daemon:
    def __init__(
        self,
        store: DaemonStore,
        settings: Settings,
        *,
        owner: str,
        db: DatabaseRunner,
        poller: Poller,
        outbox: Outbox,
        writer: ObservationWriter,
        stopping: asyncio.Event,
        sqlite_file: str | None = None,
        health: HealthCheck | None = None,
        pushes: PushApplier | None = None,
        archiver: Archiver | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.owner = owner
        self.db = db
        self.poller = poller
        self.outbox = outbox
        self._writer = writer
        #: applies the upstream's pushes through the daemon's writer (`tracker serve`)
        self.pushes = pushes
        #: downloads output files into the archive (None: TRACKER_ARCHIVE_URL unset)
        self.archiver = archiver
        #: cancels the predictions past their deadline (None: an upstream that cannot)
        self.deadlines = deadlines
        self._stopping = stopping
        self._sqlite_file = sqlite_file
        self._file_guard = None if sqlite_file is None else SqliteFileGuard(sqlite_file)
        if self._file_guard is not None:
            db.add_check(self._check_database_file)
        #: why the daemon had to stop, when it could not go on (the exit code is then 1)
        self.fatal: str | None = None
        #: with --once: why it counts as failed (polls were due and none succeeded)
        self.nothing_polled: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: what runs on a schedule while the daemon polls
        self.jobs = DaemonJobs(
            self,
            health=health,
            summary=IntervalSummary(self.poller.stats, self._counters),
            stopping=stopping,
        )

    def _counters(self) -> dict[str, int]:
        """The outbox's and the archiver's counts since the start (summary line)."""
        archived = self.archiver.counters() if self.archiver is not None else {}
        return {**self.outbox.counters(), **archived}

    @property
    def stats(self) -> PollStats:
        return self.poller.stats

    # -- life --------------------------------------------------------------

    async def run(
        self, *, once: bool = False, exit_when_done: bool = False, handle_signals: bool = True
    ) -> int:
        """Poll until stopped; returns the process exit code. SIGINT and SIGTERM stop
        it unless not ``handle_signals`` (`tracker serve` handles them and calls
        ``stop``)."""
        self.poller.stop_on_auth_error = once
        lock = None if self._sqlite_file is None else DaemonLock(self._sqlite_file)
        if lock is not None:
            lock.acquire()
        loop = self._loop = asyncio.get_running_loop()
        if self._file_guard is not None:
            self._file_guard.remember()
        signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self.stop)
        registered = False
        try:
            await self._register()
            registered = True
            # Claims left by a killed predecessor: on SQLite every one (this is the
            # only daemon on the file), elsewhere those made under this daemon's name.
            await self._release(None if lock is not None else self.owner)
            self._say_started()
            if once:
                if self.deadlines is not None:
                    await self.deadlines.sweep_once()
                await self.poller.sweep_once()
                await self.poller.drain()
                await self._writer.wait_idle(DRAIN_SECONDS)
                if self.archiver is not None:
                    await self.archiver.archive_due_once()
                await self.outbox.send_due_once()
            else:
                await self.jobs.run(
                    exit_when_done=exit_when_done,
                    heartbeat_seconds=self.heartbeat_seconds,
                    first_prune_delay=PRUNE_FIRST_DELAY,
                )
                await self.poller.drain()
            if self.deadlines is not None:
                await self.deadlines.stop(timeout=DRAIN_SECONDS)
            # Writes still running may hand deliveries to the outbox: let them land first.
            await self._writer.wait_idle(DRAIN_SECONDS)
            if self.archiver is not None:
                await self.archiver.stop(timeout=ARCHIVE_DRAIN_SECONDS)
            await self.outbox.stop(timeout=DRAIN_SECONDS)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            await self._leave(registered)
            if lock is not None:
                lock.release()
        return self._exit_code(once)

    async def _register(self) -> None:
        await self.db.read(
            self.store.register_daemon,
            name=self.owner,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            now=utcnow(),
            live_within=timedelta(seconds=LIVE_WITHIN_SECONDS),
            pid_alive=pid_alive,
            quiet_for=timedelta(seconds=2 * HEARTBEAT_SECONDS),
        )
        await self.poller.load_run_times()

    async def _release(self, owner: str | None) -> None:
        await self.db.read(self.store.release_claims, owner, now=utcnow())
        await self.db.read(self.store.release_deliveries, owner, now=utcnow())
        await self.db.read(self.store.release_artifacts, owner, now=utcnow())

    def _say_started(self) -> None:
        log.info(
            "daemon %s started: %s, poll %g-%g s, concurrency %d, max %g requests/s",
            self.owner,
            self.settings.api_base,
            self.settings.poll_min,
            self.settings.poll_max,
            self.settings.concurrency,
            self.settings.max_rps,
        )

    async def _leave(self, registered: bool) -> None:
        # Each on its own: a failed release must not also leave the daemon "live".
        with contextlib.suppress(StoreError):
            await self.db.read(self.store.release_claims, self.owner, now=utcnow())
        if registered:
            with contextlib.suppress(StoreError):
                await self.db.read(
                    self.store.mark_stopped, self.owner, now=utcnow(), polls=self.stats.requests
                )
        self.db.shutdown()
        # Failures counted since the last interval line are told before the end.
        self.poller.failure_log.flush()
        self.outbox.failure_log.flush()
        log.info(
            "daemon %s stopped: %s; %d callbacks delivered, %d given up",
            self.owner,
            self.stats.summary(),
            self.outbox.sent,
            self.outbox.failed,
        )

    def _exit_code(self, once: bool) -> int:
        if self.fatal is not None:
            log.error("daemon stopped: %s", self.fatal)
            return 1
        if once and self.poller.auth_error:
            log.error("upstream rejected the API key: %s", self.poller.auth_error)
        stats = self.stats
        if once and stats.requests and not stats.answers:
            last = f" (last: {stats.last_error})" if stats.last_error else ""
            self.nothing_polled = (
                f"no poll succeeded: {stats.failed_polls()} of {stats.requests} failed{last}"
            )
        return 1 if once and (self.poller.auth_error or self.nothing_polled) else 0

    @property
    def heartbeat_seconds(self) -> float:
        """How often leases are renewed: every 5 s, or thrice per lease when it is
        shorter, so a live daemon's polls in flight never lose their claim."""
        return min(HEARTBEAT_SECONDS, self.settings.lease_seconds / 3)

    def stop(self) -> None:
        if not self._stopping.is_set():
            log.info("stopping: finishing polls in flight")
            self._stopping.set()
            self.poller.stop()

    async def _prune(self) -> None:
        """Prune old history now (as the schedule does with --prune-older-than)."""
        await self.jobs.prune()

    # -- the database file ---------------------------------------------------

    def _check_database_file(self) -> None:
        """Refuse every database call once the SQLite file was deleted or replaced
        (writes would go to a file nobody can open again), and stop the daemon."""
        assert self._file_guard is not None
        problem = self._file_guard.problem()
        if problem is None:
            return
        if self.fatal is None:
            self.fatal = problem
            log.error("%s: stopping", problem)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self.stop)
        raise StoreGone(problem)
