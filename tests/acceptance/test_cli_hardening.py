"""Hostile data and careless input meet the command line (issue 11, items 11-13, 15, 17):
what is shown is escaped and masked, what is read is bounded, a newer database is named."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.acceptance.conftest import Tracker
from tracker.store.store import SCHEMA_HEAD, Store


@pytest.fixture
def cli(db_url: str) -> Tracker:
    return Tracker(database_url=db_url, api_base="http://127.0.0.1:9/v1")


def one_error_line(result: object) -> str:
    stderr = result.stderr  # type: ignore[attr-defined]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), stderr
    return str(lines[0])


# -- item 17: a database migrated by a newer tracker --------------------------


def set_revision(db_url: str, revision: str) -> None:
    store = Store.from_url(db_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        store.close()


@pytest.mark.parametrize("args", [["list"], ["add", "x-1"], ["status"], ["db", "upgrade"]])
def test_a_newer_database_asks_for_a_newer_tracker(
    cli: Tracker, db_url: str, args: list[str]
) -> None:
    set_revision(db_url, "0099_from_the_future")
    result = cli.run(*args)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "newer than this tracker" in line and "upgrade the tracker" in line, line
    assert "0099_from_the_future" in line and SCHEMA_HEAD in line
    assert "db upgrade" not in line and "Can't locate" not in line


def test_db_current_names_a_newer_revision(cli: Tracker, db_url: str) -> None:
    set_revision(db_url, "0099")
    result = cli.ok("db", "current")
    assert result.stdout.strip() == "0099"
    assert "newer than this tracker" in result.stderr


def test_an_older_database_still_asks_for_db_upgrade(cli: Tracker, db_url: str) -> None:
    set_revision(db_url, "0005")
    line = one_error_line(cli.run("list"))
    assert "run `tracker db upgrade`" in line
