"""The archive end to end: the daemon in a process of its own, the simulator serving
real output files, a real archive (a directory, or an S3-compatible server on
loopback), a real webhook receiver; kill -9 mid-download and several daemons on
PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.acceptance.conftest import SECRET_KEY, Tracker
from tests.acceptance.test_tracking import rows
from tests.clirun import fork_tracker
from tests.receiver import Receiver
from tests.s3server import moto_s3
from tracker.simulator import PredictionPlan, SimulatorThread
from tracker.simulator.files import expected_sha256, png_image

QUICK = {"queue_seconds": 0.1, "run_seconds": 0.3}


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return tmp_path / "archive"


def archiving_to(tracker: Tracker, archive: Path) -> Tracker:
    tracker.extra_env.update(
        TRACKER_ARCHIVE_URL=str(archive),
        # the simulator serves its files on loopback (the default policy is external)
        TRACKER_ARCHIVE_ALLOWED_HOSTS="loopback",
        TRACKER_ARCHIVE_RETRY_SCHEDULE="0.5,1",
    )
    return tracker


@pytest.fixture
def archiving(tracker: Tracker, archive: Path) -> Tracker:
    return archiving_to(tracker, archive)


def artifacts(url: str, pid: str) -> list[tuple]:
    return rows(
        url,
        "select position, state, bytes, sha256, content_type, stored_url, attempts, last_error"
        " from artifacts where prediction_id = :p order by position",
        p=pid,
    )


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_every_output_file_is_archived_and_archived_fires_once(
    archiving: Tracker, sim: SimulatorThread, archive: Path, db_url: str
) -> None:
    sim.define("ok-three", PredictionPlan(output_files=3, **QUICK))  # type: ignore[arg-type]
    sim.define("fail-none", PredictionPlan(outcome="failed", **QUICK))  # type: ignore[arg-type]
    with Receiver() as receiver:
        hook = receiver.url("ok/files")
        archiving.ok("add", "ok-three", "fail-none", "--webhook", hook, "--events", "archived")
        archiving.ok("daemon", "--exit-when-done", timeout=60)
        got = receiver.received("ok/files")
    stored = artifacts(db_url, "ok-three")
    assert [(r[0], r[1], r[4], r[6], r[7]) for r in stored] == [
        (n, "stored", "image/png", 1, None) for n in range(3)
    ]
    assert artifacts(db_url, "fail-none") == []
    assert files_in(archive) == [f"ok-three/{n}-output.png" for n in range(3)]
    for position, _, size, sha256, _, stored_url, *_ in stored:
        path = archive / "ok-three" / f"{position}-output.png"
        data = path.read_bytes()
        assert data == png_image("ok-three", index=position, seed=sim.simulator.config.seed)
        assert (size, sha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert stored_url == path.resolve().as_uri()
    # `archived` went out once, with the prediction and where each file went
    assert [r.event for r in got] == ["archived"]
    body = got[0].json
    assert body["id"] == "ok-three" and body["status"] == "succeeded"
    assert [a["stored_url"] for a in body["artifacts"]] == [r[5] for r in stored]
    assert [a["sha256"] for a in body["artifacts"]] == [r[3] for r in stored]
    # each file was fetched once; the API key went nowhere but the API
    assert sim.file_request_count("ok-three") == 3


def test_a_flaky_file_host_is_retried_and_a_file_too_large_is_refused(
    archiving: Tracker, sim: SimulatorThread, db_url: str
) -> None:
    """A file the host answers 503, then cuts off halfway, then serves is stored on the
    third attempt; a file over TRACKER_ARCHIVE_MAX_BYTES is failed at once."""
    sim.define("ok-flaky", PredictionPlan(file_faults=[503, "cut"], **QUICK))  # type: ignore[arg-type]
    sim.define("ok-huge", PredictionPlan(output_bytes=5_000_000, **QUICK))  # type: ignore[arg-type]
    archiving.ok("add", "ok-flaky", "ok-huge")
    result = archiving.run(
        "daemon",
        "--exit-when-done",
        timeout=90,
        TRACKER_ARCHIVE_MAX_BYTES="1000000",
    )
    assert result.returncode == 0, result.stderr
    (flaky,) = artifacts(db_url, "ok-flaky")
    assert (flaky[1], flaky[6], flaky[7]) == ("stored", 3, None)
    assert sim.file_request_count("ok-flaky") == 3
    (huge,) = artifacts(db_url, "ok-huge")
    assert huge[1] == "failed" and huge[2] is None and "TRACKER_ARCHIVE_MAX_BYTES" in huge[7]
    assert SECRET_KEY not in result.stderr


def test_outputs_go_to_an_s3_bucket(sqlite_url: str, sim: SimulatorThread, tmp_path: Path) -> None:
    tracker = archiving_to(Tracker(sqlite_url, sim.base_url), tmp_path)
    sim.define("ok-s3", PredictionPlan(output_files=2, **QUICK))  # type: ignore[arg-type]
    tracker.ok("add", "ok-s3")
    with moto_s3() as s3:
        result = tracker.run(
            "daemon",
            "--exit-when-done",
            timeout=60,
            TRACKER_ARCHIVE_URL=s3.archive_url("tracker"),
            **s3.env,
        )
        assert result.returncode == 0, result.stderr
        stored = artifacts(sqlite_url, "ok-s3")
        assert [(r[1], r[5]) for r in stored] == [
            ("stored", f"{s3.archive_url('tracker')}/ok-s3/{n}-output.png") for n in range(2)
        ]
        assert s3.keys() == [f"tracker/ok-s3/{n}-output.png" for n in range(2)]
        for position, *_ in stored:
            data = s3.read(f"tracker/ok-s3/{position}-output.png")
            assert data == png_image("ok-s3", index=position, seed=sim.simulator.config.seed)
            assert hashlib.sha256(data).hexdigest() == stored[position][3]
        assert s3.multipart_uploads() == []
    assert s3.env["AWS_SECRET_ACCESS_KEY"] not in result.stderr + result.stdout


def test_kill_9_mid_download_loses_nothing_and_stores_nothing_twice(
    archiving: Tracker, sim: SimulatorThread, archive: Path, db_url: str
) -> None:
    size = 400 * 1024 * 1024
    sim.define("ok-big", PredictionPlan(output_bytes=size, **QUICK))  # type: ignore[arg-type]
    archiving.ok("add", "ok-big")
    daemon = archiving.popen("daemon", "--lease", "3")
    try:
        deadline = time.monotonic() + 60
        while not any(archive.rglob(".*part*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(archive.rglob(".*part*")), "the download never started"
    finally:
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.communicate(timeout=10)
    assert not (archive / "ok-big" / "0-output.bin").exists()  # never a half file
    assert [r[1] for r in artifacts(db_url, "ok-big")] == ["pending"]
    archiving.ok("daemon", "--exit-when-done", "--lease", "3", timeout=120)
    ((position, state, stored_size, sha256, *_),) = artifacts(db_url, "ok-big")
    assert (position, state, stored_size) == (0, "stored", size)
    assert sha256 == expected_sha256("ok-big", size, seed=sim.simulator.config.seed)
    assert files_in(archive) == ["ok-big/0-output.bin"]  # the partial file was swept
    assert (archive / "ok-big" / "0-output.bin").stat().st_size == size


def test_two_daemons_share_the_downloads_on_postgresql(
    pg_url: str, sim: SimulatorThread, archive: Path
) -> None:
    archiving, db_url = archiving_to(Tracker(pg_url, sim.base_url), archive), pg_url
    ids = [f"ok-share{n}" for n in range(12)]
    for pid in ids:
        sim.define(pid, PredictionPlan(output_files=2, **QUICK))  # type: ignore[arg-type]
    archiving.ok("add", *ids)
    daemons = [archiving.popen("daemon", "--exit-when-done", "--name", name) for name in ("a", "b")]
    outputs = [d.communicate(timeout=90) for d in daemons]
    assert [d.returncode for d in daemons] == [0, 0], outputs
    states = rows(db_url, "select state, count(*) from artifacts group by state")
    assert states == [("stored", 24)]
    assert len(files_in(archive)) == 24
    for pid in ids:
        assert sim.file_request_count(pid) == 2  # each file fetched by one daemon, once


def test_tracker_show_lists_the_archived_files(
    archiving: Tracker, sim: SimulatorThread, db_url: str
) -> None:
    sim.define("ok-show", PredictionPlan(output_files=2, **QUICK))  # type: ignore[arg-type]
    archiving.ok("add", "ok-show")
    archiving.ok("daemon", "--exit-when-done", timeout=60)
    shown = json.loads(archiving.ok("show", "ok-show", "--format", "json").stdout)
    assert [(a["position"], a["state"]) for a in shown["artifacts"]] == [
        (0, "stored"),
        (1, "stored"),
    ]


def test_the_demo_archives_its_outputs(tmp_path: Path) -> None:
    database = tmp_path / "demo.db"
    result = fork_tracker(  # as `python -m tracker demo`, forked (tests/clirun.py)
        ["demo", "--quiet", "--database-url", f"sqlite:///{database}"],
        {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")},
        timeout=180,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "demo-archive"
    stored = files_in(folder)
    assert stored and all(name.endswith(".png") for name in stored)
    assert f"{len(stored)} output files archived in {folder}" in result.stdout
