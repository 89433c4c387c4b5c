"""The dashboard benchmark's reads and changes of its database beside the service: the
places it requests (predictions, cursors deep in the list and inside the batch, ID
prefixes), VACUUM ANALYZE, and the indexes it tries that the product does not have."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import text

from tracker.store.dashboard import Cursor
from tracker.store.store import Store
from tracker.timeparse import utcnow

#: indexes the product does not have, to try at the end (none now: migration 0010
#: made those the list needed, tried here first: ``(registered_at, id)``,
#: ``(status, registered_at, id)``, ``(model, registered_at, id)``)
TRIAL_INDEXES: dict[str, str] = {}


def analyze(url: str) -> None:
    """VACUUM ANALYZE on PostgreSQL (autovacuum's work done at once: statistics and the
    visibility map); nothing on SQLite (the tracker never runs ANALYZE there)."""
    if url.startswith("postgresql"):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")


def with_indexes(url: str) -> None:
    store = Store.from_url(url, pool_size=1)
    try:
        with store.engine.begin() as conn:
            for name, definition in TRIAL_INDEXES.items():
                conn.execute(text(f"CREATE INDEX {name} ON predictions {definition}"))
    finally:
        store.close()
    analyze(url)


def _rows(url: str, sql: str, **params: Any) -> list[Any]:
    store = Store.from_url(url, pool_size=1)
    try:
        with store.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())
    finally:
        store.close()


def sample_ids(url: str, n: int) -> list[str]:
    """``n`` predictions with children, those with a dead delivery first."""
    dead = "SELECT prediction_id FROM deliveries WHERE state = 'dead' ORDER BY id LIMIT :n"
    ids = [r[0] for r in _rows(url, dead, n=n // 2)]
    more = "SELECT id FROM predictions WHERE id LIKE 'done-%' ORDER BY id DESC LIMIT :n"
    return ids + [r[0] for r in _rows(url, more, n=n - len(ids))]


def deep_cursors(url: str, n: int, days: float, seed: int) -> list[Cursor]:
    """``n`` places spread over the list's whole depth (registration times)."""
    rng = random.Random(seed)
    now = utcnow()
    sql = (
        "SELECT registered_at, id FROM predictions WHERE registered_at <= :at"
        " ORDER BY registered_at DESC, id DESC LIMIT 1"
    )
    cursors = []
    for _ in range(n):
        at = now - timedelta(days=days * rng.uniform(0.1, 0.95))
        if url.startswith("sqlite"):
            at = at.replace(tzinfo=None)  # stored as UTC text
        (registered, pid) = _rows(url, sql, at=at)[0]
        moment = datetime.fromisoformat(registered) if isinstance(registered, str) else registered
        cursors.append(Cursor(moment if moment.tzinfo else moment.replace(tzinfo=UTC), pid))
    return cursors


def sample_prefixes(n: int, seed: int) -> list[str]:
    """``n`` two-character ID prefixes (a letter, a digit: about 1 ID in 1,300 each)."""
    rng = random.Random(seed)
    return [f"{rng.choice('abcdefghijklmnopqrstuvwxyz')}{rng.randrange(10)}" for _ in range(n)]


def batch_cursors(url: str, at: datetime, n: int) -> list[Cursor]:
    """``n`` places inside the batch registered at ``at``, from its top to its end."""
    ids = [r[0] for r in _rows(url, "SELECT id FROM predictions WHERE id LIKE 'batch-%'")]
    ids.sort(reverse=True)
    step = max(1, len(ids) // (n + 1))
    return [Cursor(at, ids[step * (i + 1)]) for i in range(n)]


def last_cursors(url: str, condition: str, n: int) -> list[Cursor]:
    """The places of the ``n`` oldest rows matching ``condition`` (SQL): the list's last
    pages for that filter, 0 to ``n - 1`` rows each."""
    sql = (
        f"SELECT registered_at, id FROM predictions WHERE {condition}"
        " ORDER BY registered_at, id LIMIT :n"
    )
    return [Cursor(_aware(at), pid) for at, pid in _rows(url, sql, n=n)]


def _aware(value: datetime | str) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
