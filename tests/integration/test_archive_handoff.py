"""New artifacts handed to the writing daemon's archiver in the transaction that
inserts them (claimed, leased: no claim query), and stored files recorded together,
on real SQLite files and real PostgreSQL databases."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from tests.integration.test_artifacts_store import (
    HOOK,
    LEASE,
    T0,
    add,
    claim,
    deliveries,
    succeeded,
)
from tracker.archive.archiver import Archiver
from tracker.archive.download import Downloaded
from tracker.domain import ArtifactJob, NextPoll
from tracker.poll.observe import parse_prediction, plan_observation
from tracker.poll.writer import ObservationWriter
from tracker.store.artifacts import ArchiveHandoff, StoredFile
from tracker.store.polling import Applied
from tracker.store.runner import DatabaseRunner
from tracker.store.store import Store
from tracker.timeparse import utcnow

FILES = ["https://f.example/0.png", "https://f.example/1.png", "https://f.example/2.png"]


def write(store: Store, pid: str, output: object, at: datetime, limit: int) -> Applied:
    """The answer that shows ``pid`` succeeded, written as the daemon's writer does."""
    (state,) = store.claim_due(now=at, limit=1, owner="me", lease_until=at + LEASE)
    update = plan_observation(state, parse_prediction(succeeded(pid, output), pid), at)
    return store.apply_observations(
        [(update, NextPoll(None, None), "me")],
        archive=True,
        archive_handoff=ArchiveHandoff("me", LEASE, limit),
    )


def test_new_files_are_inserted_claimed_up_to_the_limit(store: Store) -> None:
    add(store, "p")
    applied = write(store, "p", FILES, T0, limit=2)
    assert applied.artifacts.added == 3 and applied.artifacts.left == 1
    jobs = applied.artifacts.handed_off
    assert [(j.prediction_id, j.position, j.source_url, j.attempts) for j in jobs] == [
        ("p", 0, FILES[0], 0),
        ("p", 1, FILES[1], 0),
    ]
    # Another daemon's claim skips the handed-off files while their lease holds...
    assert [j.position for j in claim(store, owner="other", at=utcnow())] == [2]
    # ...and takes them over once it ran out (their daemon was killed).
    later = utcnow() + LEASE + timedelta(seconds=1)
    taken = {j.id for j in claim(store, owner="other", at=later)}
    assert {j.id for j in jobs} <= taken


def test_files_known_already_are_not_handed_off_again(store: Store) -> None:
    add(store, "q")
    store.add_artifacts([("q", [(0, FILES[2])], T0)])  # queued by `tracker archive`
    applied = write(store, "q", FILES[2:], T0, limit=5)
    assert applied.artifacts.added == 0 and applied.artifacts.handed_off == []
    (job,) = claim(store, owner="other")  # still an ordinary pending file
    assert job.source_url == FILES[2]


def stored(job: ArtifactJob) -> StoredFile:
    return StoredFile(job, f"file:///a/{job.id}", 10 + job.position, f"{job.id:064d}", "image/png")


def test_a_batch_of_stored_files_is_one_record_and_fires_archived_once(store: Store) -> None:
    add(store, "p", hooks=(HOOK,))
    add(store, "q")
    p_jobs = write(store, "p", FILES[:2], T0, limit=5).artifacts.handed_off
    (q_job,) = write(store, "q", FILES[2:], T0, limit=5).artifacts.handed_off
    with store.engine.begin() as conn:  # q's lease ran out and another daemon took it
        conn.execute(
            text("update artifacts set claimed_by = 'other' where id = :i"), {"i": q_job.id}
        )
    kept, queued = store.artifacts_stored(
        [stored(j) for j in [*p_jobs, q_job]], owner="me", now=T0 + timedelta(seconds=5)
    )
    assert kept == [True, True, False] and queued == 1
    states = [(a.prediction_id, a.state, a.bytes) for a in store.list_artifacts(["p", "q"])]
    assert states == [("p", "stored", 10), ("p", "stored", 11), ("q", "pending", None)]
    (body,) = deliveries(store, "archived")
    files = body["artifacts"]
    assert isinstance(files, list)
    assert [a["stored_url"] for a in files] == [f"file:///a/{j.id}" for j in p_jobs]


class CountingStore:
    """The store, counting the archiver's claim queries and record transactions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.claims = 0
        self.records: list[int] = []

    def claim_artifacts(self, **kwargs: Any) -> list[ArtifactJob]:
        self.claims += 1
        return self.store.claim_artifacts(**kwargs)

    def artifacts_stored(self, done: list[StoredFile], **kwargs: Any) -> tuple[list[bool], int]:
        self.records.append(len(done))
        return self.store.artifacts_stored(done, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_a_new_file_is_downloaded_without_a_claim_query(store: Store) -> None:
    add(store, "p")
    counting = CountingStore(store)
    fetched: list[str] = []

    async def fetch(job: ArtifactJob) -> Downloaded:
        fetched.append(job.source_url)
        await asyncio.sleep(0.01)
        return Downloaded(f"file:///a/{job.position}", 10, "ab" * 32, "image/png")

    db = DatabaseRunner(workers=2)
    archiver = Archiver(counting, fetch, owner="me", db=db, lease_seconds=60)  # type: ignore[arg-type]
    writer = ObservationWriter(
        store.apply_observations,
        db.write,
        owner="me",
        archive=True,
        archive_handoff=archiver.handoff,
        on_artifacts=archiver.accept,
    )
    try:
        now = utcnow()
        (state,) = store.claim_due(now=now, limit=1, owner="me", lease_until=now + LEASE)
        update = plan_observation(state, parse_prediction(succeeded("p", FILES), "p"), now)
        await writer.apply(update, NextPoll(None, None))
        assert archiver.busy
        for _ in range(500):
            if not archiver.busy:
                break
            await asyncio.sleep(0.01)
        await archiver.stop(timeout=5)
    finally:
        db.shutdown()
    assert sorted(fetched) == FILES
    assert [a.state for a in store.list_artifacts(["p"])] == ["stored"] * 3
    assert counting.claims == 0  # handed over by the write: no claim query at all
    assert counting.records == [3]  # the three files recorded in one transaction
    assert archiver.stored == 3


async def test_stopping_records_what_was_stored_and_releases_what_waits(store: Store) -> None:
    add(store, "p")
    release = asyncio.Event()

    async def fetch(job: ArtifactJob) -> Downloaded:
        if job.position:
            await release.wait()  # still downloading when the stop comes
        return Downloaded(f"file:///a/{job.position}", 10, "ab" * 32, "image/png")

    db = DatabaseRunner(workers=2)
    archiver = Archiver(store, fetch, owner="me", db=db, lease_seconds=60, concurrency=1)
    try:
        jobs = write(store, "p", FILES, utcnow(), limit=3).artifacts.handed_off
        archiver.accept(jobs, 0)
        assert len(archiver.in_flight) == 3  # one downloading, two waiting: all held
        await asyncio.sleep(0.01)
        await archiver.stop(timeout=0.2)
    finally:
        db.shutdown()
    states = [(a.position, a.state) for a in store.list_artifacts(["p"])]
    assert states == [(0, "stored"), (1, "pending"), (2, "pending")]
    # released: due now for any daemon, not left to their lease
    assert [j.position for j in claim(store, owner="other", at=utcnow())] == [1, 2]
