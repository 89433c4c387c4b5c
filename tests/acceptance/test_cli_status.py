"""`tracker status` as a health check: exit 0 healthy, 1 unhealthy, 3 when the
database cannot be read (health unknown); JSON in every case with --format json."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.clirun import fork_tracker
from tracker.store.store import Store
from tracker.timeparse import utcnow


def status(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    return fork_tracker(["status", *args, "--database-url", url], env, timeout=60)


def as_json(url: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = status(url, "--format", "json", *args)
    assert result.stderr == ""
    return result.returncode, json.loads(result.stdout)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed again)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def add_overdue(url: str, minutes: float) -> None:
    """One active prediction whose first poll was due ``minutes`` ago."""
    store = Store.from_url(url)
    try:
        due = utcnow() - timedelta(minutes=minutes)
        store.add_predictions(["p-1"], now=due, first_poll_at=due)
    finally:
        store.close()


def start_daemon(url: str) -> None:
    store = Store.from_url(url)
    try:
        now = utcnow()
        store.register_daemon(
            name="d-1", host="h", pid=1, version="t", now=now, live_within=timedelta(seconds=30)
        )
    finally:
        store.close()


def test_healthy_is_0(db_url: str) -> None:
    add_overdue(db_url, minutes=0.1)
    start_daemon(db_url)
    code, report = as_json(db_url)
    assert code == 0, report
    assert report["healthy"] is True and report["reachable"] is True
    assert report["error"] is None and report["problems"] == []
    assert report["active_predictions"] == 1 and len(report["daemons"]) == 1
    table = status(db_url)
    assert table.returncode == 0 and table.stderr == ""
    assert "healthy" in table.stdout and "UNHEALTHY" not in table.stdout


def test_unhealthy_is_1(db_url: str) -> None:
    add_overdue(db_url, minutes=10)  # and no daemon
    code, report = as_json(db_url)
    assert code == 1
    assert report["healthy"] is False and report["reachable"] is True and report["error"] is None
    assert report["problems"] == [
        "no live daemon, 1 predictions waiting",
        f"schedule lag {report['schedule_lag']:.0f} s exceeds 60 s",
    ]
    table = status(db_url)
    assert table.returncode == 1
    assert "UNHEALTHY: no live daemon" in table.stdout
    # the lag alone, with a live daemon: unhealthy too; within a larger --max-lag: healthy
    start_daemon(db_url)
    assert as_json(db_url)[0] == 1
    assert as_json(db_url, "--max-lag", "3600")[0] == 0


def unknown(url: str, error: str) -> None:
    code, report = as_json(url)
    assert code == 3
    assert report == {"healthy": None, "reachable": False, "error": error, "problems": [error]}
    table = status(url)
    assert table.returncode == 3
    assert table.stdout == ""
    assert table.stderr == f"Error: {error}\n"


@pytest.mark.postgres
def test_unreachable_postgresql_is_3() -> None:
    port = closed_port()
    url = f"postgresql://postgres@127.0.0.1:{port}/tracker"
    code, report = as_json(url)
    assert code == 3, report
    assert report["healthy"] is None and report["reachable"] is False
    assert "Connection refused" in report["error"] and str(port) in report["error"]
    unknown(url, report["error"])


def test_missing_sqlite_file_is_3_and_stays_missing(tmp_path: Path) -> None:
    path = tmp_path / "tracker.db"
    unknown(f"sqlite:///{path}", f"no database at {path} (run tracker db upgrade to create it)")
    assert list(tmp_path.iterdir()) == []


def test_a_database_without_the_schema_is_3(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    store = Store.from_url(f"sqlite:///{path}")  # a database, but not the tracker's
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE other (x INTEGER)"))
    store.close()
    unknown(f"sqlite:///{path}", "the database has no tracker tables yet: run `tracker db upgrade`")


def test_an_unsupported_url_is_3() -> None:
    unknown("mysql://db/tracker", "unsupported database 'mysql': use sqlite:// or postgresql://")


def test_a_bad_option_is_still_a_usage_error(sqlite_url: str) -> None:
    result = status(sqlite_url, "--format", "xml")
    assert result.returncode == 2 and result.stderr.startswith("Error: Invalid value")
