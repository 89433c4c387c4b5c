"""Hostile upstream answers, through the real daemon on both engines: each one
costs only its own prediction an error, never another prediction its update,
and nothing unstorable, non-JSON or secret reaches the tables or the webhooks."""

from __future__ import annotations

import json
import random
import signal
import string
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from tests.acceptance.conftest import SECRET_KEY, Tracker
from tests.receiver import Receiver
from tests.scripted_upstream import Script, ScriptedUpstream
from tracker.store.store import Store

OK_IDS = [f"ok-{i:02d}" for i in range(30)]


def body(prediction_id: str, fields: str) -> bytes:
    """A prediction object; ``fields`` is raw JSON text spliced in as written."""
    return f'{{"id": "{prediction_id}", "model": "m/x", {fields}}}'.encode()


#: a model name beyond what a PostgreSQL index entry holds, even compressed
LONG_MODEL = "".join(random.Random(7).choices(string.ascii_letters + string.digits, k=20_000))


def body_with_model(prediction_id: str, model: str) -> bytes:
    return json.dumps({"id": prediction_id, "status": "succeeded", "model": model}).encode()


def script() -> Script:
    deep = "[" * 100_000 + "]" * 100_000
    answers: Script = {
        pid: [(200, body(pid, '"status": "succeeded", "logs": "fine\\n", "output": "o"'))]
        for pid in OK_IDS
    }
    answers.update(
        {
            "surrogate": [(200, body("surrogate", r'"status": "succeeded", "logs": "a\ud800b"'))],
            "nul-logs": [(200, body("nul-logs", r'"status": "succeeded", "logs": "a\u0000b"'))],
            "nul-status": [(200, body("nul-status", r'"status": "succeeded\u0000"'))],
            "deep": [(200, body("deep", f'"status": "succeeded", "output": {deep}'))],
            "nan": [
                (
                    200,
                    body(
                        "nan",
                        '"status": "succeeded",'
                        ' "metrics": {"predict_time": NaN, "up": Infinity, "down": -Infinity}',
                    ),
                )
            ],
            "huge": [
                (200, body("huge", '"status": "succeeded", "metrics": {"predict_time": 1e308}'))
            ],
            "echo": [
                (
                    200,
                    body("echo", f'"status": "succeeded", "logs": "auth was {SECRET_KEY}\\n"'),
                )
            ],
            "long-model": [(200, body_with_model("long-model", LONG_MODEL))],
            "flaky": [
                (503, b"upstream busy"),
                (200, body("flaky", '"status": "succeeded"')),
            ],
        }
    )
    return answers


@pytest.fixture
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream(script()) as server:
        yield server


def wait_until_settled(store: Store, timeout: float = 60.0) -> None:
    """Until every prediction that can end has ended and the two that cannot have errors."""
    settled = (
        "select count(*) from predictions where tracking = 'done'"
        " or (id in ('nul-status', 'deep') and error_count > 0)"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with store.engine.connect() as conn:
            if conn.execute(text(settled)).scalar() == len(OK_IDS) + 9:
                return
        time.sleep(0.2)
    with store.engine.connect() as conn:
        unsettled = conn.execute(
            text("select id, status, tracking, error_count, last_error from predictions")
        ).all()
    raise AssertionError(f"the daemon did not settle every prediction in time: {unsettled}")


def test_hostile_answers_cost_only_their_own_prediction(
    db_url: str, upstream: ScriptedUpstream
) -> None:
    tracker = Tracker(database_url=db_url, api_base=upstream.base_url)
    with Receiver() as receiver:
        tracker.ok("add", *OK_IDS, "surrogate", "nul-logs", "nul-status", "deep", "huge", "echo")
        tracker.ok("add", "flaky", "long-model")
        tracker.ok(
            "add", "nan", "--webhook", receiver.url("ok/nan"),
            TRACKER_WEBHOOK_ALLOWED_HOSTS="loopback",
        )  # fmt: skip
        daemon = tracker.popen("daemon", TRACKER_WEBHOOK_ALLOWED_HOSTS="loopback")
        store = Store.from_url(db_url)
        try:
            wait_until_settled(store)
            deadline = time.monotonic() + 20
            while not receiver.received("ok/nan") and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, stderr = daemon.communicate(timeout=30)
        assert daemon.returncode == 0, stderr
        assert "Traceback" not in stderr

        # Every good prediction was written from its first answer: none polled again.
        assert [upstream.requests[pid] for pid in OK_IDS] == [1] * len(OK_IDS)
        rows = {p.id: p for p in store.list_predictions(limit=None)}
        assert all(rows[pid].status == "succeeded" for pid in OK_IDS)

        # What an engine cannot hold is U+FFFD, the same on both engines.
        assert rows["surrogate"].status == "succeeded"
        assert store.get_detail("surrogate").prediction.logs == "a\ufffdb"  # type: ignore[union-attr]
        assert store.get_detail("nul-logs").prediction.logs == "a\ufffdb"  # type: ignore[union-attr]
        # A status that is no status, and a document too deep: errors on their own rows.
        for pid, reason in (("nul-status", "status"), ("deep", "nests deeper")):
            assert rows[pid].status is None and rows[pid].tracking == "active"
            assert rows[pid].error_count >= 1 and reason in (rows[pid].last_error or "")

        # Non-numbers are JSON null, in the table and in the webhook.
        assert rows["nan"].metrics == {"predict_time": None, "up": None, "down": None}
        with store.engine.connect() as conn:
            stored = conn.execute(text("select metrics from predictions where id = 'nan'")).scalar()
        if isinstance(stored, str):  # SQLite: JSON text that strict parsers accept
            json.loads(stored, parse_constant=_refuse)
        (sent,) = receiver.received("ok/nan")
        assert json.loads(sent.body, parse_constant=_refuse)["metrics"]["up"] is None

        # An absurd predict_time stays in metrics; the reports still run.
        assert float(rows["huge"].metrics["predict_time"]) == 1e308  # jsonb: an exact numeric
        assert rows["huge"].predict_time is None
        report = tracker.ok("report", "models", "--format", "json")
        assert "m/x" in report.stdout

        # The API key echoed in a 200 answer is masked before it is stored.
        assert store.get_detail("echo").prediction.logs == "auth was ***\n"  # type: ignore[union-attr]
        with store.engine.connect() as conn:
            dump = [
                str(tuple(row))
                for table in ("predictions", "prediction_logs", "deliveries")
                for row in conn.execute(text(f"select * from {table}"))
            ]
        assert not [row for row in dump if SECRET_KEY in row]
        shown = tracker.ok("show", "echo")
        assert SECRET_KEY not in shown.stdout and "auth was ***" in shown.stdout

        # A model no index can hold stays only in the stored answer.
        assert rows["long-model"].status == "succeeded" and rows["long-model"].model is None
        with store.engine.connect() as conn:
            raw = conn.execute(text("select raw from predictions where id = 'long-model'")).scalar()
        assert (json.loads(raw) if isinstance(raw, str) else raw)["model"] == LONG_MODEL

        # A good answer ends the error; the count keeps the history.
        assert rows["flaky"].status == "succeeded"
        assert rows["flaky"].last_error is None and rows["flaky"].error_count == 1
        store.close()


def _refuse(name: str) -> None:
    raise ValueError(f"{name} is not JSON")
