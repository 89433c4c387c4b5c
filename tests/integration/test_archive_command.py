"""`tracker archive [ID...] [--retry]` on real SQLite files and PostgreSQL databases,
downloading from a file host on loopback into a local archive directory."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.clirun import run_tracker
from tests.fileserver import FileHost, file_host, png, wait_for
from tests.integration.test_artifacts_store import add, observe, succeeded
from tracker.store.store import Store
from tracker.timeparse import utcnow


@pytest.fixture
def host() -> Iterator[FileHost]:
    with file_host() as running:
        yield running


def environment(db_url: str, archive: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env |= {"TRACKER_DATABASE_URL": db_url, "TRACKER_ARCHIVE_ALLOWED_HOSTS": "loopback"}
    if archive is not None:
        env["TRACKER_ARCHIVE_URL"] = str(archive)
    return env


def archive(
    db_url: str, folder: Path | None, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return run_tracker(["archive", *args], environment(db_url, folder) | env)


def finished(store: Store, pid: str, output: object, **body: Any) -> None:
    """A prediction seen succeeded while the archive was off: no artifacts yet."""
    add(store, pid)
    observe(store, pid, {**succeeded(pid, output), **body}, utcnow(), archive=False)


def states(store: Store, pid: str) -> list[tuple[Any, ...]]:
    return [(a.position, a.state, a.bytes, a.sha256) for a in store.list_artifacts([pid])]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_ids_given_are_archived_and_summed_up(
    store: Store, db_url: str, host: FileHost, tmp_path: Path
) -> None:
    one, two = png(1), png(2, 5000)
    finished(store, "p1", [host.put("/p1/a.png", one), host.put("/p1/b.png", two)])
    finished(store, "p2", host.fail("/p2/gone.png", 404), data_removed=True)
    finished(store, "p3", "a caption, no file")
    # Queued with the answer (archive on), but not named: left for the daemon.
    add(store, "other")
    observe(store, "other", succeeded("other", host.put("/other.png", png(3))), utcnow())
    add(store, "p4")
    folder = tmp_path / "archive"

    result = archive(db_url, folder, "p1", "p2", "p3", "p4", "nope-1", "p1", "--format", "json")

    assert result.returncode == 1
    rows = {row["prediction_id"]: row for row in json.loads(result.stdout)}
    assert list(rows) == ["p1", "p2", "p3", "p4", "nope-1"]
    assert rows["p1"] == {
        "prediction_id": "p1",
        "status": "succeeded",
        "files": 2,
        "stored": 2,
        "failed": 0,
        "pending": 0,
        "stored_bytes": len(one) + len(two),
        "note": "",
    }
    assert (rows["p2"]["files"], rows["p2"]["failed"]) == (1, 1)
    assert rows["p2"]["note"] == (
        f"output 0: HTTP 404 from 127.0.0.1:{host.port}; the upstream removed the output"
    )
    assert rows["p3"]["note"] == "no output files"
    assert rows["p4"]["note"] == "no output files (status not seen yet)"
    assert rows["nope-1"] == {
        "prediction_id": "nope-1",
        "status": None,
        **dict.fromkeys(("files", "stored", "failed", "pending", "stored_bytes")),
        "note": "not registered",
    }
    assert result.stderr.splitlines() == [
        "2 files archived (7.0 kB), 1 failed, 3 new in the queue",
        "Error: not registered: nope-1; 1 file was not archived (see the note;"
        " `tracker archive --retry` tries failed ones again)",
    ]
    assert (folder / "p1" / "0-a.png").read_bytes() == one
    assert (folder / "p1" / "1-b.png").read_bytes() == two
    assert states(store, "p1") == [
        (0, "stored", len(one), sha(one)),
        (1, "stored", len(two), sha(two)),
    ]
    assert states(store, "other") == [(0, "pending", None, None)]
    assert host.hits["/other.png"] == 0

    again = archive(db_url, folder, "p1")
    assert again.returncode == 0, again.stderr
    assert again.stderr == "0 files archived\n"
    assert again.stdout.splitlines() == [
        "prediction_id\tstatus\tfiles\tstored\tfailed\tpending\tstored_bytes\tnote",
        f"p1\tsucceeded\t2\t2\t0\t0\t{len(one) + len(two)}\t",
    ]
    assert host.hits["/p1/a.png"] == host.hits["/p1/b.png"] == 1


def test_without_ids_every_succeeded_prediction_and_retry_tries_failed_again(
    store: Store, db_url: str, host: FileHost, tmp_path: Path
) -> None:
    finished(store, "a1", host.put("/a1.png", png(1)))
    finished(store, "a2", {"image": host.fail("/a2.png", 410)}, data_removed=True)
    finished(store, "a3", "no file")
    folder = tmp_path / "archive"

    first = archive(db_url, folder, "--format", "csv")
    assert first.returncode == 1
    lines = first.stdout.splitlines()
    assert lines[0] == "prediction_id,status,files,stored,failed,pending,stored_bytes,note"
    # The summary without IDs: what this run downloaded and what is not stored.
    assert [line.split(",")[:6] for line in lines[1:]] == [
        ["a1", "succeeded", "1", "1", "0", "0"],
        ["a2", "succeeded", "1", "0", "1", "0"],
    ]
    assert states(store, "a2")[0][1] == "failed"

    host.put("/a2.png", png(2))
    without_retry = archive(db_url, folder)
    assert without_retry.returncode == 1
    assert without_retry.stdout.splitlines()[1:] == [
        f"a2\tsucceeded\t1\t0\t1\t0\t0\toutput 0: HTTP 410 from 127.0.0.1:{host.port};"
        " the upstream removed the output"
    ]
    assert host.hits["/a2.png"] == 1 and host.hits["/a1.png"] == 1

    retried = archive(db_url, folder, "--retry")
    assert retried.returncode == 0, retried.stderr
    assert retried.stderr == "1 file archived (2.0 kB), 1 failed file re-queued\n"
    assert (folder / "a2" / "0-a2.png").read_bytes() == png(2)
    assert states(store, "a2")[0][1] == "stored"

    nothing = archive(db_url, folder)
    assert (nothing.returncode, nothing.stdout.count("\n"), nothing.stderr) == (
        0,
        1,
        "0 files archived\n",
    )


def test_a_file_that_may_still_come_stays_pending_and_is_tried_at_once_by_name(
    store: Store, db_url: str, host: FileHost, tmp_path: Path
) -> None:
    finished(store, "late", host.fail("/late.png", 503))
    folder = tmp_path / "archive"
    first = archive(db_url, folder, "late", TRACKER_ARCHIVE_RETRY_SCHEDULE="3600")
    assert first.returncode == 1
    assert first.stdout.splitlines()[1] == (
        f"late\tsucceeded\t1\t0\t0\t1\t0\toutput 0: HTTP 503 from 127.0.0.1:{host.port}"
    )
    due = store.next_artifact_due()  # waits for its retry, as the schedule says
    assert due is not None and due > utcnow() + timedelta(seconds=3500)
    host.put("/late.png", png(7))
    # Without IDs only what is due is downloaded; by name, at once.
    assert archive(db_url, folder).returncode == 1
    assert host.hits["/late.png"] == 1
    by_name = archive(db_url, folder, "late")
    assert by_name.returncode == 0, by_name.stderr
    assert states(store, "late")[0][1] == "stored" and host.hits["/late.png"] == 2


def test_bad_input_is_one_error_line_and_exit_2(store: Store, db_url: str, tmp_path: Path) -> None:
    finished(store, "p1", "https://example.com/x.png")
    unset = archive(db_url, None, "p1")
    assert unset.returncode == 2 and unset.stdout == ""
    assert unset.stderr.splitlines() == [
        "Error: set TRACKER_ARCHIVE_URL (or --archive-url) to a directory, file:///… or"
        " s3://bucket/prefix: the archive has nowhere to go"
    ]
    bad = archive(db_url, tmp_path / "a", "p1", "bad id")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("Error: invalid prediction ID 'bad id'")
    assert len(bad.stderr.splitlines()) == 1
    assert store.list_artifacts(["p1"]) == []  # nothing was queued
    flag = run_tracker(
        ["archive", "p1", "--archive-url", str(tmp_path / "b"), "--archive-max-bytes", "0"],
        environment(db_url, None),
    )
    assert flag.returncode == 2 and flag.stderr.startswith("Error: ")


def test_an_archive_that_cannot_be_opened_writes_nothing(
    store: Store, db_url: str, tmp_path: Path
) -> None:
    finished(store, "p1", "https://example.com/x.png")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    result = archive(db_url, not_a_folder, "p1")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"Error: TRACKER_ARCHIVE_URL: {not_a_folder} exists and is not a directory\n"
    )
    assert store.list_artifacts(["p1"]) == []


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_without_a_traceback_and_releases_the_claim(
    sqlite_url: str, host: FileHost, tmp_path: Path
) -> None:
    with Store.from_url(sqlite_url) as store:
        finished(store, "big", host.url("/slow/big.mp4"))
    env = environment(sqlite_url, tmp_path / "archive")
    process = subprocess.Popen(
        [sys.executable, "-m", "tracker", "archive", "big"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal delivers it, even when this test runs under a shell
        # that started it in the background (which ignores SIGINT for its children).
        preexec_fn=_sigint_default,
    )
    try:
        wait_for(host.slow_started)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == 130
    # click's own words for Ctrl-C (after an empty line), as for any command
    assert stderr.strip() == "Error: aborted" and stdout == ""
    with Store.from_url(sqlite_url) as store, store.engine.connect() as conn:
        row = conn.execute(text("select state, claimed_by, attempts from artifacts")).one()
    assert tuple(row) == ("pending", None, 0)
    assert not [p for p in (tmp_path / "archive").rglob("*") if p.is_file()]
