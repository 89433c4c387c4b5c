"""Every ``--label`` filter (listings, the delivery log, reports) selects predictions
through ``prediction_labels``, so all of them pick the same predictions on both
engines: a label is a text value, as `tracker add --label` writes it."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.integration.test_store import T0, claim, observe
from tracker.domain import CallbackSpec
from tracker.store import label_filter
from tracker.store.deliveries import DeliveryQuery
from tracker.store.listing import PredictionQuery, streaming
from tracker.store.report_sql import ReportFilter
from tracker.store.store import Store


def _fill(store: Store) -> None:
    hook = [CallbackSpec("webhook", "http://127.0.0.1:9/", ("start",))]
    for pid, labels in {
        "a": {"team": "studio", "n": "5"},
        "b": {"team": "video"},
        "c": {"team": "studio"},
        "d": {},
    }.items():
        store.add_predictions([pid], now=T0, first_poll_at=T0, labels=labels, callbacks_to_add=hook)
    with store.engine.begin() as conn:  # written by hand: a number, not a label's text
        conn.execute(text(_NUMBER_FOR_C))
    for st in claim(store):  # each prediction's ``start`` delivery is queued
        observe(store, st, {"status": "processing"}, T0)


_NUMBER_FOR_C = """UPDATE predictions SET labels = '{"team": "studio", "n": 5}' WHERE id = 'c'"""


def _listed(store: Store, labels: dict[str, str]) -> list[str]:
    rows = store.list_columns(["id"], query=PredictionQuery(labels=labels))
    return [row["id"] for row in rows]


def _delivered(store: Store, labels: dict[str, str]) -> list[str]:
    return sorted(
        d.prediction_id for d in store.list_deliveries(query=DeliveryQuery(labels=labels))
    )


def _reported(store: Store, labels: dict[str, str]) -> int:
    rows = store.report_status(ReportFilter(labels=labels))
    return sum(row["predictions"] for row in rows)


def test_listings_the_delivery_log_and_reports_pick_the_same_predictions(store: Store) -> None:
    _fill(store)
    for labels, expected in [
        ({"team": "studio"}, ["a", "c"]),
        ({"team": "studio", "n": "5"}, ["a"]),  # c's n is the number 5, not text
        ({"n": "5"}, ["a"]),
        ({"team": "nobody"}, []),
    ]:
        assert _listed(store, labels) == expected, labels
        assert _delivered(store, labels) == expected, labels
        assert _reported(store, labels) == len(expected), labels
    assert store.count_listed_deliveries(DeliveryQuery(labels={"team": "video"})) == 1


def test_a_limited_listing_of_a_common_label_on_sqlite_scans_in_its_order(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond SCAN_ABOVE carriers, SQLite's listing probes each row of its own order
    (its planner has no statistics to choose by); the rows are the same either way."""
    _fill(store)
    monkeypatch.setattr(label_filter, "SCAN_ABOVE", 1)
    with store.engine.connect() as conn:
        common = label_filter.scan_first(conn, {"team": "studio"}, 50)
        rare = label_filter.scan_first(conn, {"team": "studio", "n": "5"}, 50)
        everything = label_filter.scan_first(conn, {"team": "studio"}, None)
    assert common is (store.dialect == "sqlite")  # PostgreSQL's planner decides
    assert (rare, everything) == (False, False)
    limited = PredictionQuery(labels={"team": "studio"}, limit=1, newest_first=True)
    assert [r["id"] for r in store.list_columns(["id"], query=limited)] == ["c"]
    assert [p.id for p in store.list_predictions(query=limited)] == ["c"]


def test_a_streamed_listing_on_postgresql_is_planned_for_all_of_its_rows(pg_url: str) -> None:
    """A cursor is planned for its first tenth by default, which made every row of a
    common label 2-3 times slower to read; a listing reads to its end."""
    store = Store.from_url(pg_url)
    try:
        with store.engine.connect() as conn, conn.begin():
            before = conn.execute(text("show cursor_tuple_fraction")).scalar()
            setting = text("select current_setting('cursor_tuple_fraction')")
            inside = streaming(conn).execute(setting).scalar()
        with store.engine.connect() as conn:  # SET LOCAL: the transaction's only
            after = conn.execute(text("show cursor_tuple_fraction")).scalar()
    finally:
        store.close()
    assert (before, inside, after) == ("0.1", "1", "0.1")
