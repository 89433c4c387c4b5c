"""The archiver: claim due artifacts, download them into the archive, record each.

Artifacts are written with the answer that revealed them (``tracker.store.artifacts``);
this loop only moves them from ``pending`` to ``stored`` or ``failed``, beside the
poller and the outbox, with its own limit on downloads in flight so a slow file
host never holds a poll. A failure that may pass (a timeout, a 404 while the file
host catches up, a 5xx) is tried again with growing delays until the upstream
says it removed the output or ``GIVE_UP_AFTER`` has passed since the file was
found; one that cannot pass (too large, an address the policy refuses) fails at
once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

from tracker.archive.download import Downloaded, DownloadFailed
from tracker.config import DEFAULT_ARCHIVE_RETRY_SCHEDULE, DEFAULT_LOG_INTERVAL
from tracker.domain import ArtifactJob, CallbackSpec
from tracker.exceptions import StoreError
from tracker.net.failurelog import FailureLog
from tracker.store.interfaces import ArtifactQueue
from tracker.store.runner import Runner
from tracker.timeparse import utcnow

log = logging.getLogger(__name__)

#: downloads in flight at once, all file hosts together
DEFAULT_ARCHIVE_CONCURRENCY = 4
#: the longest wait a file host's Retry-After is granted (seconds)
MAX_RETRY_AFTER = 3600.0
#: a file not archived this long after it was found is given up (Replicate removes
#: outputs about an hour after the end; aggregators keep them no longer)
GIVE_UP_AFTER = timedelta(hours=3)


class Fetch(Protocol):
    """Download one artifact into the archive (``tracker.archive.download``)."""

    async def __call__(self, job: ArtifactJob) -> Downloaded: ...


def retry_at(
    job: ArtifactJob,
    failure: DownloadFailed,
    now: datetime,
    delays: Sequence[float] = DEFAULT_ARCHIVE_RETRY_SCHEDULE,
) -> datetime | None:
    """When to try a failed download again (after ``delays[attempts]``, the last one
    repeating); None: never (the artifact has failed)."""
    if not failure.retry or job.data_removed or not delays:
        return None
    if now - job.created_at >= GIVE_UP_AFTER:
        return None
    delay = delays[min(job.attempts, len(delays) - 1)]
    if failure.retry_after is not None:  # the file host asked (429, 503): within reason
        delay = max(delay, min(failure.retry_after, MAX_RETRY_AFTER))
    return now + timedelta(seconds=delay)


def failure_text(job: ArtifactJob, failure: DownloadFailed, next_at: datetime | None) -> str:
    """The reason stored in ``last_error``: the failure, and why it is final."""
    if next_at is not None or not failure.retry:
        return failure.reason
    if job.data_removed:
        return f"{failure.reason}; the upstream removed the output"
    hours = GIVE_UP_AFTER.total_seconds() / 3600
    return f"{failure.reason}; given up {hours:g} h after the file was found"


class Archiver:
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
        self._delays = tuple(retry_delays)
        self._defaults = tuple(default_callbacks)
        self._on_deliveries = on_deliveries
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._wanted = False
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False
        #: failures of each file host, logged as a group (tracker.net.failurelog)
        self.failure_log = failure_log or FailureLog(log, interval=DEFAULT_LOG_INTERVAL)
        self.stored = 0  #: files stored
        self.stored_bytes = 0  #: their bytes
        self.failed = 0  #: files given up

    def counters(self) -> dict[str, int]:
        """Counts since the start, for the daemon's summary line."""
        return {"archived": self.stored, "archive_failed": self.failed}

    @property
    def busy(self) -> bool:
        return bool(self._in_flight)

    @property
    def in_flight(self) -> list[int]:
        """IDs of the artifacts being downloaded (their leases are renewed)."""
        return list(self._in_flight)

    # -- driving -----------------------------------------------------------

    def wake(self) -> None:
        """Look for due artifacts soon (coalesces: one claim loop at a time)."""
        if self._stopping:
            return
        self._wanted = True
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._claim_while_wanted(), name="archiver")

    async def archive_due_once(self) -> None:
        """Download every artifact due now once, and wait for them (`--once`,
        `tracker archive`)."""
        start = utcnow()
        while not self._stopping:
            claimed = await self._claim(start)
            if not claimed and not self._in_flight:
                return
            if self._in_flight:
                await asyncio.wait(
                    set(self._in_flight.values()), return_when=asyncio.FIRST_COMPLETED
                )

    async def renew_leases(self) -> None:
        """Keep the claims of long downloads (called with the daemon's heartbeat)."""
        if not self._in_flight:
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
        self._stopping = True
        if self._runner is not None:
            await asyncio.wait([self._runner], timeout=timeout)
        if self._in_flight:
            tasks = set(self._in_flight.values())
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
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
        room = self._concurrency - len(self._in_flight)
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
        for job in jobs:
            task = asyncio.create_task(self._archive(job), name=f"archive {job.id}")
            self._in_flight[job.id] = task
            task.add_done_callback(functools.partial(self._done, job.id))
        return len(jobs)

    def _done(self, artifact_id: int, _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(artifact_id, None)

    async def _archive(self, job: ArtifactJob) -> None:
        try:
            downloaded = await self._fetch(job)
        except DownloadFailed as failure:
            await self._record_failure(job, failure)
        except asyncio.CancelledError:
            raise  # stopping: the claim is released, the file fetched again later
        except Exception as exc:  # a bug must not kill the loop or lose the artifact
            log.exception("archiving artifact %d failed unexpectedly", job.id)
            await self._record_failure(
                job, DownloadFailed(f"internal error: {type(exc).__name__}", retry=True)
            )
        else:
            await self._record_stored(job, downloaded)
        # Claim again once half the slots are free (this one still counts as busy):
        # a claim per finished file would cost a transaction per file. The daemon's
        # tick wakes the archiver every second anyway.
        if not self._stopping and len(self._in_flight) - 1 <= self._concurrency // 2:
            self.wake()

    async def _record_stored(self, job: ArtifactJob, downloaded: Downloaded) -> None:
        try:
            kept, queued = await self._db.write(
                self.store.artifact_stored,
                job,
                owner=self.owner,
                now=utcnow(),
                stored_url=downloaded.stored_url,
                size=downloaded.bytes,
                sha256=downloaded.sha256,
                content_type=downloaded.content_type,
                default_callbacks=self._defaults,
            )
        except StoreError as exc:
            log.error("could not record artifact %d (it will be fetched again): %s", job.id, exc)
            return
        host = _host(job.source_url)
        self.failure_log.succeeded("archive", host)
        if not kept:
            log.warning("artifact %d of %s: claim lost while archiving", job.id, job.prediction_id)
            return
        self.stored += 1
        self.stored_bytes += downloaded.bytes
        log.debug(
            "archived output %d of %s (%d bytes)",
            job.position,
            job.prediction_id,
            downloaded.bytes,
            extra={"prediction_id": job.prediction_id, "bytes": downloaded.bytes},
        )
        if queued:
            self._on_deliveries()

    async def _record_failure(self, job: ArtifactJob, failure: DownloadFailed) -> None:
        now = utcnow()
        next_at = retry_at(job, failure, now, self._delays)
        error = failure_text(job, failure, next_at)
        try:
            kept = await self._db.write(
                self.store.artifact_not_stored,
                job,
                owner=self.owner,
                error=error,
                next_attempt_at=next_at,
            )
        except StoreError as exc:
            log.error("could not record artifact %d (it will be fetched again): %s", job.id, exc)
            return
        if not kept:
            return
        given_up = next_at is None
        self.failed += given_up
        what = (
            "given up"
            if next_at is None
            else f"retrying in {(next_at - now).total_seconds():.0f} s"
        )
        host = _host(job.source_url)
        self.failure_log.failed(
            "archive",
            host,
            error,
            display=host,
            about=f"output {job.position} of {job.prediction_id}: {what}",
            given_up=given_up,
            prediction_id=job.prediction_id,
        )


def _host(url: str) -> str:
    """The file host, as logs name it (no path: it may hold a signed token)."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    except ValueError:
        return "(bad URL)"
