"""`tracker serve`'s JSON API against the real server on loopback, with httpx, on SQLite
and PostgreSQL: what it registers, lists and shows is what `tracker add`, `list` and
`show` do and print; what they refuse it answers 400 with their words; errors are
JSON; a refused request writes nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import httpx
import pytest

from tests.clirun import run_tracker
from tests.integration.test_show_artifacts import three_files
from tests.serving import TOKEN, Running, rows, running_service, settings_for
from tracker.api import Tracker
from tracker.asyncapi import AsyncTracker
from tracker.store.store import Store


def count(url: str, table: str = "predictions") -> int:
    return int(rows(url, f"select count(*) from {table}")[0][0])


def cli(url: str, *args: str) -> tuple[int, str, str]:
    env = {"TRACKER_DATABASE_URL": url, "TRACKER_WEBHOOK_ALLOWED_HOSTS": "loopback"}
    result = run_tracker(args, env)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture
async def service(db_url: str) -> Any:
    async with running_service(settings_for(db_url)) as running:
        yield running


async def test_register_one_then_again_is_201_then_200(service: Running, db_url: str) -> None:
    async with service.client() as http:
        first = await http.post("/api/predictions", json={"id": "abc-1", "labels": {"team": "x"}})
        again = await http.post("/api/predictions", json={"id": "abc-1"})
    assert first.status_code == 201
    assert first.json() == {"added": 1, "already_known": 0, "callbacks_added": 0}
    assert again.status_code == 200
    assert again.json() == {"added": 0, "already_known": 1, "callbacks_added": 0}
    assert rows(db_url, "select id, tracking from predictions") == [("abc-1", "active")]


async def test_a_list_registers_each_entry_with_its_own_callbacks(
    service: Running, db_url: str
) -> None:
    body = [
        {"id": "a-1", "webhooks": ["http://127.0.0.1:9/hook?token=s3cret"], "events": "start"},
        {"id": "a-2", "emails": ["ops@example.test"], "events": ["completed", "logs"]},
        {"id": "a-3", "labels": {"run": "7"}},
    ]
    async with service.client() as http:
        answer = await http.post("/api/predictions", json=body)
    assert answer.status_code == 201
    assert answer.json() == {"added": 3, "already_known": 0, "callbacks_added": 2}
    found = rows(db_url, "select prediction_id, kind, target, events from callbacks order by id")
    assert found == [
        ("a-1", "webhook", "http://127.0.0.1:9/hook?token=s3cret", "start"),
        ("a-2", "email", "ops@example.test", "logs,completed"),
    ]
    with Tracker(db_url) as tracker:
        assert tracker.get("a-3").labels == {"run": "7"}


async def test_a_thousand_ids_in_one_request_are_registered_together(
    service: Running, db_url: str
) -> None:
    """How long it takes is scripts/bench_serve.py register's to say (docs/performance.md,
    "Registrations through the API"), not a test's."""
    body = [{"id": f"batch-{i:04d}", "labels": {"batch": "1"}} for i in range(1000)]
    async with service.client() as http:
        answer = await http.post("/api/predictions", json=body)
    assert answer.status_code == 201
    assert answer.json()["added"] == 1000
    assert count(db_url) == 1000
    with Tracker(db_url) as tracker:
        assert tracker.count(labels={"batch": "1"}) == 1000


@pytest.mark.parametrize(
    ("args", "body"),
    [
        (["add", "bad id"], {"id": "bad id"}),
        (["add", "--", "-x"], {"id": "-x"}),
        (
            ["add", "ok-1", "--webhook", "ftp://example.test/x"],
            {"id": "ok-1", "webhooks": ["ftp://example.test/x"]},
        ),
        (
            ["add", "ok-1", "--webhook", "http://10.1.2.3/h"],
            {"id": "ok-1", "webhooks": ["http://10.1.2.3/h"]},
        ),
        (
            ["add", "ok-1", "--email", "not-an-address"],
            {"id": "ok-1", "emails": ["not-an-address"]},
        ),
        (
            ["add", "ok-1", "--events", "start,sometimes"],
            {"id": "ok-1", "events": "start,sometimes"},
        ),
        (["add", "ok-1", "--label", "bad key=v"], {"id": "ok-1", "labels": {"bad key": "v"}}),
    ],
    ids=["space", "dash", "scheme", "private-address", "email", "events", "label"],
)
async def test_what_add_refuses_is_400_with_its_message(
    service: Running, db_url: str, args: list[str], body: dict[str, Any]
) -> None:
    code, _, stderr = cli(db_url, *args)
    assert code != 0 and stderr.startswith("Error: ")
    async with service.client() as http:
        answer = await http.post("/api/predictions", json=body)
    assert answer.status_code == 400
    assert answer.json() == {"error": stderr.removeprefix("Error: ").strip()}
    assert count(db_url) == 0


async def test_one_bad_entry_refuses_the_whole_list(service: Running, db_url: str) -> None:
    body = [{"id": "good-1"}, {"id": "good-2"}, {"id": "bad/3"}]
    async with service.client() as http:
        answer = await http.post("/api/predictions", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("[2]: invalid prediction ID 'bad/3'")
    assert count(db_url) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "malformed JSON"),
        (b'{"id": "x"} trailing', "malformed JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "malformed JSON: nested too deeply"),
        (b'{"id": "\xff"}', "malformed JSON: not UTF-8"),
        (b"[]", "give at least one prediction"),
        (b'"just-text"', "expected an object"),
        (b"[1]", "[0]: expected an object"),
        (b'{"ids": ["x"]}', "unknown field 'ids'"),
        (b'{"webhooks": []}', "missing field 'id'"),
        (b'{"id": 7}', "'id' must be text, got a number"),
        (b'{"id": "x", "webhooks": "http://127.0.0.1/h"}', "'webhooks' must be a list"),
        (b'{"id": "x", "emails": [{"a": 1}]}', "'emails' must be a list of text"),
        (b'{"id": "x", "labels": ["a=b"]}', "'labels' must be an object"),
        (b'{"id": "x", "labels": {"k": {"deep": [1]}}}', "invalid label"),
        (b'{"id": "x", "labels": {"k": "' + b"v" * 1025 + b'"}}', "longer than 1024 bytes"),
        (b'{"id": "x", "labels": {"k": "a\\u0000b"}}', "without NUL"),
        (b'{"id": "x", "labels": {"k": "\\ud800"}}', "without NUL"),
        (b'{"id": "x", "deadline": true}', "'deadline' must be"),
        (b'{"id": "x", "deadline": "soon"}', "invalid deadline: 'soon' is not a duration"),
        (b'{"id": "x", "deadline": -5}', "invalid deadline -5"),
    ],
)
async def test_bad_bodies_are_400_json_and_write_nothing(
    service: Running, db_url: str, body: bytes, message: str
) -> None:
    async with service.client() as http:
        answer = await http.post(
            "/api/predictions", content=body, headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 400
    assert answer.headers["Content-Type"].startswith("application/json")
    assert message in answer.json()["error"]
    assert count(db_url) == 0


async def test_show_is_what_show_format_json_prints(service: Running, db_url: str) -> None:
    hook = "http://user:pw@127.0.0.1:9/hook?key=s3cret"
    async with service.client() as http:
        await http.post(
            "/api/predictions", json={"id": "shown-1", "webhooks": [hook], "labels": {"a": "b"}}
        )
        answer = await http.get("/api/predictions/shown-1")
        missing = await http.get("/api/predictions/nobody-1")
        bad = await http.get("/api/predictions/bad%20id")
    code, stdout, _ = cli(db_url, "show", "shown-1", "--format", "json")
    assert code == 0
    assert answer.status_code == 200
    assert answer.json() == json.loads(stdout)
    assert answer.json()["callbacks"][0]["target"] == "http://user:***@127.0.0.1:9/hook?key=***"
    assert "s3cret" not in answer.text
    assert missing.status_code == 404
    assert missing.json() == {"error": "no prediction 'nobody-1' is registered"}
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("invalid prediction ID 'bad id'")


async def test_show_has_the_archived_files_as_show_format_json(
    service: Running, db_url: str
) -> None:
    with Store.from_url(db_url) as store:
        three_files(store)
    async with service.client() as http:
        answer = await http.get("/api/predictions/p1")
    code, stdout, _ = cli(db_url, "show", "p1", "--format", "json")
    assert code == 0 and answer.status_code == 200
    assert answer.json() == json.loads(stdout)
    files = answer.json()["artifacts"]
    assert [(f["position"], f["state"]) for f in files] == [
        (0, "stored"),
        (1, "failed"),
        (2, "pending"),
    ]
    assert files[0]["stored_url"] == "file:///srv/archive/p1/0-one.png"


async def test_list_is_what_list_format_json_prints(service: Running, db_url: str) -> None:
    async with service.client() as http:
        for i in range(60):
            labels = {"even": "yes"} if i % 2 == 0 else {}
            await http.post("/api/predictions", json={"id": f"row-{i:02d}", "labels": labels})
        default = await http.get("/api/predictions")
        everything = await http.get("/api/predictions", params={"limit": "0"})
        even = await http.get("/api/predictions", params={"label": "even=yes", "limit": "5"})
        active = await http.get("/api/predictions", params={"active": "true", "limit": "0"})
        succeeded = await http.get("/api/predictions", params={"status": "succeeded,failed"})
        since = await http.get("/api/predictions", params={"since": "1h", "limit": "3"})
        until = await http.get("/api/predictions", params={"until": "2000-01-01"})
    for answer in (default, everything, even, active, succeeded, since, until):
        assert answer.status_code == 200, answer.text
        assert answer.headers["Content-Type"].startswith("application/json")
    _, stdout, _ = cli(db_url, "list", "--format", "json")
    assert default.json() == {"predictions": json.loads(stdout)}
    assert len(default.json()["predictions"]) == 50
    _, stdout, _ = cli(db_url, "list", "--format", "json", "--limit", "0")
    assert everything.json() == {"predictions": json.loads(stdout)}
    listed = [p["id"] for p in everything.json()["predictions"]]
    assert len(listed) == 60 and listed[0] == "row-59" and listed[-1] == "row-00"
    _, stdout, _ = cli(db_url, "list", "--format", "json", "--label", "even=yes", "--limit", "5")
    assert even.json() == {"predictions": json.loads(stdout)}
    assert [p["id"] for p in even.json()["predictions"]] == [
        f"row-{i}" for i in (58, 56, 54, 52, 50)
    ]
    assert len(active.json()["predictions"]) == 60
    assert succeeded.json() == {"predictions": []}
    assert len(since.json()["predictions"]) == 3
    assert until.json() == {"predictions": []}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=-1", "limit must be a whole number"),
        ("limit=ten", "limit must be a whole number"),
        ("active=maybe", "active must be true or false"),
        ("status=sleeping", "unknown status 'sleeping'"),
        ("since=the%20other%20day", "--since"),
        ("since=today&until=2000-01-01", "--until"),
        ("label=no-equals", "invalid label"),
        ("colour=red", "unknown query parameter 'colour'"),
        ("limit=1&limit=2", "given more than once"),
    ],
)
async def test_bad_list_queries_are_400_json(service: Running, query: str, message: str) -> None:
    async with service.client() as http:
        answer = await http.get(f"/api/predictions?{query}")
    assert answer.status_code == 400
    assert message in answer.json()["error"]


async def test_unknown_routes_and_methods_are_json(service: Running) -> None:
    async with service.client() as http:
        missing = await http.get("/nowhere")
        method = await http.delete("/api/predictions")
    assert missing.status_code == 404 and missing.json() == {"error": "not found"}
    assert method.status_code == 405 and method.json() == {"error": "method not allowed"}
    assert "POST" in method.headers["Allow"]


# -- the token ---------------------------------------------------------------------------

API_ROUTES = [
    ("POST", "/api/predictions"),
    ("GET", "/api/predictions"),
    ("GET", "/api/predictions/abc-1"),
    ("POST", "/api/predictions/abc-1/cancel"),
    ("GET", "/api/nowhere"),
]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"bearer {TOKEN}",
        TOKEN,
        f"Basic {TOKEN}",
    ],
    ids=[
        "none",
        "empty",
        "scheme-only",
        "longer",
        "shorter",
        "lowercase",
        "bare",
        "basic",
    ],
)
async def test_every_api_route_needs_the_token(
    service: Running, db_url: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with service.client(token=None) as http:
        for method, path in API_ROUTES:
            answer = await http.request(method, path, headers=headers, json={"id": "sneaky-1"})
            assert answer.status_code == 401, (method, path)
            assert answer.json()["error"].startswith("missing or wrong bearer token")
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
            assert TOKEN not in answer.text
    assert count(db_url) == 0


async def test_health_and_metrics_need_no_token(service: Running) -> None:
    async with service.client(token=None) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200


async def test_without_a_token_set_the_api_is_open(sqlite_url: str) -> None:
    async with (
        running_service(settings_for(sqlite_url, TRACKER_SERVE_TOKEN="")) as running,
        running.client(token=None) as http,
    ):
        answer = await http.post("/api/predictions", json={"id": "open-1"})
    assert answer.status_code == 201


# -- the body limit ----------------------------------------------------------------------


async def test_a_body_over_one_mib_is_413(service: Running, db_url: str) -> None:
    ids = [{"id": f"big-{i:07d}"} for i in range(60_000)]  # about 1.2 MiB of JSON
    body = json.dumps(ids).encode()
    assert len(body) > 2**20
    async with service.client() as http:
        declared = await http.post(
            "/api/predictions", content=body, headers={"Content-Type": "application/json"}
        )
        padded = b'[{"id": "fits-1"}' + b" " * (2**20 - 100) + b"]"
        just_under = await http.post("/api/predictions", content=padded)
    assert declared.status_code == 413
    assert declared.json() == {"error": "request body larger than 1048576 bytes"}
    assert just_under.status_code == 201
    assert rows(db_url, "select id from predictions") == [("fits-1",)]


async def test_a_chunked_body_is_not_read_past_the_limit(service: Running, db_url: str) -> None:
    """No Content-Length: the server stops reading at the limit and answers 413 while
    the client still has most of 64 MiB to send."""
    sent = 0
    total = 64 * 2**20

    async def endless() -> Any:
        nonlocal sent
        chunk = b" " * 65536
        while sent < total:
            sent += len(chunk)
            yield chunk

    async with service.client() as http:
        try:
            answer = await http.post("/api/predictions", content=endless())
        except httpx.TransportError:
            answer = None  # the server closed the connection while we still sent
    if answer is not None:
        assert answer.status_code == 413
        assert answer.json()["error"].startswith("request body larger than")
    assert sent < total // 2
    assert count(db_url) == 0


# -- errors and logs ---------------------------------------------------------------------


async def test_an_unexpected_error_is_500_json_and_logged(
    service: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_: object) -> None:
        raise RuntimeError("a bug deep inside")

    monkeypatch.setattr(AsyncTracker, "add_batch", broken)
    async with service.client() as http:
        answer = await http.post("/api/predictions", json={"id": "boom-1"})
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error"}
    assert "Traceback" not in answer.text and "a bug deep inside" not in answer.text
    assert "internal error answering POST /api/predictions" in caplog.text
    assert "a bug deep inside" in caplog.text  # the operator sees it, the client does not


async def test_the_token_never_reaches_the_log(
    service: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(AsyncTracker, "detail", broken)
    caplog.set_level(logging.DEBUG)
    async with service.client() as http, service.client(token=TOKEN[::-1]) as wrong:
        await http.post("/api/predictions", json={"id": "logged-1"})
        failed = await http.get(f"/api/predictions/{TOKEN}")  # a token where an ID goes
        await wrong.get("/api/predictions")
        await http.get("/nowhere", params={"token": TOKEN})
    assert failed.status_code == 500
    # What the server side logged (the test's own client, httpx, logs its URLs).
    served = [r for r in caplog.records if r.name.startswith(("tracker", "aiohttp"))]
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in served)
    assert "internal error answering GET /api/predictions/{id}" in text
    assert TOKEN not in text and TOKEN[::-1] not in text


def test_the_token_and_the_upstream_secret_are_secrets() -> None:
    settings = settings_for("sqlite://", TRACKER_UPSTREAM_WEBHOOK_SECRET="whsec_dXBzdHJlYW0=")
    assert TOKEN in settings.secrets()
    assert "whsec_dXBzdHJlYW0=" in settings.secrets()
    assert TOKEN not in repr(settings) and "whsec_" not in repr(settings)


async def test_a_body_that_stops_coming_is_408(
    service: Running, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that declares 100 bytes and sends 2 holds neither the connection nor
    the handler past the body time limit (shortened here from 30 s)."""
    monkeypatch.setattr("tracker.service.errors.BODY_SECONDS", 0.5)
    host, port = service.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /api/predictions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b"\r\nContent-Length: 100\r\n\r\n[{"
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.read(4096), 10)
    writer.close()
    assert head.startswith(b"HTTP/1.1 408"), head[:200]
    assert b'{"error": "request body not received within 0.5 s"}' in head
    assert count(db_url) == 0


async def test_a_header_too_long_for_the_parser_is_one_log_line_not_a_traceback(
    service: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp answers it before any middleware (text/plain 400); what anyone who can
    reach the port sends must not fill the log with tracebacks."""
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    async with service.client(token=None) as http:
        answer = await http.get("/api/predictions", headers={"X-Big": "x" * 9000})
    assert answer.status_code == 400
    from_parser = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert from_parser, "aiohttp logged nothing: the test no longer sees the parser's error"
    assert all(r.exc_info is None and r.levelno == logging.INFO for r in from_parser)
    assert all(len(r.getMessage()) < 400 for r in from_parser)


async def test_once_the_sqlite_file_is_deleted_every_request_is_503(sqlite_url: str) -> None:
    """Not 201 for a registration written into a file nobody can open again, nor
    200 from /healthz reading the old file."""
    async with running_service(settings_for(sqlite_url)) as service, service.client() as http:
        assert (await http.post("/api/predictions", json={"id": "kept-1"})).status_code == 201
        os.remove(sqlite_url.removeprefix("sqlite:///"))
        answers = [
            await http.post("/api/predictions", json={"id": "lost-1"}),
            await http.get("/api/predictions"),
            await http.get("/healthz"),
        ]
    for answer in answers:
        assert answer.status_code == 503
        assert answer.json() == {
            "error": "database unavailable: the SQLite database file was deleted or replaced"
        }
