"""A SQLite file deleted or replaced under a running daemon: it says so and exits 1,
instead of writing to a file nobody can open again and exiting 0."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.acceptance.conftest import Tracker
from tracker.simulator import SimulatorThread


def wait_for_polls(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(path) as conn:
            if conn.execute("select sum(poll_count) from predictions").fetchone()[0]:
                return
        time.sleep(0.1)
    raise AssertionError("the daemon never polled")


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_the_daemon_stops_when_its_sqlite_file_goes_away(
    sqlite_url: str, sim: SimulatorThread, tmp_path: Path, how: str
) -> None:
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    spare = tmp_path / "spare.db"
    shutil.copy(path, spare)
    tracker = Tracker(database_url=sqlite_url, api_base=sim.base_url)
    tracker.ok("add", *(f"slow-{i}" for i in range(20)))
    daemon = tracker.popen("daemon")
    try:
        wait_for_polls(path)
        if how == "deleted":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        else:
            os.replace(spare, path)
        _, stderr = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGKILL)
            daemon.wait()
    assert daemon.returncode == 1, stderr
    assert f"the SQLite database file {path} was {how}" in stderr
    assert "Traceback" not in stderr
    assert stderr.count(" was {how}") <= 4, stderr  # said once, not once per poll in flight
