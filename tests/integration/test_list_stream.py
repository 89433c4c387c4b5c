"""Listings of predictions and deliveries on both engines: the filters `tracker list`
and `deliveries list` share with reports (registration window, labels), newest
first, counted with the same filters, and streamed: the first row arrives while the
database still holds the rest, and memory does not grow with the rows."""

from __future__ import annotations

import contextlib
import itertools
import tracemalloc
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert

from tracker.api import AsyncTracker, Tracker
from tracker.exceptions import InvalidInput
from tracker.store.deliveries import DeliveryQuery
from tracker.store.listing import PredictionQuery
from tracker.store.store import Store
from tracker.store.tables import callbacks, deliveries, predictions
from tracker.timeparse import utcnow

NOW = utcnow().replace(microsecond=0)


def fill(store: Store, count: int, *, logs: str = "", now: datetime = NOW) -> list[str]:
    """``count`` predictions registered a minute apart (p-00000 the oldest), every
    third one failed and labelled team=b, each with one webhook delivery."""
    ids = [f"p-{i:05d}" for i in range(count)]
    rows = [
        {
            "id": pid,
            "status": "failed" if i % 3 == 0 else "succeeded",
            "tracking": "done",
            "model": "acme/a" if i % 2 else "acme/b",
            "labels": {"team": "b" if i % 3 == 0 else "a", "env": "prod"},
            "registered_at": now - timedelta(minutes=count - i),
            "logs": logs,
        }
        for i, pid in enumerate(ids)
    ]
    with store.engine.begin() as conn:
        for start in range(0, count, 5000):
            conn.execute(insert(predictions), rows[start : start + 5000])
        made = conn.execute(
            insert(callbacks).returning(callbacks.c.id, callbacks.c.prediction_id),
            [
                {
                    "prediction_id": pid,
                    "kind": "webhook",
                    "target": "https://example.com/h",
                    "events": "completed",
                    "created_at": NOW,
                }
                for pid in ids[:30]
            ],
        ).all()
        conn.execute(
            insert(deliveries),
            [
                {
                    "callback_id": cid,
                    "prediction_id": pid,
                    "event": "completed",
                    "state": "dead" if n % 2 else "delivered",
                    "attempts": 1,
                    "created_at": NOW - timedelta(minutes=30 - n),
                    "payload": "{}",
                    "message_id": f"msg_{cid}",
                }
                for n, (cid, pid) in enumerate(made)
            ],
        )
    return ids


def test_newest_first_with_a_limit_and_a_count(store: Store) -> None:
    ids = fill(store, 120)
    query = PredictionQuery(limit=5, newest_first=True)
    assert [r["id"] for r in store.iter_columns(["id"], query)] == ids[::-1][:5]
    assert store.count_predictions(query) == 120
    oldest = store.list_columns(["id"], limit=3)  # the keyword form keeps its order
    assert [r["id"] for r in oldest] == ids[:3]


def test_registration_window_and_labels_filter_as_reports_do(store: Store) -> None:
    ids = fill(store, 60)
    since, until = NOW - timedelta(minutes=30), NOW - timedelta(minutes=10)
    query = PredictionQuery(since=since, until=until, labels={"team": "b", "env": "prod"})
    got = [r["id"] for r in store.iter_columns(["id"], query)]
    # registered at NOW - (60 - i) minutes: since inclusive (i = 30), until exclusive (i = 50)
    assert got == [ids[i] for i in range(30, 50) if i % 3 == 0]
    assert store.count_predictions(query) == len(got)
    assert store.count_predictions(PredictionQuery(labels={"team": "nobody"})) == 0
    failed_b = PredictionQuery(statuses=["failed"], model="acme/b", newest_first=True)
    assert [r["id"] for r in store.iter_columns(["id"], failed_b)] == [
        ids[i] for i in reversed(range(60)) if i % 3 == 0 and i % 2 == 0
    ]


def test_deliveries_filter_by_creation_time_and_prediction_labels(store: Store) -> None:
    fill(store, 30)
    everything = list(store.iter_deliveries(DeliveryQuery(newest_first=True)))
    assert [d.id for d in everything] == list(range(30, 0, -1))
    assert [d.id for d in store.list_deliveries(limit=2)] == [1, 2]  # oldest first by default
    recent = DeliveryQuery(since=NOW - timedelta(minutes=5), states=["dead"])
    # created NOW - (30 - n) minutes, dead when n is odd: n = 25, 27, 29
    assert [d.state for d in store.iter_deliveries(recent)] == ["dead"] * 3
    assert store.count_listed_deliveries(recent) == 3
    team_b = DeliveryQuery(labels={"team": "b"}, limit=3, newest_first=True)
    assert [d.prediction_id for d in store.iter_deliveries(team_b)] == [
        "p-00027",
        "p-00024",
        "p-00021",
    ]
    assert store.count_listed_deliveries(team_b) == 10  # the limit aside


def test_rows_stream_without_reading_everything_first(store: Store) -> None:
    fill(store, 6000, logs="x" * 2000)  # 12 MB of logs the listing must not read whole
    rows = store.iter_predictions(PredictionQuery(newest_first=True))
    tracemalloc.start()
    try:
        first = next(rows)
        first_peak = tracemalloc.get_traced_memory()[1]
        assert first.id == "p-05999" and len(first.logs) == 2000
        # a batch of 500 rows of 2 kB is about 1 MB; the whole listing would be 12 MB
        assert first_peak < 6_000_000, first_peak
        tracemalloc.reset_peak()
        assert sum(1 for _ in itertools.islice(rows, 5000)) == 5000
        assert tracemalloc.get_traced_memory()[1] < 6_000_000
    finally:
        tracemalloc.stop()
        rows.close()  # stopping early ends the read transaction


def test_a_listing_stopped_early_leaves_no_transaction_open(store: Store) -> None:
    fill(store, 1200)
    with contextlib.closing(store.iter_columns(["id"], PredictionQuery())) as rows:
        assert next(rows)["id"] == "p-00000"
    # A writer gets the database at once (SQLite: no reader holds it; PostgreSQL: no
    # transaction left idle), and the next listing sees what it wrote.
    store.forget(["p-00000"])
    (row,) = store.list_columns(["tracking"], query=PredictionQuery(limit=1))
    assert row["tracking"] == "done"  # p-00000 was done, not active: forget leaves it


def test_the_api_streams_and_counts_with_the_cli_rules(db_url: str) -> None:
    now = utcnow()
    with Store.from_url(db_url) as store:
        ids = fill(store, 80, now=now)
    with Tracker(db_url) as tracker:
        rows = tracker.iter_columns(["id", "status"], newest_first=True, limit=2)
        assert [r["id"] for r in rows] == [ids[-1], ids[-2]]
        assert tracker.count(status="failed", labels={"team": "b"}) == 27
        assert tracker.count(since=now - timedelta(minutes=10)) == 10
        # "10m" ago by the clock, a moment after `now`: the row at now - 10 min may be out
        assert tracker.count(since="10m", until=now) in (9, 10)
        newest = tracker.list(limit=1, newest_first=True)
        assert [p.id for p in newest] == [ids[-1]]
        assert [d.id for d in tracker.iter_deliveries(state="dead", limit=2, newest_first=True)]
        assert tracker.count_deliveries(state="dead") == 15
        with pytest.raises(InvalidInput, match="cannot read --until 'soon'"):
            tracker.count(until="soon")
        with pytest.raises(InvalidInput, match=r"--until .* is before --since"):
            tracker.count(since=NOW, until=NOW - timedelta(days=1))
        with pytest.raises(InvalidInput, match="limit must be a whole number"):
            list(tracker.iter_columns(["id"], limit=-1))


async def test_the_async_tracker_streams_in_batches(db_url: str) -> None:
    with Store.from_url(db_url) as store:
        ids = fill(store, 1200)  # more than two batches
    async with AsyncTracker(db_url) as tracker:
        rows = tracker.iter_columns(["id"], newest_first=True)
        assert [row["id"] async for row in rows] == ids[::-1]
        assert await tracker.count(labels={"team": "b"}) == 400
        assert await tracker.count_deliveries(state="dead") == 15
        deliveries = tracker.iter_deliveries(newest_first=True)
        assert (await anext(deliveries)).id == 30
        await deliveries.aclose()  # stopping early ends the read transaction
        assert (await tracker.list_deliveries(limit=1))[0].id == 1
