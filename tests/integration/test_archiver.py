"""The archiver's loop on a real store (both engines), with a stand-in for the
download itself (tested on its own against real servers in test_archive_download)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.integration.test_artifacts_store import HOOK, add, deliveries, observe, succeeded
from tracker.archive.archiver import Archiver
from tracker.archive.download import Downloaded, DownloadFailed
from tracker.domain import ArtifactJob
from tracker.store.runner import DatabaseRunner
from tracker.store.store import Store
from tracker.timeparse import utcnow


def archiver(store: Store, fetch, **kwargs: object) -> tuple[Archiver, DatabaseRunner]:  # type: ignore[no-untyped-def]
    db = DatabaseRunner(workers=2)
    return Archiver(store, fetch, owner="me", db=db, lease_seconds=60, **kwargs), db  # type: ignore[arg-type]


def queue(store: Store, pid: str, output: object) -> None:
    add(store, pid, hooks=(HOOK,))
    observe(store, pid, succeeded(pid, output), utcnow())


async def test_every_file_is_stored_and_archived_is_queued(store: Store) -> None:
    queue(store, "p", ["https://f.example/1.png", "https://f.example/2.png"])
    fetched: list[str] = []
    woken: list[bool] = []

    async def fetch(job: ArtifactJob) -> Downloaded:
        fetched.append(job.source_url)
        return Downloaded(f"file:///a/{job.position}", 10, "ab" * 32, "image/png")

    loop, db = archiver(store, fetch, on_deliveries=lambda: woken.append(True))
    try:
        await loop.archive_due_once()
    finally:
        db.shutdown()
    assert sorted(fetched) == ["https://f.example/1.png", "https://f.example/2.png"]
    assert [a.state for a in store.list_artifacts(["p"])] == ["stored", "stored"]
    assert loop.stored == 2 and loop.stored_bytes == 20 and woken == [True]
    (body,) = deliveries(store, "archived")
    assert [a["stored_url"] for a in body["artifacts"]] == ["file:///a/0", "file:///a/1"]  # type: ignore[index]


async def test_failures_are_retried_later_or_given_up(store: Store) -> None:
    queue(
        store, "p", ["https://f.example/soon", "https://f.example/never", "https://f.example/bug"]
    )

    async def fetch(job: ArtifactJob) -> Downloaded:
        if job.source_url.endswith("soon"):
            raise DownloadFailed("HTTP 503 from f.example", retry=True)
        if job.source_url.endswith("never"):
            raise DownloadFailed("larger than 1 KiB (TRACKER_ARCHIVE_MAX_BYTES)", retry=False)
        raise ValueError("a bug")

    loop, db = archiver(store, fetch)
    before = utcnow()
    try:
        await loop.archive_due_once()
    finally:
        db.shutdown()
    soon, never, bug = store.list_artifacts(["p"])
    assert (soon.state, soon.attempts, soon.last_error) == ("pending", 1, "HTTP 503 from f.example")
    assert (never.state, never.last_error) == (
        "failed",
        "larger than 1 KiB (TRACKER_ARCHIVE_MAX_BYTES)",
    )
    assert (bug.state, bug.last_error) == ("pending", "internal error: ValueError")
    due = store.next_artifact_due()
    assert due is not None and due >= before + timedelta(seconds=9)
    assert loop.failed == 1 and deliveries(store, "archived") == []


async def test_stopping_cancels_downloads_and_releases_their_claims(store: Store) -> None:
    queue(store, "p", "https://f.example/huge.mp4")
    started = asyncio.Event()

    async def fetch(job: ArtifactJob) -> Downloaded:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    loop, db = archiver(store, fetch)
    try:
        loop.wake()
        await asyncio.wait_for(started.wait(), 10)
        assert loop.busy and len(loop.in_flight) == 1
        await loop.renew_leases()
        await loop.stop(timeout=0.1)
    finally:
        db.shutdown()
    assert not loop.busy
    (artifact,) = store.list_artifacts(["p"])
    assert (artifact.state, artifact.attempts) == ("pending", 0)
    jobs = store.claim_artifacts(
        now=utcnow(), limit=5, owner="next", lease_until=utcnow() + timedelta(seconds=60)
    )
    assert [j.source_url for j in jobs] == ["https://f.example/huge.mp4"]
