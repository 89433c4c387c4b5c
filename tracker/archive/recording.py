"""What the archiver's downloads end with, written to the store, and counted.

Files stored are recorded together, one transaction for those that end within
``RECORD_LINGER`` of each other (group commit, as the observation writer does); they
stay held by the archiver (their claims renewed) until that write ended. A small file
comes still in memory, its commit left to the recorder (``Downloaded.commit``): the
commits of a group are made in one trip to a worker thread, before the transaction
that says they are stored, while at most ``MAX_DEFERRED_BYTES`` wait so. A failure
that may pass (a timeout, a 404 while the file host catches up, a 5xx) is tried again
with growing delays (``retry_at``) until the upstream says it removed the output or
``GIVE_UP_AFTER`` has passed since the file was found; one that cannot pass (too large,
an address the policy refuses) fails at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from tracker.archive.download import Downloaded, DownloadFailed
from tracker.archive.storage import StorageError
from tracker.config import DEFAULT_ARCHIVE_RETRY_SCHEDULE
from tracker.domain import ArtifactJob, CallbackSpec
from tracker.exceptions import StoreError
from tracker.net.failurelog import FailureLog
from tracker.net.read import MiB
from tracker.store.artifacts import StoredFile
from tracker.store.interfaces import ArtifactQueue
from tracker.store.runner import Runner
from tracker.timeparse import utcnow

#: the archiver's logger: what it records is logged under its name
log = logging.getLogger("tracker.archive.archiver")

#: the longest wait a file host's Retry-After is granted (seconds)
MAX_RETRY_AFTER = 3600.0
#: a file not archived this long after it was found is given up (Replicate removes
#: outputs about an hour after the end; aggregators keep them no longer)
GIVE_UP_AFTER = timedelta(hours=3)
#: seconds a stored file waits for others to be recorded in the same transaction (a
#: transaction per file would cost the database more than the download; a quarter of a
#: second late is nothing to a file that stays for months). Whoever waits for the
#: records (``Recorder.recorded``: a stop, `tracker archive`) cuts the wait short.
RECORD_LINGER = 0.25
#: files recorded in one transaction at most
MAX_RECORD_BATCH = 200
#: bytes of downloaded files held in memory until their group's commit; a file beyond
#: this is committed at once, on its own
MAX_DEFERRED_BYTES = 16 * MiB


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


class Recorder:
    """Writes each download's outcome for one archiver (``owner``): stored files as a
    group, failures one by one with their next attempt; counts them and logs the file
    hosts' failures as a group (``failure_log``)."""

    def __init__(
        self,
        store: ArtifactQueue,
        *,
        owner: str,
        db: Runner,
        retry_delays: Sequence[float],
        default_callbacks: Sequence[CallbackSpec],
        on_deliveries: Callable[[], None],
        failure_log: FailureLog,
    ) -> None:
        self.store = store
        self.owner = owner
        self._db = db
        self._delays = tuple(retry_delays)
        self._defaults = tuple(default_callbacks)
        self._on_deliveries = on_deliveries
        self.failure_log = failure_log
        #: downloaded, waiting to be recorded (still claimed), with their commits
        self._held: list[_Held] = []
        self.deferred_bytes = 0  #: bytes of those whose commit is left to the recorder
        self._task: asyncio.Task[None] | None = None
        #: set when the archiver stops: record at once, no lingering
        self.stopping = False
        #: set while someone waits for the records (``recorded``): no lingering
        self._flush = asyncio.Event()
        self.stored = 0  #: files stored
        self.stored_bytes = 0  #: their bytes
        self.failed = 0  #: files given up

    async def stored_file(self, job: ArtifactJob, downloaded: Downloaded) -> None:
        """Queue a stored file to be recorded with the others that end meanwhile (its
        commit too, when it is left to the recorder and there is room in memory)."""
        commit = downloaded.commit
        if commit is not None and self.deferred_bytes + downloaded.bytes > MAX_DEFERRED_BYTES:
            (error,) = await asyncio.to_thread(_commit_all, [commit])
            if error is not None:
                await self.failure(job, _storage_failure(error))
                return
            commit = None
        if commit is not None:
            self.deferred_bytes += downloaded.bytes
        done = StoredFile(
            job,
            downloaded.stored_url,
            downloaded.bytes,
            downloaded.sha256,
            downloaded.content_type,
            stored_at=None if commit is not None else utcnow(),  # in place already
        )
        self._held.append(_Held(done, commit))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._record_all(), name="archive records")

    @property
    def unrecorded(self) -> list[StoredFile]:
        """Downloaded, waiting to be recorded (still claimed)."""
        return [held.done for held in self._held]

    async def recorded(self) -> None:
        """Wait until every stored file is recorded (at once: no lingering)."""
        self._flush.set()
        try:
            while self._task is not None and not self._task.done():
                await asyncio.shield(self._task)
        finally:
            self._flush.clear()

    async def _record_all(self) -> None:
        while self._held:
            if not (self.stopping or self._flush.is_set()):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush.wait(), RECORD_LINGER)
            batch = self._held[:MAX_RECORD_BATCH]
            ready: list[StoredFile] = []
            try:
                ready = await self._commit(batch)
                kept, queued = await self._db.write(
                    self.store.artifacts_stored,
                    ready,
                    owner=self.owner,
                    now=utcnow(),
                    default_callbacks=self._defaults,
                )
            except StoreError as exc:
                log.error(
                    "could not record %d archived files (fetched again later): %s", len(ready), exc
                )
                continue
            except Exception:  # a bug must not stop the recording of later files
                log.exception(
                    "recording %d archived files failed (fetched again later)", len(batch)
                )
                continue
            finally:  # held (and their leases renewed) until this write ended
                del self._held[: len(batch)]
                self.deferred_bytes -= sum(h.done.bytes for h in batch if h.commit is not None)
            for done, held in zip(ready, kept, strict=True):
                self._note_stored(done, held)
            if queued:
                self._on_deliveries()

    async def _commit(self, batch: list[_Held]) -> list[StoredFile]:
        """Make the commits left to the recorder, in one worker thread; the files now in
        the archive (those whose commit failed are recorded as failures)."""
        commits = [held.commit for held in batch if held.commit is not None]
        if not commits:
            return [held.done for held in batch]
        errors = iter(await asyncio.to_thread(_commit_all, commits))
        in_place = utcnow()
        ready: list[StoredFile] = []
        for held in batch:
            error = next(errors) if held.commit is not None else None
            if error is None:
                done = held.done
                ready.append(
                    done if done.stored_at else dataclasses.replace(done, stored_at=in_place)
                )
            else:
                await self.failure(held.done.job, _storage_failure(error))
        return ready

    def _note_stored(self, done: StoredFile, kept: bool) -> None:
        job = done.job
        self.failure_log.succeeded("archive", _host(job.source_url))
        if not kept:
            log.warning("artifact %d of %s: claim lost while archiving", job.id, job.prediction_id)
            return
        self.stored += 1
        self.stored_bytes += done.bytes
        log.debug(
            "archived output %d of %s (%d bytes)",
            job.position,
            job.prediction_id,
            done.bytes,
            extra={"prediction_id": job.prediction_id, "bytes": done.bytes},
        )

    async def failure(self, job: ArtifactJob, failure: DownloadFailed) -> None:
        """Record a failed download: tried again later (``retry_at``), or given up."""
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


@dataclass(frozen=True, slots=True)
class _Held:
    """A stored file waiting to be recorded, and its commit when that is left to the
    recorder (the file is not in the archive before)."""

    done: StoredFile
    commit: Callable[[], str] | None


def _commit_all(commits: list[Callable[[], str]]) -> list[Exception | None]:
    """Run each commit (in a worker thread); each one's error, or None."""
    errors: list[Exception | None] = []
    for commit in commits:
        try:
            commit()
        except Exception as exc:  # one file's failure is not the others'
            errors.append(exc)
        else:
            errors.append(None)
    return errors


def _storage_failure(exc: Exception) -> DownloadFailed:
    reason = str(exc) if isinstance(exc, StorageError) else f"internal error: {type(exc).__name__}"
    return DownloadFailed(f"archive storage failed: {reason}", retry=True)


def _host(url: str) -> str:
    """The file host, as logs name it (no path: it may hold a signed token)."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    except ValueError:
        return "(bad URL)"
