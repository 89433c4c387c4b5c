"""How a SQLite database stores what the tracker writes: 8 KB pages for a new file,
an older file's own page size kept, JSON as compact text."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from tracker.store import migrate
from tracker.store.engine import SQLITE_PAGE_SIZE
from tracker.store.store import Store

T0 = datetime(2026, 12, 8, 5, 0, tzinfo=UTC)


def page_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def test_a_new_database_has_8_kb_pages_and_compact_json(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    store = Store.from_url(f"sqlite:///{path}")
    try:
        migrate.upgrade(store)
        store.add_predictions(["p"], now=T0, first_poll_at=T0, labels={"team": "studio"})
    finally:
        store.close()
    assert SQLITE_PAGE_SIZE == 8192 and page_size(path) == SQLITE_PAGE_SIZE
    conn = sqlite3.connect(path)
    try:
        labels = conn.execute("select labels from predictions").fetchone()[0]
        found = conn.execute(
            "select id from predictions where json_extract(labels, '$.team') = 'studio'"
        ).fetchall()
    finally:
        conn.close()
    assert labels == '{"team":"studio"}' and found == [("p",)]


def test_an_older_database_keeps_its_page_size_and_works(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA page_size=4096")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("create table made_before (x)")
    conn.close()
    store = Store.from_url(f"sqlite:///{path}")
    try:
        migrate.upgrade(store)
        store.add_predictions(["p"], now=T0, first_poll_at=T0)
        assert [p.id for p in store.list_predictions()] == ["p"]
    finally:
        store.close()
    assert page_size(path) == 4096
