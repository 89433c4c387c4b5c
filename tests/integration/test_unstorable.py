"""Answers an engine cannot store cost their own prediction an error, never the batch."""

from __future__ import annotations

import dataclasses
import random
import string

import pytest
from sqlalchemy import text

from tests.integration.test_store import add, claim, plan
from tracker.domain import PredictionState
from tracker.exceptions import UnstorableObservation
from tracker.poll.observe import MAX_NAME_BYTES
from tracker.store.store import Store


def _claimed(store: Store, count: int) -> tuple[list[str], dict[str, PredictionState]]:
    """``count`` predictions registered and claimed: their IDs and states."""
    ids = [f"p{i:02d}" for i in range(count)]
    add(store, *ids)
    return ids, {st.id: st for st in claim(store)}


def _scalar(store: Store, sql: str) -> object:
    with store.engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


def test_an_unstorable_row_in_a_batch_fails_alone(store: Store) -> None:
    """A lone surrogate (or NUL) that got past the sanitizer: the other rows of the
    batch are written once, the bad one comes back as its own error."""
    ids, states = _claimed(store, 30)
    items = [plan(states[pid], {"status": "processing", "logs": f"{pid}\n"}) for pid in ids]
    items[7] = plan(states["p07"], {"status": "processing", "logs": "bad \ud800 \x00\n"})
    results = store.apply_observations(items).results
    assert isinstance(results[7], UnstorableObservation)
    assert "p07" in str(results[7])
    assert results[:7] + results[8:] == [0] * 29
    written = _scalar(store, _PROCESSING)
    chunks = _scalar(store, "select count(*) from prediction_logs")
    bad = _scalar(store, "select status from predictions where id = 'p07'")
    assert (written, chunks, bad) == (29, 29, None)


_PROCESSING = "select count(*) from predictions where status = 'processing'"


def _incompressible(size: int) -> str:
    """Text PostgreSQL cannot compress into an index entry."""
    return "".join(random.Random(size).choices(string.ascii_letters + string.digits, k=size))


def test_a_model_or_version_too_long_for_an_index_stays_only_in_raw(store: Store) -> None:
    """An upstream naming a model of 20,000 characters: the column keeps what it had
    (the whole answer stays in ``raw``) and the batch is written whole."""
    ids, states = _claimed(store, 10)
    long_name = _incompressible(20_000)
    items = [plan(states[pid], {"status": "processing", "model": "a/b"}) for pid in ids]
    items[3] = plan(
        states["p03"], {"status": "processing", "model": long_name, "version": long_name}
    )
    items[4] = plan(states["p04"], {"status": "processing", "model": "é" * MAX_NAME_BYTES})
    items[5] = plan(states["p05"], {"status": "processing", "model": "m" * MAX_NAME_BYTES})
    assert store.apply_observations(items).results == [0] * 10
    with store.engine.connect() as conn:
        rows = dict(conn.execute(text("select id, model from predictions")).all())
    raw = _scalar(store, "select raw from predictions where id = 'p03'")
    assert rows.pop("p03") is None and rows.pop("p04") is None
    assert rows.pop("p05") == "m" * MAX_NAME_BYTES
    assert set(rows.values()) == {"a/b"}
    assert long_name in str(raw)


@pytest.mark.postgres
def test_a_row_beyond_an_engine_limit_fails_alone(pg_url: str) -> None:
    """Should a value still reach an index entry too large for PostgreSQL (SQLSTATE
    class 54, which psycopg calls operational), it is that row's error, not an
    outage of the database: the rest of the batch is written."""
    with Store.from_url(pg_url) as store:
        ids, states = _claimed(store, 10)
        items = [plan(states[pid], {"status": "processing"}) for pid in ids]
        update, due, owner = items[6]
        fields = {**update.fields, "model": _incompressible(20_000)}
        items[6] = (dataclasses.replace(update, fields=fields), due, owner)
        results = store.apply_observations(items).results
        assert isinstance(results[6], UnstorableObservation)
        assert "index row" in str(results[6])
        assert results[:6] + results[7:] == [0] * 9
        assert _scalar(store, _PROCESSING) == 9
