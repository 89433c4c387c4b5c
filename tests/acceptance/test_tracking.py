"""End to end: `tracker add` + `tracker daemon` against the simulator, on both engines."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.acceptance.conftest import SECRET_KEY, Tracker
from tracker.simulator import PredictionPlan, SimConfig, Simulator, SimulatorThread
from tracker.store.store import Store


def rows(url: str, sql: str, **params: object) -> list[tuple]:
    store = Store.from_url(url)
    try:
        with store.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]
    finally:
        store.close()


def transitions(url: str, pid: str) -> list[tuple[str | None, str]]:
    return rows(
        url,
        "select from_status, to_status from status_transitions"
        " where prediction_id = :p order by id",
        p=pid,
    )  # type: ignore[return-value]


def stored_logs(url: str, pid: str) -> str:
    chunks = rows(
        url, "select text from prediction_logs where prediction_id = :p order by seq", p=pid
    )
    return "".join(c[0] for c in chunks)


def upstream_body(sim: SimulatorThread, pid: str) -> dict:
    return httpx.get(f"{sim.base_url}/predictions/{pid}").json()


def prediction(url: str, pid: str) -> dict:
    store = Store.from_url(url)
    try:
        detail = store.get_detail(pid)
    finally:
        store.close()
    assert detail is not None
    p = detail.prediction
    return {
        "status": p.status,
        "tracking": p.tracking,
        "errors": p.error_count,
        "last_error": p.last_error,
        "predict_time": p.predict_time,
        "output": p.output,
        "metrics": p.metrics,
        "logs": p.logs,
    }


class Lockstep:
    """A simulator's clock that moves ``step`` seconds only once the daemon has polled,
    at the current time, every prediction it still tracks: each status lasting longer
    than ``step`` is answered to the daemon at least once, however slowly a loaded
    machine runs it (on the wall clock a daemon starved of CPU polls late and skips a
    short-lived status)."""

    def __init__(self, db_url: str, ids: list[str], step: float) -> None:
        self.now = time.time()
        self._db_url, self._ids, self._step = db_url, ids, step

    def __call__(self) -> float:
        return self.now

    @contextmanager
    def driving(self, sim: SimulatorThread) -> Iterator[None]:
        """Move the clock in a thread of its own while the body runs."""
        stop = threading.Event()
        thread = threading.Thread(target=self._drive, args=(sim, stop), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(10)

    def _drive(self, sim: SimulatorThread, stop: threading.Event) -> None:
        store = Store.from_url(self._db_url)
        try:
            while not stop.wait(0.02):
                polled = {r.prediction_id for r in sim.requests() if r.at >= self.now}
                waiting = set(self._ids) - polled
                if waiting:  # not polled since the last step: ended, or not yet polled
                    with store.engine.connect() as conn:
                        done = conn.execute(
                            text("select id from predictions where tracking = 'done'")
                        )
                        if waiting - {row[0] for row in done}:
                            continue
                self.now += self._step
        finally:
            store.close()


def lockstep_simulator(config: SimConfig, clock: Lockstep) -> SimulatorThread:
    """A :class:`SimulatorThread` whose simulator runs on ``clock``."""
    thread = SimulatorThread(config)
    thread.simulator = Simulator(config, clock=clock)
    return thread


def test_every_lifecycle_is_recorded(db_url: str) -> None:
    ids = ["ok-1", "fail-1", "cancel-1", "abort-1", "weird-1", "quick-1"]
    # The simulator's time moves 0.1 s at a time, each step once the daemon has seen
    # the step before: weird-1 shows its unknown status for 0.5 s (and a run lasts
    # 0.3 s or more), so every status is seen, even when the daemon is starved of CPU
    # and polls far later than every --poll-max of 0.2 s (which sets the pace).
    clock = Lockstep(db_url, ids, step=0.1)
    config = SimConfig(queue_seconds=0.3, run_median_seconds=1.0, log_interval_seconds=0.2)
    with lockstep_simulator(config, clock) as sim:
        tracker = Tracker(database_url=db_url, api_base=sim.base_url)
        tracker.ok("add", *ids)
        with clock.driving(sim):
            tracker.ok("daemon", "--exit-when-done", timeout=120, TRACKER_POLL_MAX="0.2")
        check_every_lifecycle(db_url, sim, ids)


def check_every_lifecycle(db_url: str, sim: SimulatorThread, ids: list[str]) -> None:
    expected_paths = {
        "ok-1": [(None, "starting"), ("starting", "processing"), ("processing", "succeeded")],
        "fail-1": [(None, "starting"), ("starting", "processing"), ("processing", "failed")],
        "cancel-1": [(None, "starting"), ("starting", "processing"), ("processing", "canceled")],
        "abort-1": [(None, "starting"), ("starting", "aborted")],
        "weird-1": [
            (None, "starting"),
            ("starting", "queued_elsewhere"),
            ("queued_elsewhere", "processing"),
            ("processing", "succeeded"),
        ],
    }
    for pid, path in expected_paths.items():
        assert transitions(db_url, pid) == path, pid
    # "quick" may finish between two polls: it must end succeeded, whatever was seen between.
    assert transitions(db_url, "quick-1")[-1][1] == "succeeded"

    for pid in ids:
        final = upstream_body(sim, pid)
        got = prediction(db_url, pid)
        assert got["status"] == final["status"]
        assert got["tracking"] == "done"
        assert stored_logs(db_url, pid) == got["logs"] == final["logs"], pid
        if final["status"] in ("succeeded", "failed", "canceled"):
            assert got["predict_time"] == pytest.approx(final["metrics"]["predict_time"])
    assert prediction(db_url, "ok-1")["output"] == upstream_body(sim, "ok-1")["output"]


@pytest.mark.parametrize("pid", ["unicode-1", "biglogs-1"])
def test_logs_are_stored_byte_for_byte(
    tracker: Tracker, sim: SimulatorThread, db_url: str, pid: str
) -> None:
    tracker.ok("add", pid)
    tracker.ok("daemon", "--exit-when-done", timeout=90)
    final = upstream_body(sim, pid)["logs"]
    if pid == "biglogs-1":
        assert len(final.encode()) > 1_000_000
    else:
        assert any(ord(ch) > 0xFFFF for ch in final)  # astral-plane characters included
    stored = stored_logs(db_url, pid)
    assert stored.encode("utf-8") == final.encode("utf-8")
    chunks = rows(db_url, "select count(*) from prediction_logs where prediction_id = :p", p=pid)
    assert chunks[0][0] > 1  # diffed into several chunks, not stored whole each time


def test_faulty_answers_end_in_the_right_state(
    tracker: Tracker, sim: SimulatorThread, db_url: str
) -> None:
    tracker.ok("add", "flaky-1", "junk-1", "ok-2")
    tracker.ok("daemon", "--exit-when-done", timeout=60)
    flaky = prediction(db_url, "flaky-1")
    assert (flaky["status"], flaky["errors"]) == ("succeeded", 3)
    assert flaky["last_error"] is None  # the good answer ended the error; the count stays
    junk = prediction(db_url, "junk-1")
    assert (junk["status"], junk["errors"]) == ("succeeded", 2)
    assert prediction(db_url, "ok-2")["errors"] == 0
    raw = rows(db_url, "select count(*) from predictions where id = 'junk-1' and raw is not null")
    assert raw[0][0] == 1


def test_rate_limit_is_honoured_for_the_whole_key(
    tracker: Tracker, sim: SimulatorThread, db_url: str
) -> None:
    ids = ["ratelimit-1"] + [f"ok-r{i}" for i in range(8)]
    tracker.ok("add", *ids)
    tracker.ok("daemon", "--exit-when-done", timeout=60, TRACKER_POLL_MIN="0.1")
    records = sim.requests()
    limited = [r for r in records if r.status_code == 429]
    assert len(limited) == 1
    after = [r for r in records if r.at > limited[0].at]
    # Requests already in flight when the 429 arrived may land within a few ms;
    # nothing else may be sent before Retry-After (2 s) has passed.
    early = [r for r in after if r.at < limited[0].at + 2.0]
    assert len(early) <= 8 and all(r.at < limited[0].at + 0.2 for r in early), early
    assert prediction(db_url, "ratelimit-1")["status"] == "succeeded"


def test_not_found_ends_lost_without_disturbing_others(
    tracker: Tracker, sim: SimulatorThread, db_url: str
) -> None:
    tracker.ok("add", "gone-1", "ok-3")
    result = tracker.ok(
        "daemon",
        "--exit-when-done",
        "--lost-after",
        "3",
        "--lost-window",
        "1",
        timeout=60,
    )
    assert prediction(db_url, "gone-1")["tracking"] == "lost"
    assert prediction(db_url, "ok-3")["status"] == "succeeded"
    assert "gone-1" in result.stderr and "lost" in result.stderr
    assert sim.request_count("gone-1") >= 3


def test_sigterm_finishes_in_flight_work_and_exits_zero(
    tracker: Tracker, sim: SimulatorThread, db_url: str
) -> None:
    # Never ends, and every answer takes 1.5 s: SIGTERM lands while one is in flight.
    sim.define("slowpoke-1", PredictionPlan(outcome=None, delay_seconds=1.5))
    tracker.ok("add", *[f"forever-{i}" for i in range(20)], "slowpoke-1")
    proc = tracker.popen("daemon", interpreter=True)  # the whole `python -m tracker daemon`
    try:
        deadline = time.monotonic() + 20
        while sim.request_count("slowpoke-1") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sim.request_count("slowpoke-1") >= 2
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _, stderr = proc.communicate(timeout=15)
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    # The answer in flight at SIGTERM was written: one stored poll per request sent.
    polls = rows(db_url, "select poll_count from predictions where id = 'slowpoke-1'")[0][0]
    assert polls == sim.request_count("slowpoke-1")
    assert rows(db_url, "select count(*) from predictions where claimed_by is not null")[0][0] == 0
    assert "stopped" in stderr
    assert SECRET_KEY not in stderr


def test_once_polls_everything_due_once(
    tracker: Tracker, sim: SimulatorThread, db_url: str
) -> None:
    tracker.ok("add", "forever-a", "forever-b", "gone-b")
    tracker.ok("daemon", "--once", timeout=30)
    assert sim.request_count("forever-a") == 1
    assert sim.request_count("gone-b") == 1
    assert prediction(db_url, "forever-a")["status"] == "starting"


def test_api_key_never_reaches_database_or_output(
    tracker: Tracker, sim: SimulatorThread, db_url: str
) -> None:
    tracker.ok("add", "ok-s", "flaky-s", "gone-s")
    daemon = tracker.ok(
        "daemon", "--exit-when-done", "--lost-after", "2", "--lost-window", "0", timeout=60
    )
    listing = tracker.ok("list", "--format", "json")
    show = tracker.ok("show", "ok-s", "--format", "json")
    for text_out in (daemon.stdout, daemon.stderr, listing.stdout, show.stdout):
        assert SECRET_KEY not in text_out
    dump = rows(
        db_url,
        "select coalesce(cast(raw as text), '') || coalesce(last_error, '') || logs"
        " || coalesce(cast(labels as text), '') from predictions",
    )
    assert all(SECRET_KEY not in r[0] for r in dump)


def test_rejected_api_key_pauses_polling_and_says_so_once(db_url: str) -> None:
    with SimulatorThread(SimConfig(api_key="the-right-key")) as sim:
        tracker = Tracker(database_url=db_url, api_base=sim.base_url)
        tracker.ok("add", *[f"ok-k{i}" for i in range(10)])
        result = tracker.run("daemon", "--once", timeout=30)
        assert result.returncode == 1
        assert result.stderr.count("REJECTED THE API KEY") == 1
        assert SECRET_KEY not in result.stderr
        assert sim.request_count() <= 3  # paused after the first 401s, not one per prediction
        # With the right key everything is polled.
        tracker.ok("daemon", "--once", TRACKER_API_KEY="the-right-key", timeout=30)
        assert all(sim.request_count(f"ok-k{i}") >= 1 for i in range(10))


def test_list_and_show_formats(tracker: Tracker, sim: SimulatorThread, db_url: str) -> None:
    tracker.ok("add", "ok-f1", "fail-f2", "--label", "team=vision")
    tracker.ok("daemon", "--exit-when-done", timeout=60)
    listed = json.loads(tracker.ok("list", "--format", "json").stdout)
    assert {r["id"]: r["status"] for r in listed} == {"ok-f1": "succeeded", "fail-f2": "failed"}
    assert listed[0]["labels"] == {"team": "vision"}
    csv_out = tracker.ok("list", "--format", "csv", "--status", "failed").stdout.splitlines()
    assert csv_out[0].startswith("id,status,tracking")
    assert len(csv_out) == 2 and csv_out[1].startswith("fail-f2,failed,done")
    table = tracker.ok("list").stdout
    assert "ok-f1" in table and "succeeded" in table
    shown = json.loads(tracker.ok("show", "fail-f2", "--format", "json").stdout)
    assert [t["to_status"] for t in shown["transitions"]][-1] == "failed"
    assert shown["prediction"]["error"]
    text_out = tracker.ok("show", "fail-f2").stdout
    assert "timeline" in text_out and "failed" in text_out


def test_a_progress_bar_lets_the_adaptive_scheduler_poll_far_less(
    sim: SimulatorThread, sqlite_template: Path, tmp_path: Path
) -> None:
    """The same 8 s run, its logs a progress bar, tracked once per scheduler (by two
    daemons at once, each on a SQLite file of its own): the adaptive one reads the
    bar and polls shortly before the end, the backoff one polls every --poll-min
    because every answer brings new log lines. Both record the whole run."""
    running = {}
    try:
        for scheduler in ("backoff", "adaptive"):
            url = f"sqlite:///{shutil.copy(sqlite_template, tmp_path / f'{scheduler}.db')}"
            tracker = Tracker(database_url=url, api_base=sim.base_url)
            pid = f"bar-{scheduler}"
            sim.define(pid, PredictionPlan(queue_seconds=0.2, run_seconds=8.0))
            tracker.ok("add", pid)
            flags = ("--scheduler", scheduler, "--poll-min", "0.5", "--poll-max", "30")
            running[scheduler] = (url, pid, tracker.popen("daemon", "--exit-when-done", *flags))
        requests = {}
        for scheduler, (url, pid, proc) in running.items():
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert prediction(url, pid)["status"] == "succeeded"
            assert "step 39/39" in stored_logs(url, pid)
            requests[scheduler] = sim.request_count(pid)
    finally:
        for _, _, proc in running.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert requests["adaptive"] * 2 <= requests["backoff"], requests
