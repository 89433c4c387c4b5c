"""The dashboard's predictions list on SQLite and PostgreSQL: keyset pages that walk
every row once, forwards and back, with registration batches that share a time;
the filters (status, tracking, model, label, ID prefix with ``_`` taken literally);
each page one query with a LIMIT and never a COUNT."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text, update

from tests.serving import Running, running_service, settings_for
from tracker.store.dashboard import Cursor, DashboardQueries, PredictionFilter
from tracker.store.store import Store
from tracker.store.tables import predictions

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
ROW_ID = re.compile(r'<a class="id" href="/predictions/([^"]+)">')
OLDER = re.compile(r'<a rel="next" href="([^"]+)">')
NEWER = re.compile(r'<a rel="prev" href="([^"]+)">')


def fill(store: Store) -> list[str]:
    """137 predictions: three registration batches of 40 sharing a time each, and 17
    alone; some failed, some of another model, some labelled. Returns the IDs newest
    first (registration time, then ID, both descending)."""
    ids: list[str] = []
    for batch in range(3):
        batch_ids = [f"b{batch}-{n:03d}" for n in range(40)]
        store.add_predictions(batch_ids, now=T0 + timedelta(minutes=batch), first_poll_at=T0)
        ids += batch_ids
    for n in range(17):
        pid = f"s-{n:02d}" if n % 4 else f"a_b-{n:02d}"
        store.add_predictions([pid], now=T0 + timedelta(minutes=10, seconds=n), first_poll_at=T0)
        ids.append(pid)
    store.add_predictions(["axb-99"], now=T0 + timedelta(hours=1), first_poll_at=T0)
    ids.append("axb-99")
    with store.engine.begin() as conn:
        c = predictions.c
        conn.execute(update(predictions).where(c.id.like("b1-%")).values(status="failed"))
        conn.execute(update(predictions).where(c.id.like("b2-0%")).values(model="acme/other"))
        conn.execute(update(predictions).where(c.id.like("s-%")).values(labels={"team": "red"}))
        conn.execute(update(predictions).where(c.id.like("b0-%")).values(tracking="done"))
        ordered = conn.execute(
            text("select id from predictions order by registered_at desc, id desc")
        ).scalars()
        return list(ordered)


@pytest.fixture
def expected(store: Store) -> list[str]:
    return fill(store)


@pytest.fixture
async def service(db_url: str, expected: list[str]) -> AsyncIterator[Running]:
    async with running_service(settings_for(db_url)) as running:
        yield running


async def walk(service: Running, start: str) -> list[list[str]]:
    """The pages from ``start``, following the "Older" links to the end."""
    pages: list[list[str]] = []
    path: str | None = start
    async with service.client() as http:
        while path is not None:
            answer = await http.get(path.replace("&amp;", "&"))
            assert answer.status_code == 200, answer.text
            pages.append(ROW_ID.findall(answer.text))
            older = OLDER.search(answer.text)
            path = older.group(1) if older else None
    return pages


async def test_the_pages_walk_every_row_once_newest_first(
    service: Running, expected: list[str]
) -> None:
    pages = await walk(service, "/predictions")
    assert [len(p) for p in pages] == [50, 50, 38]
    assert [pid for page in pages for pid in page] == expected


async def test_newer_links_walk_back_to_the_same_pages(
    service: Running, expected: list[str]
) -> None:
    forward = await walk(service, "/predictions")
    async with service.client() as http:
        page = await http.get("/predictions")
        path = OLDER.search(page.text)
        assert path is not None and NEWER.search(page.text) is None  # the first page
        while (older := OLDER.search(page.text)) is not None:
            page = await http.get(older.group(1).replace("&amp;", "&"))
        backward = [ROW_ID.findall(page.text)]
        while (newer := NEWER.search(page.text)) is not None:
            page = await http.get(newer.group(1).replace("&amp;", "&"))
            backward.append(ROW_ID.findall(page.text))
    assert list(reversed(backward)) == forward


@pytest.mark.parametrize(
    ("query", "wanted"),
    [
        ("status=failed", lambda pid: pid.startswith("b1-")),
        ("status=none", lambda pid: not pid.startswith("b1-")),
        ("tracking=done", lambda pid: pid.startswith("b0-")),
        ("model=acme/other", lambda pid: pid.startswith("b2-0")),
        ("label=team=red", lambda pid: pid.startswith("s-")),
        ("q=a_b", lambda pid: pid.startswith("a_b")),
        ("q=b2-01", lambda pid: pid.startswith("b2-01")),
        ("status=failed&q=b1-03", lambda pid: pid.startswith("b1-03")),
    ],
)
async def test_filters(service: Running, expected: list[str], query: str, wanted: Any) -> None:
    pages = await walk(service, f"/predictions?{query}")
    assert [pid for page in pages for pid in page] == [p for p in expected if wanted(p)]


async def test_about_how_many_from_the_cached_counts(service: Running) -> None:
    async with service.client() as http:
        first = await http.get("/predictions?status=failed")
        assert 'class="about"' not in first.text  # the list never waits for the counts
        for _ in range(100):
            failed = await http.get("/predictions?status=failed")
            if 'class="about"' in failed.text:
                break
            await asyncio.sleep(0.05)
        everything = await http.get("/predictions")
        by_model = await http.get("/predictions?model=acme/other")
    assert '<span class="about">about 40</span>' in failed.text
    assert '<span class="about">about 138</span>' in everything.text
    assert 'class="about"' not in by_model.text


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("label=no-equals", "invalid label"),
        ("q=a%25b", "an ID prefix is made of letters"),
        ("tracking=sometimes", "unknown tracking state"),
        ("after=123-x%20y", "this page link is damaged"),
        ("before=x-1", "this page link is damaged"),
    ],
)
async def test_a_bad_filter_is_400_on_the_page(service: Running, query: str, words: str) -> None:
    async with service.client() as http:
        answer = await http.get(f"/predictions?{query}")
    assert answer.status_code == 400
    assert words in answer.text and '<form class="filters"' in answer.text


# -- the queries themselves --------------------------------------------------------------


@pytest.fixture
def statements(store: Store) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]).lower())

    event.listen(store.engine, "before_cursor_execute", record)
    yield seen
    event.remove(store.engine, "before_cursor_execute", record)


def test_a_page_is_one_limited_query_and_never_a_count(
    store: Store, expected: list[str], statements: list[str]
) -> None:
    queries = DashboardQueries(store.engine)
    queries.page(PredictionFilter(), size=50)  # learns the collation once
    statements.clear()
    middle = Cursor(T0 + timedelta(minutes=1), "b1-020")
    page = queries.page(PredictionFilter(status="failed"), size=10, after=middle)
    assert [r["id"] for r in page.rows] == [f"b1-{n:03d}" for n in range(19, 9, -1)]
    back = queries.page(PredictionFilter(status="failed"), size=10, before=page.newer)
    assert [r["id"] for r in back.rows] == [f"b1-{n:03d}" for n in range(29, 19, -1)]
    selects = [s for s in statements if s.lstrip().startswith("select")]
    assert len(selects) == 2 and all("limit" in s for s in selects)
    assert not any("count(" in s for s in statements)


def test_the_newest_page_when_fewer_than_a_page_are_newer(
    store: Store, expected: list[str]
) -> None:
    queries = DashboardQueries(store.engine)
    near_top = Cursor(T0 + timedelta(minutes=10, seconds=15), "s-15")
    page = queries.page(PredictionFilter(), size=50, before=near_top)
    assert [r["id"] for r in page.rows] == expected[:50]
    assert page.newer is None and page.older is not None


def test_on_sqlite_pages_and_prefixes_read_indexes(sqlite_url: str) -> None:
    store = Store.from_url(sqlite_url)
    try:
        fill(store)
        queries = DashboardQueries(store.engine)
        plans: list[str] = []

        def explain(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT") and "LIMIT" in statement:
                rows = cursor.connection.execute(f"EXPLAIN QUERY PLAN {statement}", params)
                plans.append(" ".join(str(r[-1]) for r in rows))

        event.listen(store.engine, "after_cursor_execute", explain)
        after = Cursor(T0, "b0-010")
        queries.page(PredictionFilter(), size=50, after=after)
        queries.page(PredictionFilter(id_prefix="b2-0"), size=50)
        for flt in (
            PredictionFilter(status="failed"),
            PredictionFilter(status="none"),
            PredictionFilter(model="m"),
            PredictionFilter(tracking="active"),
        ):
            queries.page(flt, size=50, after=after)
        event.remove(store.engine, "after_cursor_execute", explain)
    finally:
        store.close()
    keyset = "(registered_at,id)<(?,?)"
    assert f"ix_predictions_registered ({keyset})" in plans[0], plans
    assert "SCAN predictions" not in plans[1] and "predictions" in plans[1], plans
    assert f"ix_predictions_status (status=? AND {keyset})" in plans[2], plans
    assert f"ix_predictions_status (status=? AND {keyset})" in plans[3], plans
    assert f"ix_predictions_model (model=? AND {keyset})" in plans[4], plans
    assert f"ix_predictions_active ({keyset})" in plans[5], plans
    assert not any("TEMP B-TREE" in plan for plan in plans[2:]), plans


# -- filters no index serves: a bounded search per page ----------------------------------


def walk_store(queries: DashboardQueries, flt: PredictionFilter, size: int) -> list[list[str]]:
    """Every page of ``flt`` through the ``older`` cursors."""
    pages: list[list[str]] = []
    after: Cursor | None = None
    for _ in range(500):
        page = queries.page(flt, size=size, after=after)
        pages.append([r["id"] for r in page.rows])
        if page.older is None:
            return pages
        after = page.older
    raise AssertionError("the pages never ended")


@pytest.mark.parametrize(
    ("flt", "wanted"),
    [
        (PredictionFilter(labels={"team": "red"}), lambda pid: pid.startswith("s-")),
        (PredictionFilter(labels={"team": "nobody"}), lambda pid: False),
        (PredictionFilter(tracking="done"), lambda pid: pid.startswith("b0-")),
        (PredictionFilter(status="failed", labels={"team": "red"}), lambda pid: False),
        (PredictionFilter(id_prefix="a_b"), lambda pid: pid.startswith("a_b")),
    ],
    ids=["label", "no-match", "tracking", "status-and-label", "prefix-as-like"],
)
def test_a_filter_no_index_serves_searches_a_window_per_page(
    store: Store, expected: list[str], flt: PredictionFilter, wanted: Any
) -> None:
    queries = DashboardQueries(store.engine)
    queries.scan_rows = 25
    queries._byte_order_ids = False  # an ID prefix is then a LIKE, searched as a label
    pages = walk_store(queries, flt, size=4)
    assert [pid for page in pages for pid in page] == [p for p in expected if wanted(p)]


def test_a_bounded_search_says_so_and_goes_on_where_it_stopped(
    store: Store, expected: list[str]
) -> None:
    queries = DashboardQueries(store.engine)
    queries.scan_rows = 25
    first = queries.page(PredictionFilter(labels={"team": "nobody"}), size=4)
    assert first.rows == [] and first.searched == 25
    assert first.older == Cursor(T0 + timedelta(minutes=2), expected[24])
    back = queries.page(PredictionFilter(labels={"team": "red"}), size=4, before=first.older)
    assert [r["id"] for r in back.rows] == [p for p in expected[:24] if p.startswith("s-")][-4:]


async def test_the_page_says_how_far_a_bounded_search_looked(
    service: Running, expected: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DashboardQueries, "scan_rows", 25)
    async with service.client() as http:
        answer = await http.get("/predictions?label=team%3Dnobody")
    assert answer.status_code == 200
    assert "No prediction among the next 25 searched" in answer.text
    assert "search further</a>" in answer.text
    pages = await walk(service, "/predictions?label=team%3Dred")
    assert [pid for page in pages for pid in page] == [p for p in expected if p.startswith("s-")]
