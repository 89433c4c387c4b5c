"""Artifacts in the store, on real SQLite files and real PostgreSQL databases: queued
with the answer that reveals them, claimed under a lease, recorded once, and the
`archived` event queued exactly once with the prediction and its files."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from tests.apply import apply_one
from tests.clirun import run_tracker
from tracker.domain import ArtifactJob, CallbackSpec, NextPoll
from tracker.poll.observe import parse_prediction, plan_observation
from tracker.service.metrics import read_state
from tracker.store.store import Store
from tracker.store.tables import deliveries as deliveries_table

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
HOOK = CallbackSpec("webhook", "http://127.0.0.1:9/h", ("completed", "archived"))
OUTPUT = {
    "images": ["https://files.example/a/1.png", "https://files.example/a/2.png"],
    "note": "not a URL",
    "video": "http://files.example/v.mp4",
}


def succeeded(pid: str, output: object = OUTPUT) -> dict[str, object]:
    return {
        "id": pid,
        "status": "succeeded",
        "output": output,
        "created_at": "2026-03-01T11:59:00Z",
        "completed_at": "2026-03-01T11:59:30Z",
    }


def observe(
    store: Store, pid: str, body: dict[str, object], at: datetime, *, archive: bool = True
) -> None:
    (state,) = store.claim_due(now=at, limit=1, owner="me", lease_until=at + LEASE)
    assert state.id == pid
    update = plan_observation(state, parse_prediction(body, pid), at)
    apply_one(store, update, NextPoll(None, None), owner="me", archive=archive)


def add(store: Store, *ids: str, hooks: tuple[CallbackSpec, ...] = ()) -> None:
    store.add_predictions(list(ids), now=T0, first_poll_at=T0, callbacks_to_add=list(hooks))


def claim(store: Store, owner: str = "me", at: datetime = T0, limit: int = 10) -> list[ArtifactJob]:
    return store.claim_artifacts(now=at, limit=limit, owner=owner, lease_until=at + LEASE)


def store_file(store: Store, job: ArtifactJob, owner: str = "me") -> tuple[bool, int]:
    return store.artifact_stored(
        job,
        owner=owner,
        now=T0 + timedelta(seconds=5),
        stored_url=f"file:///archive/{job.prediction_id}/{job.position}",
        size=100 + job.position,
        sha256=f"{job.position:064d}",
        content_type="image/png",
    )


def deliveries(store: Store, event: str) -> list[dict[str, object]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(deliveries_table.c.payload)
            .where(deliveries_table.c.event == event)
            .order_by(deliveries_table.c.id)
        ).scalars()
        return [json.loads(row) for row in rows]


def test_a_succeeded_answer_queues_one_artifact_per_url_in_order(store: Store) -> None:
    add(store, "p")
    observe(store, "p", succeeded("p"), T0)
    files = store.list_artifacts(["p"])
    assert [(a.position, a.source_url, a.state) for a in files] == [
        (0, "https://files.example/a/1.png", "pending"),
        (1, "https://files.example/a/2.png", "pending"),
        (2, "http://files.example/v.mp4", "pending"),
    ]
    assert all(a.attempts == 0 and a.stored_url is None for a in files)
    detail = store.get_detail("p")
    assert detail is not None and detail.artifacts == files


def test_without_the_archive_nothing_is_queued(store: Store) -> None:
    add(store, "p")
    observe(store, "p", succeeded("p"), T0, archive=False)
    assert store.list_artifacts(["p"]) == []


def test_running_or_failed_outputs_are_not_archived(store: Store) -> None:
    add(store, "run", "bad")
    body = {"id": "run", "status": "processing", "output": ["https://f.example/partial.png"]}
    observe(store, "run", body, T0)
    failed = {"id": "bad", "status": "failed", "output": "https://f.example/x.png"}
    observe(store, "bad", failed, T0)
    assert store.list_artifacts(["run", "bad"]) == []


def test_the_same_output_seen_again_adds_nothing(store: Store) -> None:
    add(store, "p")
    observe(store, "p", succeeded("p"), T0)
    store.add_artifacts([("p", [(0, "https://other.example/changed.png")], T0)])
    kept = store.list_artifacts(["p"])
    assert len(kept) == 3 and kept[0].source_url == "https://files.example/a/1.png"


def test_claims_are_leased_and_disjoint(store: Store) -> None:
    add(store, "p")
    observe(store, "p", succeeded("p"), T0)
    mine = claim(store, "a", limit=2)
    theirs = claim(store, "b")
    assert [j.position for j in mine] == [0, 1]
    assert [j.position for j in theirs] == [2]
    assert claim(store, "c") == []
    # a claim whose lease ran out is taken again
    later = T0 + LEASE + timedelta(seconds=1)
    assert len(claim(store, "c", at=later)) == 3
    # extending the lease keeps it
    store.extend_artifact_leases("c", [j.id for j in mine], lease_until=later + 2 * LEASE)
    assert [j.position for j in claim(store, "d", at=later + LEASE + timedelta(seconds=1))] == [2]


def test_storing_every_file_queues_archived_once_with_the_files(store: Store) -> None:
    add(store, "p", hooks=(HOOK,))
    observe(store, "p", succeeded("p"), T0)
    jobs = claim(store)
    results = [store_file(store, job) for job in jobs]
    assert results == [(True, 0), (True, 0), (True, 1)]
    (body,) = deliveries(store, "archived")
    assert body["id"] == "p" and body["status"] == "succeeded"
    assert body["artifacts"] == [
        {
            "source_url": job.source_url,
            "stored_url": f"file:///archive/p/{job.position}",
            "sha256": f"{job.position:064d}",
            "bytes": 100 + job.position,
            "content_type": "image/png",
        }
        for job in jobs
    ]
    # recorded again (a write retried after an outage): the claim is gone, nothing queued
    assert store_file(store, jobs[2]) == (False, 0)
    assert len(deliveries(store, "archived")) == 1
    files = store.list_artifacts(["p"])
    assert {a.state for a in files} == {"stored"} and all(a.attempts == 1 for a in files)


def test_a_failed_file_keeps_archived_from_firing(store: Store) -> None:
    add(store, "p", hooks=(HOOK,))
    observe(store, "p", succeeded("p"), T0)
    first, second, third = claim(store)
    store_file(store, first)
    assert store.artifact_not_stored(second, owner="me", error="HTTP 404", next_attempt_at=None)
    store_file(store, third)
    assert deliveries(store, "archived") == []
    states = [(a.state, a.last_error) for a in store.list_artifacts(["p"])]
    assert states == [("stored", None), ("failed", "HTTP 404"), ("stored", None)]
    # --retry puts it back; once stored, the event fires
    assert store.retry_artifacts(["p"], now=T0) == 1
    (again,) = claim(store, at=T0 + timedelta(seconds=1))
    assert again.position == 1 and again.attempts == 1
    assert store_file(store, again) == (True, 1)


def test_a_retry_is_due_later_and_a_lost_claim_is_not_recorded(store: Store) -> None:
    add(store, "p")
    observe(store, "p", succeeded("p", "https://f.example/one.png"), T0)
    (job,) = claim(store)
    later = T0 + timedelta(seconds=30)
    assert store.artifact_not_stored(job, owner="me", error="timeout", next_attempt_at=later)
    assert store.next_artifact_due() == later
    assert claim(store, at=later - timedelta(seconds=1)) == []
    (again,) = claim(store, "b", at=later)
    assert not store.artifact_not_stored(job, owner="me", error="late", next_attempt_at=None)
    assert store.list_artifacts(["p"])[0].last_error == "timeout"
    assert store.release_artifacts("b", now=later) == 1
    assert [j.id for j in claim(store, "c", at=later)] == [again.id]


def test_concurrent_last_files_fire_archived_exactly_once(store: Store) -> None:
    """Two daemons storing a prediction's last two files at the same moment: exactly
    one of them sees every file stored."""
    add(store, "p", hooks=(HOOK,))
    observe(store, "p", succeeded("p", ["https://f.example/1", "https://f.example/2"]), T0)
    (one,) = claim(store, "a", limit=1)
    (two,) = claim(store, "b", limit=1)
    barrier = threading.Barrier(2)
    results: dict[str, tuple[bool, int]] = {}

    def run(owner: str, job: ArtifactJob) -> None:
        barrier.wait()
        results[owner] = store_file(store, job, owner)

    threads = [threading.Thread(target=run, args=args) for args in (("a", one), ("b", two))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results.values()) == [(True, 0), (True, 1)]
    assert len(deliveries(store, "archived")) == 1


def test_artifacts_go_with_their_prediction(store: Store) -> None:
    add(store, "p")
    observe(store, "p", succeeded("p"), T0)
    with store.engine.begin() as conn:
        conn.execute(text("delete from predictions where id = 'p'"))
        assert conn.execute(text("select count(*) from artifacts")).scalar() == 0


def test_succeeded_outputs_pages_through_finished_predictions(store: Store) -> None:
    add(store, "a")
    observe(store, "a", succeeded("a"), T0)
    add(store, "b", "c")
    store.forget(["b"])
    observe(store, "c", succeeded("c", "https://f.example/c.png"), T0)
    first = store.succeeded_outputs(None, limit=1)
    assert [pid for pid, _ in first] == ["a"]
    rest = store.succeeded_outputs(None, after="a")
    assert rest == [("c", "https://f.example/c.png")]
    assert [pid for pid, _ in store.succeeded_outputs(["b", "c"])] == ["c"]


def test_status_and_metrics_count_the_archive(store: Store, db_url: str) -> None:
    add(store, "p")
    observe(store, "p", succeeded("p"), T0)
    stored, failed, _pending = claim(store)
    store_file(store, stored)
    store.artifact_not_stored(failed, owner="me", error="HTTP 410", next_attempt_at=None)
    store.release_artifacts("me", now=T0)
    health = store.health(now=T0, live_within=timedelta(seconds=30))
    assert (health.pending_artifacts, health.failed_artifacts) == (1, 1)
    assert read_state(store).artifacts == {"pending": 1, "failed": 1, "stored": 1}
    shown = run_tracker(["status"], {"TRACKER_DATABASE_URL": db_url, "COLUMNS": "100"})
    lines = [line.strip() for line in shown.stdout.splitlines()]
    assert "files to archive  1" in lines and "archive failed  1" in lines
