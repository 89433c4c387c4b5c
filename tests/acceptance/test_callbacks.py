"""Callbacks end to end: the daemon in a subprocess, the simulator upstream and a
real webhook receiver that verifies every signature with `standardwebhooks`."""

from __future__ import annotations

import base64
import itertools
import json
import signal
import time
from collections.abc import Iterator

import pytest

from tests.acceptance.conftest import SECRET_KEY, Tracker
from tests.acceptance.test_tracking import rows
from tests.receiver import Receiver
from tests.smtpserver import Recorder, Server
from tracker.simulator import SimulatorThread

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"a-test-signing-secret-of-32bytes").decode()
FAST_RETRIES = "0.3,0.6,1.2"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(secret=WEBHOOK_SECRET) as r:
        yield r


@pytest.fixture
def hooks(tracker: Tracker) -> Tracker:
    tracker.extra_env.update(
        TRACKER_WEBHOOK_SECRET=WEBHOOK_SECRET,
        TRACKER_RETRY_SCHEDULE=FAST_RETRIES,
        TRACKER_WEBHOOK_TIMEOUT="2",
    )
    return tracker


def deliveries(url: str, pid: str) -> list[tuple]:
    return rows(
        url,
        "select d.event, d.state, d.attempts, c.target from deliveries d"
        " join callbacks c on c.id = d.callback_id where d.prediction_id = :p order by d.id",
        p=pid,
    )


def test_each_event_fires_exactly_when_it_should(
    hooks: Tracker, receiver: Receiver, db_url: str
) -> None:
    all_events = receiver.url("ok/all")
    hooks.ok("add", "ok-ev", "--webhook", all_events, "--events", "start,output,logs,completed")
    hooks.ok("add", "ok-ev", "--webhook", receiver.url("ok/default"))  # default: completed
    hooks.ok("add", "abort-ev", "--webhook", all_events, "--events", "start,completed")
    hooks.ok("daemon", "--exit-when-done", timeout=60)

    got = receiver.received("ok/all")
    assert all(r.verified for r in got)
    events = [r.event for r in got if r.json["id"] == "ok-ev"]
    log_rows = rows(db_url, "select count(*) from prediction_logs where prediction_id = 'ok-ev'")
    assert events.count("start") == 1
    assert events.count("completed") == 1
    assert events.count("output") == 1
    assert events.count("logs") == log_rows[0][0] > 0
    by_event = {r.event: r.json for r in got if r.json["id"] == "ok-ev"}
    assert by_event["start"]["status"] in ("processing", "succeeded")
    assert by_event["completed"]["status"] == "succeeded"
    assert by_event["completed"]["output"]
    # aborted: never ran, yet start and completed both fire (first seen past starting)
    abort_events = [r.event for r in got if r.json["id"] == "abort-ev"]
    assert sorted(abort_events) == ["completed", "start"]

    default = receiver.received("ok/default")
    assert [(r.event, r.json["status"]) for r in default] == [("completed", "succeeded")]
    assert default[0].verified
    assert default[0].headers["content-type"] == "application/json"
    assert default[0].headers["user-agent"].startswith("tracker/")
    assert all(state == "delivered" for _, state, _, _ in deliveries(db_url, "ok-ev"))


def test_failing_receiver_gets_retries_with_one_webhook_id(
    hooks: Tracker, receiver: Receiver, db_url: str
) -> None:
    hooks.ok("add", "quick-r1", "--webhook", receiver.url("fail2/r1"))
    hooks.ok("daemon", "--exit-when-done", timeout=60)
    got = receiver.received("fail2/r1")
    assert [r.answered for r in got] == [500, 500, 200]
    assert len({r.webhook_id for r in got}) == 1
    assert len({r.body for r in got}) == 1  # the exact same bytes every time
    assert all(r.verified for r in got)
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert gaps[0] >= 0.3 * 0.9 - 0.05 and gaps[1] >= 0.6 * 0.9 - 0.05, gaps
    assert deliveries(db_url, "quick-r1") == [
        ("completed", "delivered", 3, receiver.url("fail2/r1"))
    ]
    attempts = rows(db_url, "select status_code from delivery_attempts order by id")
    assert [a[0] for a in attempts] == [500, 500, 200]


def test_gone_and_exhausted_deliveries_end_dead_and_can_be_retried(
    hooks: Tracker, receiver: Receiver, db_url: str
) -> None:
    hooks.ok("add", "quick-g", "--webhook", receiver.url("gone/g"))
    hooks.ok("add", "quick-x", "--webhook", receiver.url("fail9/x"))
    hooks.ok("add", "quick-3", "--webhook", receiver.url("redirect/3"))
    hooks.ok("daemon", "--exit-when-done", timeout=60, TRACKER_RETRY_SCHEDULE="0.1,0.1")
    assert [r.answered for r in receiver.received("gone/g")] == [410]
    assert deliveries(db_url, "quick-g")[0][1:3] == ("dead", 1)
    assert len(receiver.received("fail9/x")) == 3  # first attempt + two retries
    assert deliveries(db_url, "quick-x")[0][1:3] == ("dead", 3)
    assert deliveries(db_url, "quick-3")[0][1] == "dead"
    assert len(receiver.received("ok/elsewhere")) == 0  # the redirect was not followed

    listed = json.loads(
        hooks.ok("deliveries", "list", "--state", "dead", "--format", "json").stdout
    )
    assert {d["prediction_id"] for d in listed} == {"quick-g", "quick-x", "quick-3"}
    out = hooks.ok("deliveries", "retry", "--prediction", "quick-x").stdout
    assert "re-queued 1 dead delivery" in out
    first_id = receiver.received("fail9/x")[0].webhook_id
    hooks.ok("daemon", "--once", timeout=30, TRACKER_RETRY_SCHEDULE="0.1,0.1")
    again = receiver.received("fail9/x")
    assert len(again) == 4 and again[-1].webhook_id == first_id
    out = hooks.ok("deliveries", "retry", str(listed[0]["id"]), "--since", "1d").stdout
    assert "re-queued" in out
    bad = hooks.run("deliveries", "retry", "--since", "last tuesday")
    assert bad.returncode == 2 and bad.stderr.startswith("Error:")


def test_hanging_receiver_does_not_hold_up_others(
    hooks: Tracker, receiver: Receiver, sim: SimulatorThread, db_url: str
) -> None:
    hang = receiver.url("hang/h")
    hooks.ok("add", *[f"quick-h{i}" for i in range(6)], "--webhook", hang)
    hooks.ok("add", "quick-fine", "--webhook", receiver.url("ok/fine"))
    proc = hooks.popen("daemon")
    try:
        deadline = time.monotonic() + 20
        while not receiver.received("ok/fine") and time.monotonic() < deadline:
            time.sleep(0.05)
        fine = receiver.received("ok/fine")
        assert fine, "the healthy receiver got nothing while another one hung"
        completed_at = rows(
            db_url,
            "select observed_at from status_transitions where prediction_id = 'quick-fine'"
            " and to_status = 'succeeded'",
        )[0][0]
        observed = completed_at.timestamp() if hasattr(completed_at, "timestamp") else None
        if observed is not None:
            assert fine[0].at - observed < 1.5
        # at most 4 requests at a time go to one receiver
        assert len(receiver.received("hang/h")) <= 4
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0


def test_killed_daemon_sends_after_restart_with_the_same_webhook_id(
    hooks: Tracker, receiver: Receiver, sim: SimulatorThread, db_url: str
) -> None:
    # The first attempt hangs; the daemon is SIGKILLed while it is in flight.
    hooks.ok("add", "quick-k", "--webhook", receiver.url("hang/k"))
    proc = hooks.popen("daemon", "--lease", "2")
    deadline = time.monotonic() + 20
    while not receiver.received("hang/k") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receiver.received("hang/k")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    pending = deliveries(db_url, "quick-k")
    assert [(e, s) for e, s, _, _ in pending] == [("completed", "pending")]
    # The receiver recovers: point the callback at a healthy path, keep the delivery.
    rows_changed = rows(db_url, "select id from callbacks where prediction_id = 'quick-k'")
    assert len(rows_changed) == 1
    _retarget(db_url, receiver.url("ok/k"))
    hooks.ok("daemon", "--exit-when-done", "--lease", "2", timeout=60)
    sent = receiver.received("ok/k")
    assert len(sent) == 1
    assert sent[0].webhook_id == receiver.received("hang/k")[0].webhook_id
    assert deliveries(db_url, "quick-k")[0][1] == "delivered"


def _retarget(url: str, target: str) -> None:
    from sqlalchemy import text

    from tracker.store.store import Store

    store = Store.from_url(url)
    try:
        with store.engine.begin() as conn:
            conn.execute(text("update callbacks set target = :t"), {"t": target})
    finally:
        store.close()


def test_callback_added_after_completion_fires_completed_once(
    hooks: Tracker, receiver: Receiver, db_url: str
) -> None:
    hooks.ok("add", "quick-late")
    hooks.ok("daemon", "--exit-when-done", timeout=60)
    hooks.ok("add", "quick-late", "--webhook", receiver.url("ok/late"))
    hooks.ok("add", "quick-late", "--webhook", receiver.url("ok/late"))  # again: no second one
    hooks.ok("daemon", "--once", timeout=30)
    got = receiver.received("ok/late")
    assert [(r.event, r.json["status"]) for r in got] == [("completed", "succeeded")]
    assert got[0].verified


def test_default_webhook_for_every_prediction(
    hooks: Tracker, receiver: Receiver, db_url: str
) -> None:
    hooks.ok("add", "quick-d1", "fail-d2")
    hooks.ok(
        "daemon", "--exit-when-done", timeout=60, TRACKER_DEFAULT_WEBHOOK=receiver.url("ok/all")
    )
    got = receiver.received("ok/all")
    assert sorted((r.json["id"], r.event) for r in got) == [
        ("fail-d2", "completed"),
        ("quick-d1", "completed"),
    ]
    shown = json.loads(hooks.ok("show", "fail-d2", "--format", "json").stdout)
    assert shown["callbacks"][0]["target"] == receiver.url("ok/all")
    assert shown["deliveries"][0]["history"][0]["status_code"] == 200


def test_secrets_never_reach_rows_logs_or_output(
    hooks: Tracker, receiver: Receiver, sim: SimulatorThread, db_url: str
) -> None:
    smtp = "smtp://mailer:Sup3r-Secret-Pw@127.0.0.1:9/"
    hooks.ok("add", "quick-s", "--webhook", receiver.url("fail1/s"), "--email", "ops@example.com")
    daemon = hooks.ok("daemon", "--exit-when-done", timeout=60, TRACKER_SMTP_URL=smtp)
    outputs = [
        daemon.stdout,
        daemon.stderr,
        hooks.ok("show", "quick-s").stdout,
        hooks.ok("show", "quick-s", "--format", "json").stdout,
        hooks.ok("deliveries", "list", "--format", "json").stdout,
    ]
    tables = ["predictions", "status_transitions", "prediction_logs", "callbacks", "deliveries"]
    for table in [*tables, "delivery_attempts"]:
        outputs += [repr(r) for r in rows(db_url, f"select * from {table}")]
    for secret in (SECRET_KEY, WEBHOOK_SECRET, WEBHOOK_SECRET[6:], "Sup3r-Secret-Pw"):
        assert not any(secret in text for text in outputs), secret
    assert "mailer:***@" in daemon.stderr or "Sup3r" not in daemon.stderr


def test_email_arrives_once_per_event_with_both_parts(hooks: Tracker, db_url: str) -> None:
    recorder = Recorder()
    server = Server(recorder)
    server.start()
    try:
        hooks.ok("add", "quick-m1", "fail-m2", "--email", "ops@example.com")
        hooks.ok(
            "daemon",
            "--exit-when-done",
            timeout=60,
            TRACKER_SMTP_URL=server.url(),
            TRACKER_MAIL_FROM="tracker@example.com",
        )
    finally:
        server.stop()
    subjects = sorted(m["Subject"] for m in recorder.messages)
    assert subjects == ["[tracker] fail-m2 failed", "[tracker] quick-m1 succeeded"]
    assert len(recorder.sessions) == 1  # one connection carried both messages
    for message in recorder.messages:
        assert message["To"] == "ops@example.com"
        assert message["From"] == "tracker@example.com"
        types = {part.get_content_type() for part in message.walk()}
        assert {"text/plain", "text/html"} <= types
    failed = next(m for m in recorder.messages if "fail-m2" in m["Subject"])
    plain = failed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    error = rows(db_url, "select error from predictions where id = 'fail-m2'")[0][0]
    assert str(error).strip('"')[:30] in plain
    states = rows(db_url, "select state from deliveries")
    assert [s[0] for s in states] == ["delivered", "delivered"]
