"""The archiver: claim due artifacts, download them into the archive, record each.

Artifacts are written with the answer that revealed them (``tracker.store.artifacts``);
this loop only moves them from ``pending`` to ``stored`` or ``failed``, beside the
poller and the outbox, with its own limit on downloads in flight so a slow file
host never holds a poll.

New files reach it mostly without a claim query: the observation writer inserts
them already claimed for this daemon (``handoff``, leased like any claim, so
another daemon leaves them alone and a killed daemon's lease runs out) and hands
them over (``accept``); up to ``WAITING_PER_SLOT`` per download slot wait here for
a slot. The rest, and retries, are claimed (``wake``, the daemon's tick), as many
at once as may wait. What each download ends with is written by its ``Recorder``
(``tracker.archive.recording``): files stored together, one transaction for those
that end within ``RECORD_LINGER`` of each other (group commit); their claims are
renewed until then, and ``stop`` records them before it releases what is left. A
failure that may pass is tried again with growing delays until the upstream says it
removed the output or ``GIVE_UP_AFTER`` has passed since the file was found; one that
cannot pass (too large, an address the policy refuses) fails at once.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from tracker.archive.download import Downloaded, DownloadFailed
from tracker.archive.recording import (
    GIVE_UP_AFTER,
    MAX_RECORD_BATCH,
    MAX_RETRY_AFTER,
    RECORD_LINGER,
    Recorder,
    failure_text,
    retry_at,
)
from tracker.config import DEFAULT_ARCHIVE_RETRY_SCHEDULE, DEFAULT_LOG_INTERVAL
from tracker.domain import ArtifactJob, CallbackSpec
from tracker.exceptions import StoreError
from tracker.net.failurelog import FailureLog
from tracker.store.artifact_queue import ArchiveHandoff
from tracker.store.interfaces import ArtifactQueue
from tracker.store.runner import Runner
from tracker.timeparse import utcnow

log = logging.getLogger(__name__)

# named here as before their move to tracker.archive.recording
__all__ = [
    "DEFAULT_ARCHIVE_CONCURRENCY",
    "GIVE_UP_AFTER",
    "MAX_RECORD_BATCH",
    "MAX_RETRY_AFTER",
    "RECORD_LINGER",
    "WAITING_PER_SLOT",
    "Archiver",
    "Fetch",
    "failure_text",
    "retry_at",
]

#: downloads in flight at once, all file hosts together
DEFAULT_ARCHIVE_CONCURRENCY = 4
#: files handed over by the writer that may wait, per download slot
WAITING_PER_SLOT = 4


class Fetch(Protocol):
    """Download one artifact into the archive (``tracker.archive.download``)."""

    async def __call__(self, job: ArtifactJob) -> Downloaded: ...


class Archiver:
    """Claims due artifacts (or takes those a write claimed for it), downloads them
    with at most ``concurrency`` in flight, keeps their leases, and hands each
    outcome to its ``Recorder``."""

    def __init__(
        self,
        store: ArtifactQueue,
        fetch: Fetch,
        *,
        owner: str,
        db: Runner,
        lease_seconds: float,
        concurrency: int = DEFAULT_ARCHIVE_CONCURRENCY,
        retry_delays: Sequence[float] = DEFAULT_ARCHIVE_RETRY_SCHEDULE,
        default_callbacks: Sequence[CallbackSpec] = (),
        on_deliveries: Callable[[], None] = lambda: None,
        failure_log: FailureLog | None = None,
    ) -> None:
        self.store = store
        self.owner = owner
        self._fetch = fetch
        self._db = db
        self._lease = timedelta(seconds=lease_seconds)
        self._concurrency = concurrency
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        #: handed over by the writer (claimed), waiting for a download slot
        self._waiting: collections.deque[ArtifactJob] = collections.deque()
        #: writes what each download ends with, and counts it
        self.recorder = Recorder(
            store,
            owner=owner,
            db=db,
            retry_delays=retry_delays,
            default_callbacks=default_callbacks,
            on_deliveries=on_deliveries,
            # failures of each file host, logged as a group (tracker.net.failurelog)
            failure_log=failure_log or FailureLog(log, interval=DEFAULT_LOG_INTERVAL),
        )
        self._wanted = False
        #: more may be due than the last claim took, or than a write handed over (the
        #: daemon's tick claims every second regardless)
        self._more = False
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def failure_log(self) -> FailureLog:
        return self.recorder.failure_log

    @property
    def stored(self) -> int:
        """Files stored since the start (``stored_bytes``: their bytes)."""
        return self.recorder.stored

    @property
    def stored_bytes(self) -> int:
        return self.recorder.stored_bytes

    @property
    def failed(self) -> int:
        """Files given up since the start."""
        return self.recorder.failed

    def counters(self) -> dict[str, int]:
        """Counts since the start, for the daemon's summary line."""
        return {"archived": self.stored, "archive_failed": self.failed}

    @property
    def busy(self) -> bool:
        return bool(self._in_flight or self._waiting or self.recorder.unrecorded)

    @property
    def in_flight(self) -> list[int]:
        """IDs of the artifacts this archiver holds: being downloaded, waiting for a
        slot or to be recorded (their leases are renewed)."""
        held = [*self._in_flight, *(job.id for job in self._waiting)]
        return held + [done.job.id for done in self.recorder.unrecorded]

    # -- driving -----------------------------------------------------------

    def wake(self) -> None:
        """Look for due artifacts soon (coalesces: one claim loop at a time)."""
        if self._stopping:
            return
        self._wanted = True
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._claim_while_wanted(), name="archiver")

    def handoff(self) -> ArchiveHandoff | None:
        """How many new files this archiver takes straight from a write (claimed as
        they are inserted): its free slots and waiting room."""
        if self._stopping:
            return None
        room = self._room()
        return ArchiveHandoff(self.owner, self._lease, room) if room > 0 else None

    def _room(self) -> int:
        """Files this archiver may take more: its download slots and waiting places."""
        held = len(self._in_flight) + len(self._waiting)
        return (1 + WAITING_PER_SLOT) * self._concurrency - held

    def accept(self, jobs: list[ArtifactJob], left: int) -> None:
        """Download the files a write claimed for this archiver; ``left`` new ones
        were not (no room): a claim takes them. Handed over while stopping, they are
        released with the other claims by ``stop``."""
        if self._stopping:
            return
        self._waiting.extend(jobs)
        self._start_waiting()
        if left:
            self._more = True
            self.wake()

    async def archive_due_once(self) -> None:
        """Download every artifact due now once, and wait for them (`--once`,
        `tracker archive`)."""
        start = utcnow()
        while not self._stopping:
            claimed = await self._claim(start)
            if not claimed and not self._in_flight:
                break
            if self._in_flight:
                await asyncio.wait(
                    set(self._in_flight.values()), return_when=asyncio.FIRST_COMPLETED
                )
        await self.recorder.recorded()

    async def renew_leases(self) -> None:
        """Keep the claims of long downloads, and of the files waiting for a slot or to
        be recorded (called with the daemon's heartbeat)."""
        if not self.in_flight:
            return
        try:
            await self._db.read(
                self.store.extend_artifact_leases,
                self.owner,
                self.in_flight,
                lease_until=utcnow() + self._lease,
            )
        except StoreError as exc:
            log.error("could not renew archive claims: %s", exc)

    async def stop(self, timeout: float) -> None:
        """Stop claiming, give downloads in flight ``timeout`` seconds, cancel the rest
        (their partial uploads are dropped) and release their claims."""
        self._stopping = self.recorder.stopping = True
        if self._runner is not None:
            await asyncio.wait([self._runner], timeout=timeout)
        self._waiting.clear()  # still claimed: released below
        if self._in_flight:
            tasks = set(self._in_flight.values())
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self.recorder.recorded()
        try:
            await self._db.write(self.store.release_artifacts, self.owner, now=utcnow())
        except StoreError as exc:
            log.error("could not release archive claims: %s", exc)

    # -- claiming and downloading -------------------------------------------

    async def _claim_while_wanted(self) -> None:
        while self._wanted and not self._stopping:
            self._wanted = False
            await self._claim(utcnow())

    async def _claim(self, now: datetime) -> int:
        # As many as may wait, not only the free slots: a backlog is claimed a few
        # transactions at a time, not one per file or two.
        room = self._room()
        if room <= 0:
            return 0
        try:
            jobs: list[ArtifactJob] = await self._db.read(
                self.store.claim_artifacts,
                now=now,
                limit=room,
                owner=self.owner,
                lease_until=utcnow() + self._lease,
            )
        except StoreError as exc:
            log.error("could not claim artifacts: %s", exc)
            return 0
        self._more = len(jobs) >= room
        self._waiting.extend(jobs)
        self._start_waiting()
        return len(jobs)

    def _start(self, job: ArtifactJob) -> None:
        task = asyncio.create_task(self._archive(job), name=f"archive {job.id}")
        self._in_flight[job.id] = task
        task.add_done_callback(functools.partial(self._done, job.id))

    def _start_waiting(self) -> None:
        while self._waiting and len(self._in_flight) < self._concurrency:
            self._start(self._waiting.popleft())

    def _done(self, artifact_id: int, _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(artifact_id, None)
        if not self._stopping:
            self._start_waiting()

    async def _archive(self, job: ArtifactJob) -> None:
        try:
            downloaded = await self._fetch(job)
        except DownloadFailed as failure:
            await self.recorder.failure(job, failure)
        except asyncio.CancelledError:
            raise  # stopping: the claim is released, the file fetched again later
        except Exception as exc:  # a bug must not kill the loop or lose the artifact
            log.exception("archiving artifact %d failed unexpectedly", job.id)
            await self.recorder.failure(
                job, DownloadFailed(f"internal error: {type(exc).__name__}", retry=True)
            )
        else:
            await self.recorder.stored_file(job, downloaded)
        # Claim again when more may be due and half the slots are free (this one still
        # counts as busy): a claim per finished file would cost a transaction per
        # file. New files come handed over; the daemon's tick wakes the archiver
        # every second for the rest.
        busy = len(self._in_flight) + len(self._waiting) - 1
        if not self._stopping and self._more and busy <= self._concurrency // 2:
            self.wake()
