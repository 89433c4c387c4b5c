"""Answers an engine cannot store cost their own prediction an error, never the batch."""

from __future__ import annotations

from sqlalchemy import text

from tests.integration.test_store import add, claim, plan
from tracker.exceptions import UnstorableObservation
from tracker.store.store import Store


def test_an_unstorable_row_in_a_batch_fails_alone(store: Store) -> None:
    """A lone surrogate (or NUL) that got past the sanitizer: the other rows of the
    batch are written once, the bad one comes back as its own error."""
    ids = [f"p{i:02d}" for i in range(30)]
    add(store, *ids)
    states = {st.id: st for st in claim(store)}
    items = [plan(states[pid], {"status": "processing", "logs": f"{pid}\n"}) for pid in ids]
    items[7] = plan(states["p07"], {"status": "processing", "logs": "bad \ud800 \x00\n"})
    results = store.apply_observations(items).results
    assert isinstance(results[7], UnstorableObservation)
    assert "p07" in str(results[7])
    assert results[:7] + results[8:] == [0] * 29
    with store.engine.connect() as conn:
        written = conn.execute(
            text("select count(*) from predictions where status = 'processing'")
        ).scalar()
        chunks = conn.execute(text("select count(*) from prediction_logs")).scalar()
        bad = conn.execute(text("select status from predictions where id = 'p07'")).scalar()
    assert (written, chunks, bad) == (29, 29, None)
