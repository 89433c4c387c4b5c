"""Small files whose commit the download leaves to the recorder (``Downloaded.commit``):
made in one worker thread per group, before the transaction that says they are stored,
with a bound on the bytes held in memory meanwhile. A real store (both engines) and
a real archive directory; the download itself is a stand-in (its ``defer`` is tested
in test_archive_download)."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.integration.test_archiver import archiver, queue
from tracker.archive import recording
from tracker.archive.archiver import Archiver
from tracker.archive.download import Downloaded
from tracker.archive.local import LocalStorage
from tracker.archive.storage import artifact_key
from tracker.domain import ArtifactJob
from tracker.exceptions import StoreError
from tracker.store.store import Store
from tracker.store.tables import artifacts

URLS = ["https://f.example/a.png", "https://f.example/b.png", "https://f.example/c.png"]


async def archive_due(store: Store, fetch: object) -> Archiver:
    """An archiver on ``store`` that downloads what is due once, through ``fetch``."""
    loop, db = archiver(store, fetch)
    try:
        await loop.archive_due_once()
    finally:
        db.shutdown()
    return loop


class Deferring:
    """Writes each file into a real local archive and leaves its commit to the caller,
    noting which thread made each commit and what the store had recorded by then."""

    def __init__(self, root: Path, store: Store) -> None:
        self.storage = LocalStorage(root)
        self.store = store
        self.committed: list[tuple[str, int, list[str]]] = []  #: key, thread, states then

    async def __call__(self, job: ArtifactJob) -> Downloaded:
        key = artifact_key(job.prediction_id, job.position, job.source_url)
        upload = await self.storage.open_upload(key)
        body = job.source_url.encode()
        await upload.write(body)
        commit = upload.commit_later()
        assert commit is not None

        def noted() -> str:
            states = [a.state for a in self.store.list_artifacts([job.prediction_id])]
            self.committed.append((key, threading.get_ident(), states))
            return commit()

        return Downloaded(self.storage.stored_url(key), len(body), "00" * 32, None, commit=noted)


async def test_a_group_is_committed_in_one_worker_thread_before_it_is_recorded(
    store: Store, tmp_path: Path
) -> None:
    queue(store, "p", URLS)
    fetch = Deferring(tmp_path, store)
    loop = await archive_due(store, fetch)
    assert sorted(key for key, _, _ in fetch.committed) == ["p/0-a.png", "p/1-b.png", "p/2-c.png"]
    assert len({thread for _, thread, _ in fetch.committed}) == 1  # one trip for the group
    assert threading.get_ident() not in {thread for _, thread, _ in fetch.committed}
    assert all(states == ["pending"] * 3 for _, _, states in fetch.committed)  # then recorded
    artifacts = store.list_artifacts(["p"])
    assert [a.state for a in artifacts] == ["stored"] * 3
    for artifact, url in zip(artifacts, URLS, strict=True):
        assert artifact.stored_url is not None
        assert Path(artifact.stored_url.removeprefix("file://")).read_bytes() == url.encode()
    assert loop.recorder.deferred_bytes == 0


async def test_a_commit_that_fails_is_tried_again_and_the_others_are_stored(
    store: Store, tmp_path: Path
) -> None:
    queue(store, "p", URLS)
    (tmp_path / "p" / "1-b.png").mkdir(parents=True)  # a folder where a file must go
    loop = await archive_due(store, Deferring(tmp_path, store))
    a, b, c = store.list_artifacts(["p"])
    assert (a.state, c.state) == ("stored", "stored")
    assert (b.state, b.attempts) == ("pending", 1)
    assert b.last_error is not None
    assert b.last_error.startswith("archive storage failed: cannot store ")
    assert b.last_error.endswith("1-b.png: Is a directory")
    assert [p.name for p in (tmp_path / "p").iterdir() if p.name.startswith(".")] == []
    assert loop.stored == 2 and loop.recorder.deferred_bytes == 0


async def test_beyond_the_memory_bound_a_file_is_committed_at_once(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue(store, "p", URLS[:2])
    fetch = Deferring(tmp_path, store)
    first, second = store.claim_artifacts(
        now=recording.utcnow(), limit=2, owner="me", lease_until=recording.utcnow()
    )
    loop, db = archiver(store, fetch)
    monkeypatch.setattr(recording, "MAX_DEFERRED_BYTES", len(URLS[0]) + 10)
    try:
        await loop.recorder.stored_file(first, await fetch(first))
        assert fetch.committed == [] and loop.recorder.deferred_bytes == len(URLS[0])
        await loop.recorder.stored_file(second, await fetch(second))
        assert [key for key, _, _ in fetch.committed] == ["p/1-b.png"]  # at once
        assert loop.recorder.deferred_bytes == len(URLS[0])
        await loop.recorder.recorded()
    finally:
        db.shutdown()
    assert [key for key, _, _ in fetch.committed] == ["p/1-b.png", "p/0-a.png"]
    assert [a.state for a in store.list_artifacts(["p"])] == ["stored", "stored"]
    assert loop.recorder.deferred_bytes == 0


async def test_a_commit_that_raises_anything_fails_alone_and_recording_goes_on(
    store: Store, tmp_path: Path
) -> None:
    queue(store, "p", URLS)
    real = Deferring(tmp_path, store)

    async def fetch(job: ArtifactJob) -> Downloaded:
        got = await real(job)
        if job.position != 1:
            return got

        def broken() -> str:
            raise RuntimeError("a bug")

        return Downloaded(got.stored_url, got.bytes, got.sha256, None, commit=broken)

    loop = await archive_due(store, fetch)
    a, b, c = store.list_artifacts(["p"])
    assert (a.state, c.state) == ("stored", "stored")
    assert (b.state, b.last_error) == (
        "pending",
        "archive storage failed: internal error: RuntimeError",
    )
    assert loop.recorder.deferred_bytes == 0


async def test_files_waiting_to_be_recorded_keep_their_claims(store: Store, tmp_path: Path) -> None:
    queue(store, "p", URLS[:1])
    fetch = Deferring(tmp_path, store)
    loop, db = archiver(store, fetch)
    (job,) = store.claim_artifacts(
        now=recording.utcnow(), limit=1, owner="me", lease_until=recording.utcnow()
    )
    try:
        await loop.recorder.stored_file(job, await fetch(job))
        assert loop.in_flight == [job.id] and not loop._in_flight  # only waiting to be recorded
        await loop.renew_leases()
        with store.engine.connect() as conn:
            lease = (
                conn.execute(artifacts.select().where(artifacts.c.id == job.id))
                .one()
                .next_attempt_at
            )
        assert lease > recording.utcnow() + timedelta(seconds=50)  # renewed for 60 s
        await loop.recorder.recorded()
    finally:
        db.shutdown()
    assert [a.state for a in store.list_artifacts(["p"])] == ["stored"]


async def test_a_group_the_database_refuses_is_let_go_and_its_memory_freed(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    queue(store, "p", URLS[:2])
    fetch = Deferring(tmp_path, store)
    jobs = store.claim_artifacts(
        now=recording.utcnow(), limit=2, owner="me", lease_until=recording.utcnow()
    )

    def refuse(*_args: object, **_kwargs: object) -> tuple[list[bool], int]:
        raise StoreError("the database refused")

    loop, db = archiver(store, fetch)
    loop.recorder.store = SimpleNamespace(artifacts_stored=refuse)  # type: ignore[assignment]
    try:
        for job in jobs:
            await loop.recorder.stored_file(job, await fetch(job))
        assert loop.recorder.deferred_bytes > 0
        await loop.recorder.recorded()
    finally:
        db.shutdown()
    assert loop.recorder.deferred_bytes == 0 and loop.recorder.unrecorded == []
    assert "could not record 2 archived files (fetched again later)" in caplog.text
    assert [a.state for a in store.list_artifacts(["p"])] == ["pending", "pending"]


async def test_a_file_is_stored_at_when_it_landed_and_waiting_for_records_cuts_the_linger(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group waits up to RECORD_LINGER for more files, but whoever waits for the
    records (a stop, `tracker archive`) does not wait that long; each file's
    ``stored_at`` is when it was in place (committed at once, or with its group), not
    when the group's transaction ran."""
    queue(store, "p", URLS[:2])
    fetch = Deferring(tmp_path, store)
    first, second = store.claim_artifacts(
        now=recording.utcnow(), limit=2, owner="me", lease_until=recording.utcnow()
    )
    loop, db = archiver(store, fetch)
    monkeypatch.setattr(recording, "RECORD_LINGER", 3600.0)
    monkeypatch.setattr(recording, "MAX_DEFERRED_BYTES", len(URLS[0]) + 10)
    try:
        await loop.recorder.stored_file(first, await fetch(first))  # deferred
        before_second = recording.utcnow()
        await loop.recorder.stored_file(second, await fetch(second))  # committed at once
        after_second = recording.utcnow()
        assert [a.state for a in store.list_artifacts(["p"])] == ["pending", "pending"]
        before_records = recording.utcnow()
        await asyncio.wait_for(loop.recorder.recorded(), timeout=30)  # not an hour
    finally:
        db.shutdown()
    a, b = store.list_artifacts(["p"])
    assert (a.state, b.state) == ("stored", "stored")
    assert a.stored_at is not None and b.stored_at is not None
    assert before_second <= b.stored_at <= after_second  # in place before the linger
    assert a.stored_at >= before_records  # its commit was left to the group
