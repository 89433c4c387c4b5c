"""`tracker archive [ID...] [--retry]`: archive the outputs of finished predictions now.

The files of the predictions named (or, without IDs, of every succeeded one) are
queued as artifacts where they are not yet (``Store.add_artifacts``: one row per
prediction and position, however often this runs); ``retry`` first puts ``failed``
ones back to ``pending``. Then an ``Archiver`` in this process downloads what is
due, under its own owner name and the same claims and leases as the daemons', so
a daemon running beside it never fetches a file twice. With IDs, only their files
are claimed (not the whole backlog), and those waiting for a retry are tried at
once: asking for them by name is asking for them now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from tracker.archive.archiver import Archiver, Fetch
from tracker.archive.download import Downloaded
from tracker.archive.fetch import open_fetch
from tracker.archive.outputs import output_urls
from tracker.config import Settings
from tracker.domain import ArtifactJob, CallbackSpec, validate_id
from tracker.exceptions import InvalidInput
from tracker.net.failurelog import FailureLog
from tracker.store.archive_reports import ID_BATCH, ArchiveState
from tracker.store.artifacts import StoredFile
from tracker.store.base import batches
from tracker.store.runner import DatabaseRunner
from tracker.store.store import Store
from tracker.timeparse import utcnow

#: the setting without which there is nowhere to archive to
ARCHIVE_VARIABLE = "TRACKER_ARCHIVE_URL"
#: succeeded predictions read per page when no IDs are given
PAGE = 1000
#: seconds downloads in flight get when the run is interrupted
STOP_SECONDS = 1.0

#: each failed download is in the summary the command prints, with its reason: the
#: archiver's own lines about failing file hosts would only say it twice
_quiet = logging.getLogger("tracker.archive.runner.hosts")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


@dataclass(frozen=True, slots=True)
class ArchiveRow:
    """One prediction in the summary of a run (``state`` None: not registered)."""

    prediction_id: str
    registered: bool
    status: str | None
    state: ArchiveState

    @property
    def note(self) -> str:
        """What a person should know about it, in a few words."""
        s = self.state
        if not self.registered:
            return "not registered"
        if s.files == 0:
            if self.status == "succeeded":
                return "no output files"
            return f"no output files (status {self.status or 'not seen yet'})"
        if s.problem is not None and (s.failed or not s.busy):
            position, error = s.problem
            return f"output {position}: {error}"
        if s.pending and s.busy:
            return "being downloaded by another process"
        return ""

    def record(self) -> dict[str, object]:
        """The row as tables, CSV and JSON show it."""
        s = self.state
        counts = (s.files, s.stored, s.failed, s.pending, s.stored_bytes)
        names = ("files", "stored", "failed", "pending", "stored_bytes")
        return {
            "prediction_id": self.prediction_id,
            "status": self.status,
            **{n: (c if self.registered else None) for n, c in zip(names, counts, strict=True)},
            "note": self.note,
        }


@dataclass(slots=True)
class ArchiveRun:
    """What ``archive_outputs`` did, and where each prediction stands after it."""

    rows: list[ArchiveRow] = field(default_factory=list)
    queued: int = 0  #: artifacts new in this run
    retried: int = 0  #: failed artifacts put back to pending (``retry``)
    stored: int = 0  #: files stored by this run
    stored_bytes: int = 0
    failed: int = 0  #: files this run gave up

    @property
    def unknown(self) -> list[str]:
        return [r.prediction_id for r in self.rows if not r.registered]

    @property
    def not_stored(self) -> int:
        """Files of the rows that ended failed, or pending after a failed attempt."""
        return sum(
            r.state.failed + (r.state.pending if r.state.problem and not r.state.busy else 0)
            for r in self.rows
        )


def require_archive(archive_url: str | None, why: str = "the archive has nowhere to go") -> str:
    """TRACKER_ARCHIVE_URL, or InvalidInput saying to set it (and ``why``)."""
    if not archive_url:
        raise InvalidInput(
            f"set {ARCHIVE_VARIABLE} (or --archive-url) to a directory, file:///… or"
            f" s3://bucket/prefix: {why}"
        )
    return archive_url


def checked_ids(ids: Sequence[str]) -> list[str]:
    """The IDs given, each once in the order given; InvalidInput for a bad one."""
    return list(dict.fromkeys(validate_id(i) for i in ids))


async def archive_outputs(
    store: Store,
    settings: Settings,
    ids: Sequence[str] | None,
    *,
    retry: bool = False,
    fetch: Fetch | None = None,
) -> ArchiveRun:
    """Queue, then download now, the output files of ``ids`` (None: of every succeeded
    prediction). ``fetch`` replaces the real download (tests); without it the archive
    is opened from ``settings`` (TRACKER_ARCHIVE_URL must be set)."""
    wanted = None if ids is None else checked_ids(ids)
    if fetch is None:
        require_archive(settings.archive_url)
    run = ArchiveRun()
    touched: set[str] = set()
    # The archive first: a TRACKER_ARCHIVE_URL that cannot be opened writes nothing.
    async with _fetching(settings, fetch) as real:

        async def recorded(job: ArtifactJob) -> Downloaded:
            touched.add(job.prediction_id)
            return await real(job)

        statuses = {} if wanted is None else store.prediction_statuses(wanted)
        known = None if wanted is None else [i for i in wanted if i in statuses]
        now = utcnow()
        if retry and (known is None or known):
            run.retried = sum(store.retry_artifacts(chunk, now=now) for chunk in _chunks(known))
        run.queued = _queue(store, known, now)
        if known:
            store.hurry_artifacts(known, now=now)
        for chunk in _chunks(known):
            await _download(store, settings, recorded, chunk, run)
    run.rows = _rows(store, wanted, statuses, touched)
    return run


def _chunks(ids: list[str] | None) -> Iterator[list[str] | None]:
    """``ids`` a batch at a time (None: everything, once)."""
    if ids is None:
        yield None
        return
    for chunk in batches(ids, ID_BATCH):
        yield list(chunk)


def _queue(store: Store, ids: list[str] | None, now: datetime) -> int:
    """Queue the files of the succeeded outputs of ``ids`` (None: every one)."""
    queued = 0
    for chunk in _chunks(ids):
        after = ""
        while True:
            page = store.succeeded_outputs(chunk, after=after, limit=PAGE)
            found = [(pid, files, now) for pid, output in page if (files := output_urls(output))]
            if found:
                queued += store.add_artifacts(found)
            if len(page) < PAGE:
                break
            after = page[-1][0]
    return queued


@contextlib.asynccontextmanager
async def _fetching(settings: Settings, fetch: Fetch | None) -> AsyncIterator[Fetch]:
    """The real download into TRACKER_ARCHIVE_URL (or ``fetch``) until the block ends."""
    if fetch is not None:
        yield fetch
        return
    async with contextlib.AsyncExitStack() as stack:
        yield await open_fetch(settings, stack)


async def _download(
    store: Store, settings: Settings, fetch: Fetch, ids: list[str] | None, run: ArchiveRun
) -> None:
    """Download what is due (of ``ids``, else anything) with an archiver of our own,
    renewing its claims while large files come in; claims are released however it
    ends (Ctrl-C included)."""
    db = DatabaseRunner(workers=2)
    queue = store if ids is None else _Scoped(store, ids)
    archiver = Archiver(
        queue,
        fetch,
        owner=f"archive:{socket.gethostname()}:{os.getpid()}",
        db=db,
        lease_seconds=settings.lease_seconds,
        retry_delays=settings.archive_retry_schedule,
        default_callbacks=settings.default_callbacks,
        failure_log=FailureLog(_quiet, interval=settings.log_interval),
    )
    renewing = asyncio.create_task(_renew(archiver, settings.lease_seconds / 3))
    try:
        await archiver.archive_due_once()
    finally:
        renewing.cancel()
        await asyncio.shield(archiver.stop(timeout=STOP_SECONDS))
        db.shutdown()
        run.stored += archiver.stored
        run.stored_bytes += archiver.stored_bytes
        run.failed += archiver.failed


async def _renew(archiver: Archiver, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        await archiver.renew_leases()


def _rows(
    store: Store,
    wanted: list[str] | None,
    statuses: dict[str, str | None],
    touched: set[str],
) -> list[ArchiveRow]:
    """The summary: each ID given, in order; without IDs, the predictions this run
    downloaded for and those with a file still not stored."""
    if wanted is None:
        wanted = sorted(touched | set(store.unfinished_archive_ids()))
        statuses = store.prediction_statuses(wanted)
    states = store.archive_states([i for i in wanted if i in statuses])
    return [
        ArchiveRow(i, i in statuses, statuses.get(i), states.get(i) or ArchiveState(i))
        for i in wanted
    ]


class _Scoped:
    """The store as an archiver sees it, claiming only the files of ``ids``."""

    def __init__(self, store: Store, ids: Sequence[str]) -> None:
        self._store = store
        self._ids = list(ids)

    def claim_artifacts(
        self, *, now: datetime, limit: int, owner: str, lease_until: datetime
    ) -> list[ArtifactJob]:
        return self._store.claim_artifacts(
            now=now, limit=limit, owner=owner, lease_until=lease_until, prediction_ids=self._ids
        )

    def extend_artifact_leases(
        self, owner: str, ids: Sequence[int], *, lease_until: datetime
    ) -> None:
        self._store.extend_artifact_leases(owner, ids, lease_until=lease_until)

    def artifact_stored(
        self,
        job: ArtifactJob,
        *,
        owner: str,
        now: datetime,
        stored_url: str,
        size: int,
        sha256: str,
        content_type: str | None,
        default_callbacks: Sequence[CallbackSpec] = (),
    ) -> tuple[bool, int]:
        return self._store.artifact_stored(
            job,
            owner=owner,
            now=now,
            stored_url=stored_url,
            size=size,
            sha256=sha256,
            content_type=content_type,
            default_callbacks=default_callbacks,
        )

    def artifacts_stored(
        self,
        done: Sequence[StoredFile],
        *,
        owner: str,
        now: datetime,
        default_callbacks: Sequence[CallbackSpec] = (),
    ) -> tuple[list[bool], int]:
        return self._store.artifacts_stored(
            done, owner=owner, now=now, default_callbacks=default_callbacks
        )

    def artifact_not_stored(
        self, job: ArtifactJob, *, owner: str, error: str, next_attempt_at: datetime | None
    ) -> bool:
        return self._store.artifact_not_stored(
            job, owner=owner, error=error, next_attempt_at=next_attempt_at
        )

    def release_artifacts(self, owner: str | None, *, now: datetime) -> int:
        return self._store.release_artifacts(owner, now=now)

    def next_artifact_due(self) -> datetime | None:
        return self._store.next_artifact_due()


__all__ = [
    "ARCHIVE_VARIABLE",
    "ArchiveRow",
    "ArchiveRun",
    "archive_outputs",
    "checked_ids",
    "require_archive",
]
