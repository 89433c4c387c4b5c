"""Cancelling end to end: `tracker cancel` and deadlines with daemons running as
processes against the real simulator (which checks the API key), on both engines.

A deadline is acted on exactly once: with two daemons on one PostgreSQL database and
across a daemon's restart, the simulator gets one cancel per prediction and the
``deadline`` event reaches its webhook once. The key never goes to a ``urls.cancel``
on another origin: a second server on loopback stands for that origin and must hear
nothing."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import update

from tests.acceptance.conftest import SECRET_KEY, Tracker
from tests.acceptance.test_faults import PATIENCE, DaemonProcess, spawn, wait_until
from tests.acceptance.test_tracking import rows
from tests.clirun import run_tracker
from tests.receiver import Receiver
from tracker.simulator import PredictionPlan, SimConfig, SimulatorThread
from tracker.store.store import Store
from tracker.store.tables import predictions

__all__ = ["spawn"]  # the fixture, shared with test_faults

QUIET = PredictionPlan(outcome=None, queue_seconds=0, log_lines=[])  #: runs, never changes


@pytest.fixture
def keyed() -> Iterator[SimulatorThread]:
    """The simulator, refusing any request without the tests' API key."""
    config = SimConfig(api_key=SECRET_KEY, queue_seconds=0.2, log_interval_seconds=0.2)
    with SimulatorThread(config) as simulator:
        yield simulator


@pytest.fixture
def tracker(db_url: str, keyed: SimulatorThread) -> Tracker:
    return Tracker(database_url=db_url, api_base=keyed.base_url)


def statuses(url: str, *ids: str) -> dict[str, str | None]:
    found = dict(rows(url, "select id, status from predictions"))
    return {pid: found.get(pid) for pid in ids}


def cancel(tracker: Tracker, *args: str, **env: str) -> tuple[int, str, str]:
    result = run_tracker(["cancel", *args], tracker.env(**env))
    return result.returncode, result.stdout, result.stderr


class Foreign:
    """Another origin on loopback (another port): records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                seen.append(("POST", self.path, dict(self.headers)))
                self.send_response(200)
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Foreign:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"


def set_urls(url: str, pid: str, urls: dict[str, str]) -> None:
    store = Store.from_url(url)
    try:
        with store.engine.begin() as conn:
            conn.execute(update(predictions).where(predictions.c.id == pid).values(urls=urls))
    finally:
        store.close()


def test_cancel_with_a_daemon_running_is_seen_at_once(
    tracker: Tracker, keyed: SimulatorThread, db_url: str, spawn: Callable[..., DaemonProcess]
) -> None:
    for pid in ("quiet-1", "quiet-2"):
        keyed.define(pid, QUIET)
    keyed.define("done-3", PredictionPlan(queue_seconds=0, run_seconds=0.1))
    tracker.ok("add", "quiet-1", "quiet-2", "done-3")
    # --poll-max 30: a prediction that never changes is polled less and less often;
    # a cancel makes it due at once all the same
    daemon = spawn(tracker, "--poll-max", "30")
    daemon.wait_started()
    wait_until(
        lambda: (
            statuses(db_url, "quiet-1", "quiet-2", "done-3")
            == {"quiet-1": "processing", "quiet-2": "processing", "done-3": "succeeded"}
        ),
        PATIENCE,
        "the predictions did not start",
    )
    code, out, err = cancel(tracker, "quiet-1", "done-3", "never-4", "quiet-2")
    assert code == 1
    assert out.splitlines() == [
        "quiet-1: cancel requested (the upstream says 'canceled')",
        "done-3: already succeeded, nothing to cancel",
        "never-4: not registered",
        "quiet-2: cancel requested (the upstream says 'canceled')",
    ]
    assert err == "Error: 1 of 4 not cancelled: never-4\n"
    wait_until(
        lambda: (
            statuses(db_url, "quiet-1", "quiet-2") == {"quiet-1": "canceled", "quiet-2": "canceled"}
        ),
        10,  # well before a poll-max of 30 s
        "the daemon did not see the canceled status soon",
    )
    daemon.stop_ok()
    assert [r.status_code for r in keyed.cancels()] == [200, 200]  # with the key; done-3: none
    shown = tracker.ok("show", "quiet-1", "--logs", "none").stdout
    assert "cancel  asked by a user at " in shown
    assert ": requested (HTTP 200, status 'canceled')" in shown
    detail = json.loads(tracker.ok("show", "quiet-1", "--format", "json").stdout)["prediction"]
    assert (detail["cancel_reason"], detail["cancel_outcome"]) == ("user", "requested")
    assert SECRET_KEY not in out + err + shown + str(rows(db_url, "select * from predictions"))


def test_cancel_refuses_bad_input_and_says_why_per_id(tracker: Tracker, db_url: str) -> None:
    code, out, err = cancel(tracker, "ok-1", "not an id")
    assert (code, out) == (2, "")
    assert err.startswith("Error: invalid prediction ID 'not an id'") and err.count("\n") == 1
    code, out, err = cancel(tracker)
    assert code == 2 and "Missing argument" in err
    tracker.ok("add", "gone-5")
    code, out, err = cancel(tracker, "gone-5", "--format", "json")
    (result,) = json.loads(out)
    assert code == 1 and (result["outcome"], result["ok"]) == ("failed", False)
    assert result["message"].startswith("gone-5: cancel failed: the upstream does not know it")
    code, _, err = cancel(
        tracker, "gone-5", TRACKER_API_KEY="", TRACKER_API_BASE="https://x.invalid/v1"
    )
    assert code == 2 and err.startswith("Error: set TRACKER_API_KEY")


def test_add_takes_a_deadline_and_the_default_one(tracker: Tracker, db_url: str) -> None:
    bad = tracker.run("add", "ok-d1", "--deadline", "soon")
    assert bad.returncode == 2
    assert (
        bad.stderr == "Error: invalid deadline: 'soon' is not a duration such as 90s, 30m or 2h\n"
    )
    wrong = tracker.run("add", "ok-d1", TRACKER_DEFAULT_DEADLINE="400d")
    assert wrong.returncode == 2 and wrong.stderr.startswith("Error: TRACKER_DEFAULT_DEADLINE: ")
    assert rows(db_url, "select count(*) from predictions") == [(0,)]  # nothing written
    tracker.ok("add", "ok-d1", "--deadline", "90s")
    tracker.ok("add", "ok-d2", "ok-d1", TRACKER_DEFAULT_DEADLINE="2h")  # d1 keeps its own
    tracker.ok("add", "ok-d3", "--deadline", "none", TRACKER_DEFAULT_DEADLINE="2h")
    seconds = dict(rows(db_url, "select id, deadline_seconds from predictions"))
    assert seconds == {"ok-d1": 90.0, "ok-d2": 7200.0, "ok-d3": None}
    shown = tracker.ok("show", "ok-d1", "--logs", "none").stdout
    assert "     deadline  " in shown


def test_the_key_goes_only_to_the_apis_own_origin(
    tracker: Tracker, keyed: SimulatorThread, db_url: str
) -> None:
    """A stored urls.cancel on another origin is not used (the request goes to
    {base}/predictions/{id}/cancel); one on the API's origin is used as it is."""
    tracker.ok("add", "forever-f1", "forever-f2")
    with Foreign() as foreign:
        set_urls(db_url, "forever-f1", {"cancel": foreign.url("/v1/predictions/forever-f1/cancel")})
        # the API's own origin, another path: the simulator cancels what that path names
        set_urls(
            db_url, "forever-f2", {"cancel": f"{keyed.base_url}/predictions/forever-f3/cancel"}
        )
        code, out, _ = cancel(tracker, "forever-f1", "forever-f2")
        assert foreign.requests == []  # never asked, so never given the key
    assert code == 0, out
    assert {r.prediction_id for r in keyed.cancels()} == {"forever-f1", "forever-f3"}
    assert all(r.status_code == 200 for r in keyed.cancels())


def test_a_deadline_cancels_once_and_fires_its_event_once(
    tracker: Tracker,
    keyed: SimulatorThread,
    db_url: str,
    spawn: Callable[..., DaemonProcess],
) -> None:
    """Across a restart: the first daemon cancels the early deadlines and is stopped;
    the next one cancels the late ones and never the early ones again.

    The late deadlines (and the quick one's) pass only once the first daemon has
    stopped, whatever the time it took: they are 1 h while it runs, then 1 s from
    each prediction's creation, set with `tracker add` (passed already). The quick
    one has ended by then (0.7 s after its creation, before its deadline), as the
    first daemon saw."""
    early, late, ending = (
        [f"forever-e{i}" for i in range(4)],
        [f"forever-l{i}" for i in range(3)],
        "quick-q",
    )
    expected = Counter(
        {(pid, event): 1 for pid in early + late for event in ("deadline", "completed")}
        | {(ending, "completed"): 1}
    )
    with Receiver() as receiver:
        hook = ("--webhook", receiver.url("ok/deadlines"), "--events", "deadline,completed")
        tracker.ok("add", *early, "--deadline", "1s", *hook)
        tracker.ok("add", *late, ending, "--deadline", "1h", *hook)
        first = spawn(tracker)
        first.wait_started()
        wait_until(
            lambda: (
                statuses(db_url, *early, ending)
                == {**dict.fromkeys(early, "canceled"), ending: "succeeded"}
            ),
            PATIENCE,
            lambda: f"the early deadlines were not cancelled:\n{first.output()}",
        )
        first.stop_ok()
        assert {r.prediction_id for r in keyed.cancels()} == set(early)
        tracker.ok("add", *late, ending, "--deadline", "1s")
        second = spawn(tracker, "--exit-when-done")
        assert second.wait(PATIENCE) == 0, second.output()
        # the same run again: nothing is left to cancel
        third = spawn(tracker, "--once")
        assert third.wait(PATIENCE) == 0, third.output()
        wait_until(
            lambda: len(receiver.received("ok/deadlines")) >= expected.total(), 10, "events missing"
        )
        events = Counter((r.json["id"], r.event) for r in receiver.received("ok/deadlines"))
    cancelled = Counter(r.prediction_id for r in keyed.cancels())
    assert cancelled == Counter(early + late)  # once each; the quick one ended first
    assert statuses(db_url, *late, ending) == {
        **dict.fromkeys(late, "canceled"),
        ending: "succeeded",
    }
    assert events == expected
    reasons = rows(
        db_url,
        "select distinct cancel_reason, cancel_outcome from predictions"
        " where cancel_reason is not null",
    )
    assert reasons == [("deadline", "requested")]
    report = json.loads(tracker.ok("report", "deadlines", "--format", "json").stdout)
    assert [(r["predictions"], r["cancelled"], r["canceled"]) for r in report] == [(8, 7, 7)]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_daemons_on_postgresql_cancel_each_deadline_once(
    tracker: Tracker,
    keyed: SimulatorThread,
    db_url: str,
    spawn: Callable[..., DaemonProcess],
) -> None:
    ids = [f"forever-d{i:02d}" for i in range(40)]
    with Receiver() as receiver:
        hook = ("--webhook", receiver.url("ok/two"), "--events", "deadline")
        tracker.ok("add", "--file", "-", *hook, input="\n".join(ids))
        daemons = [spawn(tracker, "--name", name, "--exit-when-done") for name in ("a", "b")]
        # The deadlines pass only once both daemons run (set now, 2 s from each
        # prediction's creation): one started late cannot find the other one done.
        for daemon in daemons:
            daemon.wait_started()
        tracker.ok("add", "--file", "-", "--deadline", "2s", input="\n".join(ids))
        for daemon in daemons:
            assert daemon.wait(PATIENCE) == 0, daemon.output()
        wait_until(lambda: len(receiver.received("ok/two")) >= len(ids), 10, "events missing")
        events = Counter(r.json["id"] for r in receiver.received("ok/two"))
    assert Counter(r.prediction_id for r in keyed.cancels()) == Counter(ids)  # once each
    assert events == Counter(ids)
    assert set(statuses(db_url, *ids).values()) == {"canceled"}
    logs = [d.output() for d in daemons]
    assert all("deadline passed, cancel requested" in log for log in logs), "one daemon did all"
