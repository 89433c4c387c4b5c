"""`POST /webhooks/upstream` against the real service on loopback, with httpx, on SQLite
and PostgreSQL: a signed push is applied as a poll's answer is (transitions, the new
log text, metrics, callbacks sent once); a bad signature, a missing header or an old
timestamp is 401 and writes nothing; a replayed webhook-id is applied once; pushes out
of order never move a prediction back nor shorten its logs (recorded stale); unknown
IDs are registered with the default callbacks; odd IDs, bodies that are not a
prediction and deep bodies are 400, huge ones 413, and nothing is written.

The daemon runs in the service but never polls here (the first poll of a pushed
prediction is --poll-max away): what the tables hold comes from the pushes alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from tests.receiver import Receiver
from tests.serving import Running, rows, running_service, settings_for
from tracker.domain import Prediction
from tracker.service.push import TIMESTAMP_TOLERANCE
from tracker.store.store import Store

SECRET = "whsec_" + "cHVzaC1zZWNyZXQtZm9yLXRlc3RzLTAxMjM0NTY3ODk="
OTHER_SECRET = "whsec_" + "YW5vdGhlci1zZWNyZXQtbm90LXRoZS1yaWdodC1vbmU="
PATH = "/webhooks/upstream"
T = "2026-12-01T10:00:{:02d}.000000Z"


def prediction(pid: str, status: str, logs: str = "", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": pid,
        "model": "owner/model",
        "version": "v1",
        "input": {"prompt": "a cat"},
        "status": status,
        "logs": logs,
        "output": None,
        "error": None,
        "metrics": {},
        "created_at": T.format(0),
        "urls": {"get": f"https://api.example/v1/predictions/{pid}"},
    }
    if status != "starting":
        body["started_at"] = T.format(2)
    body.update(extra)
    return body


def signed(
    body: bytes,
    *,
    webhook_id: str | None = None,
    at: datetime | None = None,
    secret: str = SECRET,
) -> dict[str, str]:
    webhook_id = webhook_id or f"msg_{secrets.token_hex(12)}"
    at = at or datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body),
    }


async def push(http: httpx.AsyncClient, document: Any, **how: Any) -> httpx.Response:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return await http.post(PATH, content=body, headers=signed(body, **how))


def one(url: str, pid: str) -> Prediction:
    store = Store.from_url(url)
    try:
        detail = store.get_detail(pid)
    finally:
        store.close()
    assert detail is not None
    return detail.prediction


def transitions_counted(exposition: str) -> dict[str, float]:
    """tracker_transitions_total by to_status, parsed as Prometheus parses it."""
    return {
        sample.labels["to_status"]: sample.value
        for family in text_string_to_metric_families(exposition)
        if family.name == "tracker_transitions"
        for sample in family.samples
        if sample.name == "tracker_transitions_total" and sample.value
    }


def written(url: str) -> dict[str, int]:
    """How many rows each table the push path writes holds."""
    tables = ("predictions", "status_transitions", "prediction_logs", "callbacks")
    tables += ("deliveries", "upstream_pushes")
    return {t: int(rows(url, f"select count(*) from {t}")[0][0]) for t in tables}


NOTHING = dict.fromkeys(
    (
        "predictions",
        "status_transitions",
        "prediction_logs",
        "callbacks",
        "deliveries",
        "upstream_pushes",
    ),
    0,
)


async def eventually(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """``check()`` once it is truthy (checked every 20 ms), else fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return result


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def push_settings(db_url: str, receiver: Receiver, **env: str) -> Any:
    variables = {
        "TRACKER_UPSTREAM_WEBHOOK_SECRET": SECRET,
        # the daemon never polls during a test: nothing listens there, and the first
        # poll of a pushed prediction is --poll-max (60 s) away
        "TRACKER_API_BASE": "http://127.0.0.1:9/v1",
        "TRACKER_POLL_MIN": "30",
        "TRACKER_POLL_MAX": "60",
        "TRACKER_DEFAULT_WEBHOOK": receiver.url("ok/default"),
        "TRACKER_DEFAULT_EVENTS": "start,output,logs,completed",
    }
    variables.update(env)
    return settings_for(db_url, **variables)


@pytest.fixture
async def service(db_url: str, receiver: Receiver) -> AsyncIterator[Running]:
    async with running_service(push_settings(db_url, receiver), with_daemon=True) as running:
        yield running


async def test_signed_pushes_are_applied_as_poll_answers(
    service: Running, db_url: str, receiver: Receiver
) -> None:
    pid = "push-lifecycle-1"
    succeeded = prediction(
        pid,
        "succeeded",
        "step 1\nstep 2\ndone\n",
        output=["https://cdn.example/out.png"],
        metrics={"predict_time": 4.25, "image_count": 1},
        completed_at=T.format(9),
    )
    async with service.client(token=None) as http:
        answers = [
            await push(http, prediction(pid, "starting")),
            await push(http, prediction(pid, "processing", "step 1\n")),
            await push(http, prediction(pid, "processing", "step 1\nstep 2\n")),
            await push(http, succeeded),
        ]
    assert [a.status_code for a in answers] == [200] * 4
    assert answers[0].json() == {"id": pid, "outcome": "applied", "registered": True}
    assert [a.json()["outcome"] for a in answers[1:]] == ["applied"] * 3

    assert rows(db_url, "select from_status, to_status from status_transitions order by id") == [
        (None, "starting"),
        ("starting", "processing"),
        ("processing", "succeeded"),
    ]
    assert rows(db_url, "select seq, text from prediction_logs order by seq") == [
        (1, "step 1\n"),
        (2, "step 2\n"),
        (3, "done\n"),
    ]
    ((status, tracking, logs, predict_time, polls, polled, pushed, next_poll),) = rows(
        db_url,
        "select status, tracking, logs, predict_time, poll_count, last_polled_at,"
        " last_pushed_at, next_poll_at from predictions",
    )
    assert (status, tracking, logs, predict_time) == (
        "succeeded",
        "done",
        "step 1\nstep 2\ndone\n",
        4.25,
    )
    assert (polls, polled, next_poll) == (0, None, None)  # pushes are not polls
    assert pushed is not None
    assert rows(db_url, "select outcome from upstream_pushes") == [("applied",)] * 4
    async with service.client() as http:
        scraped = (await http.get("/metrics")).text
    assert transitions_counted(scraped) == {"starting": 1, "processing": 1, "succeeded": 1}

    # Each event went out once, to the default webhook, as a poll's answer would send it.
    events = ["start", "logs", "logs", "output", "logs", "completed"]
    delivered = await eventually(
        lambda: len(receiver.received()) >= len(events) and receiver.received(),
        "the callbacks",
    )
    assert sorted(rows(db_url, "select event from deliveries")) == sorted((e,) for e in events)
    assert len({r.webhook_id for r in delivered}) == len(events)
    assert delivered[-1].json["status"] == "succeeded"
    assert await eventually(
        lambda: (
            rows(db_url, "select count(*) from deliveries where state = 'delivered'")
            == [(len(events),)]
        ),
        "the deliveries to be marked delivered",
    )
    assert len(receiver.received()) == len(events)


@pytest.mark.parametrize(
    "case",
    [
        "wrong secret",
        "tampered body",
        "no webhook-id",
        "no webhook-timestamp",
        "no webhook-signature",
        "timestamp 6 minutes old",
        "timestamp 6 minutes ahead",
        "timestamp not a number",
        "unsigned",
    ],
)
async def test_bad_or_missing_signatures_are_401_and_write_nothing(
    service: Running, db_url: str, case: str
) -> None:
    body = json.dumps(prediction("push-bad-sig", "processing", "x\n")).encode()
    headers = signed(body)
    if case == "wrong secret":
        headers = signed(body, secret=OTHER_SECRET)
    elif case == "tampered body":
        body = body.replace(b"processing", b"succeeded!")
    elif case.startswith("no "):
        del headers[case.removeprefix("no ")]
    elif case == "timestamp 6 minutes old":
        headers = signed(body, at=datetime.now(UTC) - timedelta(minutes=6))
    elif case == "timestamp 6 minutes ahead":
        headers = signed(body, at=datetime.now(UTC) + timedelta(minutes=6))
    elif case == "timestamp not a number":
        headers["webhook-timestamp"] = "nan"
    else:
        headers = {"content-type": "application/json"}
    async with service.client(token=None) as http:
        answer = await http.post(PATH, content=body, headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["error"].startswith(("push refused", "not a signed push"))
    assert written(db_url) == NOTHING


async def test_a_timestamp_within_the_tolerance_is_accepted(service: Running, db_url: str) -> None:
    """TIMESTAMP_TOLERANCE (5 minutes, as docs/limits.md says) on both sides of now."""
    margin = TIMESTAMP_TOLERANCE - timedelta(seconds=30)
    async with service.client(token=None) as http:
        old = await push(
            http, prediction("push-old-ok", "processing"), at=datetime.now(UTC) - margin
        )
        ahead = await push(
            http, prediction("push-ahead-ok", "processing"), at=datetime.now(UTC) + margin
        )
    assert (old.status_code, ahead.status_code) == (200, 200)
    assert sorted(rows(db_url, "select id from predictions")) == [
        ("push-ahead-ok",),
        ("push-old-ok",),
    ]


async def test_a_replayed_webhook_id_is_applied_once(
    service: Running, db_url: str, receiver: Receiver
) -> None:
    pid = "push-replayed"
    body = json.dumps(prediction(pid, "succeeded", "all\n", output="o")).encode()
    headers = signed(body, webhook_id="msg_replayed_1")
    async with service.client(token=None) as http:
        first = await http.post(PATH, content=body, headers=headers)
        # the same delivery again, and again five times at once
        again = await http.post(PATH, content=body, headers=headers)
        burst = await asyncio.gather(
            *(http.post(PATH, content=body, headers=headers) for _ in range(5))
        )
    assert first.json()["outcome"] == "applied"
    assert again.json() == {"id": pid, "outcome": "duplicate", "first": "applied"}
    assert all(a.status_code == 200 for a in burst)
    assert rows(db_url, "select to_status from status_transitions") == [("succeeded",)]
    assert rows(db_url, "select text from prediction_logs") == [("all\n",)]
    assert rows(db_url, "select webhook_id, outcome from upstream_pushes") == [
        ("msg_replayed_1", "applied")
    ]
    events = sorted(e for (e,) in rows(db_url, "select event from deliveries"))
    assert events == ["completed", "logs", "output", "start"]
    await eventually(lambda: len(receiver.received()) >= 4, "the callbacks")
    assert len(receiver.received()) == 4


async def test_pushes_out_of_order_never_move_a_prediction_back(
    service: Running, db_url: str
) -> None:
    pid = "push-out-of-order"
    async with service.client(token=None) as http:
        running = await push(http, prediction(pid, "processing", "a\nb\nc\n"))
        late_start = await push(http, prediction(pid, "starting"))
        shorter = await push(http, prediction(pid, "processing", "a\n"))
        done = await push(
            http, prediction(pid, "succeeded", "a\nb\nc\nd\n", completed_at=T.format(8))
        )
        older = await push(http, prediction(pid, "processing", "a\nb\n"))
        other_end = await push(http, prediction(pid, "canceled", "a\nb\nc\nd\n"))
    answers = (running, late_start, shorter, done, older, other_end)
    assert [a.json()["outcome"] for a in answers] == [
        "applied",
        "stale",
        "stale",
        "applied",
        "stale",
        "stale",
    ]
    assert "'starting' after 'processing'" in late_start.json()["detail"]
    assert "logs (2 characters) are older than the stored (6)" in shorter.json()["detail"]
    assert "after the terminal 'succeeded'" in older.json()["detail"]
    assert rows(db_url, "select status, tracking, logs from predictions") == [
        ("succeeded", "done", "a\nb\nc\nd\n")
    ]
    assert rows(db_url, "select from_status, to_status from status_transitions order by id") == [
        (None, "processing"),
        ("processing", "succeeded"),
    ]
    assert rows(db_url, "select text, restarted from prediction_logs order by seq") == [
        ("a\nb\nc\n", False),
        ("d\n", False),
    ]
    stale = rows(
        db_url,
        "select status, detail from upstream_pushes where outcome = 'stale' order by received_at",
    )
    assert [s for s, _ in stale] == ["starting", "processing", "processing", "canceled"]
    assert all(detail for _, detail in stale)


async def test_an_unknown_id_is_registered_with_the_default_callbacks(
    db_url: str, receiver: Receiver
) -> None:
    settings = push_settings(db_url, receiver, TRACKER_DEFAULT_EMAIL="ops@example.com")
    async with (
        running_service(settings, with_daemon=False) as service,
        service.client(token=None) as http,
    ):
        before = datetime.now(UTC)
        answer = await push(http, prediction("push-unknown-7", "processing", "x\n"))
        scraped = (await http.get("/metrics")).text
    assert transitions_counted(scraped) == {"processing": 1}
    assert answer.json() == {"id": "push-unknown-7", "outcome": "applied", "registered": True}
    assert rows(db_url, "select kind, target, events from callbacks order by kind") == [
        ("email", "ops@example.com", "start,output,logs,completed"),
        ("webhook", receiver.url("ok/default"), "start,output,logs,completed"),
    ]
    got = one(db_url, "push-unknown-7")
    assert (got.tracking, got.status, got.poll_count) == ("active", "processing", 0)
    assert got.registered_at >= before - timedelta(seconds=1)
    # the safety net: polled only every --poll-max (60 s) from the push's write, which
    # comes a moment after the registration (more than a second on a loaded machine)
    assert got.next_poll_at is not None
    assert timedelta(seconds=59) <= got.next_poll_at - got.registered_at <= timedelta(seconds=65)
    # without a daemon here the deliveries wait, pending, for one
    assert sorted(rows(db_url, "select event, state from deliveries")) == [
        ("logs", "pending"),
        ("logs", "pending"),
        ("start", "pending"),
        ("start", "pending"),
    ]
    assert receiver.received() == []


@pytest.mark.parametrize(
    "odd_id",
    ["../etc/passwd", "a b", "", "x" * 129, "caf\u00e9", "-starts-with-dash", "a/b", "nul\u0000"],
)
async def test_a_push_for_an_odd_id_is_400_and_writes_nothing(
    service: Running, db_url: str, odd_id: str
) -> None:
    async with service.client(token=None) as http:
        answer = await push(http, prediction(odd_id, "processing"))
    assert answer.status_code == 400
    assert "invalid prediction ID" in answer.json()["error"]
    assert written(db_url) == NOTHING


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"<html>not json</html>", "not JSON"),
        (b"\xff\xfe not utf-8", "not JSON"),
        (b"[1, 2, 3]", "not a prediction object"),
        (b'{"created": 1, "data": [{"url": "https://x/y.png"}]}', "no 'id'"),
        (b'{"id": 42, "status": "succeeded"}', "no 'id'"),
        (b'{"id": "push-no-status"}', "no usable 'status'"),
        (b'{"id": "push-odd-status", "status": ""}', "no usable 'status'"),
        (b'{"id": "push-odd-status", "status": "ok\\u0000"}', "no usable 'status'"),
        (b'{"id": "push-odd-status", "status": ["succeeded"]}', "no usable 'status'"),
        (b"[" * 5000 + b"]" * 5000, "deeper than 100 levels"),
        (b'{"id": "push-deep", "status": "succeeded", "output": ' + b"[" * 150 + b"]" * 150 + b"}",
         "deeper than 100 levels"),
    ],
)  # fmt: skip
async def test_a_body_that_is_not_a_prediction_is_400_and_writes_nothing(
    service: Running, db_url: str, body: bytes, says: str
) -> None:
    async with service.client(token=None) as http:
        answer = await push(http, body)
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]
    assert written(db_url) == NOTHING


async def test_huge_and_deep_bodies_are_refused_without_memory_growth(
    service: Running, db_url: str
) -> None:
    """Over 1 MiB is 413 (a declared length before reading; a chunked body when the
    limit is reached, while the client still has most of 16 MiB to send); 1 MiB of
    nesting is 400. Twenty rounds of each leave the process's peak memory as it was."""
    huge = b'{"id": "push-huge", "status": "processing", "logs": "' + b"x" * (2**20) + b'"}'
    deep = b"[" * (2**20 - 10)
    total = 16 * 2**20

    async def streamed(http: httpx.AsyncClient) -> tuple[int | None, int]:
        sent = 0

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length
            nonlocal sent
            while sent < total:
                sent += 65536
                yield b" " * 65536

        try:
            answer = await http.post(PATH, content=chunks(), headers=signed(huge))
        except httpx.TransportError:
            return None, sent  # the server closed the connection while we still sent
        return answer.status_code, sent

    async with service.client(token=None) as http:
        for _ in range(3):  # warm up: what is allocated once is not growth
            await push(http, huge)
            await push(http, deep)
            await streamed(http)
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(20):
            declared = await push(http, huge)
            assert declared.status_code == 413
            assert declared.json()["error"].startswith("request body larger than")
            code, sent = await streamed(http)
            assert code in (413, None) and sent < total // 2
            nested = await push(http, deep)
            assert nested.status_code == 400
            assert "deeper than 100 levels" in nested.json()["error"]
        growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert growth_kib < 16 * 1024, f"peak memory grew by {growth_kib} KiB"
    assert written(db_url) == NOTHING


async def test_a_pushed_forgotten_prediction_is_ignored(service: Running, db_url: str) -> None:
    pid = "push-forgotten"
    async with service.client(token=None) as http:
        await push(http, prediction(pid, "processing", "a\n"))
        store = Store.from_url(db_url)
        try:
            store.forget([pid])
        finally:
            store.close()
        answer = await push(http, prediction(pid, "succeeded", "a\nb\n"))
    assert answer.json()["outcome"] == "ignored"
    assert rows(db_url, "select status, tracking, logs from predictions") == [
        ("processing", "forgotten", "a\n")
    ]


async def test_without_the_secret_the_endpoint_is_404(db_url: str, receiver: Receiver) -> None:
    settings = push_settings(db_url, receiver, TRACKER_UPSTREAM_WEBHOOK_SECRET="")
    async with (
        running_service(settings, with_daemon=False) as service,
        service.client(token=None) as http,
    ):
        answer = await push(http, prediction("push-no-secret", "succeeded"))
    assert answer.status_code == 404
    assert "TRACKER_UPSTREAM_WEBHOOK_SECRET" in answer.json()["error"]
    assert written(db_url) == NOTHING


async def test_a_push_the_database_cannot_take_is_503_without_the_drivers_words(
    sqlite_url: str, receiver: Receiver
) -> None:
    """The upstream retries a 503; what the driver said (paths, hosts, users) goes to
    the log only, never to whoever can reach this unauthenticated route."""
    path = sqlite_url.removeprefix("sqlite:///")
    async with (
        running_service(push_settings(sqlite_url, receiver), with_daemon=False) as service,
        service.client(token=None) as http,
    ):
        os.remove(path)  # the file guard refuses every database call from now on
        answer = await push(http, prediction("push-gone-1", "processing", "x\n"))
    assert answer.status_code == 503
    assert answer.json()["error"].startswith(("database unavailable", "the push could not"))
    assert path not in answer.text
