"""WebhookSender: what a receiver gets (headers, body, signature) and how answers map to results."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tracker.callbacks.webhook import WebhookSender, load_signer
from tracker.domain import DeliveryJob, SendResult
from tracker.exceptions import ConfigError

SECRET = "whsec_" + base64.b64encode(b"a very secret signing key 0123456").decode()
URL = "https://hooks.example.test/services/T0/B0/xyz?token=1"
PAYLOAD = json.dumps(
    {"id": "abc123", "status": "succeeded", "output": "Grüße, 世界 ✓"}, ensure_ascii=False
)

Handler = Callable[[httpx.Request], httpx.Response]


def make_job(**changes: object) -> DeliveryJob:
    values: dict[str, object] = {
        "id": 1,
        "message_id": "msg_2b7f0c1e",
        "prediction_id": "abc123",
        "kind": "webhook",
        "target": URL,
        "event": "completed",
        "payload": PAYLOAD,
        "attempts": 0,
        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    values.update(changes)
    return DeliveryJob(**values)  # type: ignore[arg-type]


class Recorder:
    """A MockTransport handler that records requests and answers with a fixed response."""

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = headers or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, headers=self.headers)


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[Handler], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make(handler: Handler) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def send_with(
    client_for: Callable[[Handler], httpx.AsyncClient],
    handler: Handler,
    job: DeliveryJob | None = None,
    secret: str | None = None,
) -> SendResult:
    sender = WebhookSender(client_for(handler), timeout=15.0, secret=secret)
    return await sender.send(job or make_job())


# -- the request -------------------------------------------------------------------


async def test_request_is_a_post_of_the_payload_bytes(client_for) -> None:
    rec = Recorder()
    result = await send_with(client_for, rec)
    assert result.ok
    [request] = rec.requests
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.content == PAYLOAD.encode("utf-8")
    assert request.content.decode("utf-8") == PAYLOAD  # non-ASCII survives as UTF-8
    assert "Grüße, 世界 ✓".encode() in request.content
    assert request.headers["content-type"] == "application/json"
    assert request.headers["content-length"] == str(len(PAYLOAD.encode("utf-8")))


async def test_request_headers_identify_the_delivery(client_for) -> None:
    rec = Recorder()
    job = make_job(event="output", message_id="msg_unique_42")
    before = int(time.time())
    await send_with(client_for, rec, job)
    after = int(time.time())
    [request] = rec.requests
    assert request.headers["user-agent"].startswith("tracker/")
    assert request.headers["webhook-id"] == "msg_unique_42"
    assert request.headers["tracker-event"] == "output"
    timestamp = request.headers["webhook-timestamp"]
    assert timestamp.isdigit()
    assert before <= int(timestamp) <= after


async def test_without_a_secret_there_is_no_signature(client_for) -> None:
    rec = Recorder()
    await send_with(client_for, rec, secret=None)
    assert "webhook-signature" not in rec.requests[0].headers


async def test_empty_secret_means_unsigned(client_for) -> None:
    rec = Recorder()
    await send_with(client_for, rec, secret="")
    assert "webhook-signature" not in rec.requests[0].headers


async def test_signed_request_verifies_for_the_receiver(client_for) -> None:
    rec = Recorder()
    await send_with(client_for, rec, secret=SECRET)
    [request] = rec.requests
    assert request.headers["webhook-signature"].startswith("v1,")
    verified = Webhook(SECRET).verify(request.content, dict(request.headers))
    assert verified == json.loads(PAYLOAD)


async def test_tampered_body_fails_verification(client_for) -> None:
    rec = Recorder()
    await send_with(client_for, rec, secret=SECRET)
    [request] = rec.requests
    tampered = request.content.replace(b"succeeded", b"failed")
    assert tampered != request.content
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, dict(request.headers))


async def test_other_secret_fails_verification(client_for) -> None:
    rec = Recorder()
    await send_with(client_for, rec, secret=SECRET)
    [request] = rec.requests
    other = "whsec_" + base64.b64encode(b"some other key entirely").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(request.content, dict(request.headers))


async def test_changed_webhook_id_fails_verification(client_for) -> None:
    rec = Recorder()
    await send_with(client_for, rec, secret=SECRET)
    headers = dict(rec.requests[0].headers)
    headers["webhook-id"] = "msg_forged"
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(rec.requests[0].content, headers)


async def test_same_job_twice_keeps_the_webhook_id(client_for) -> None:
    rec = Recorder()
    sender = WebhookSender(client_for(rec), timeout=15.0, secret=SECRET)
    job = make_job()
    await sender.send(job)
    await sender.send(job)
    first, second = rec.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == job.message_id
    assert first.content == second.content
    for request in rec.requests:
        Webhook(SECRET).verify(request.content, dict(request.headers))


async def test_different_jobs_have_different_webhook_ids(client_for) -> None:
    rec = Recorder()
    sender = WebhookSender(client_for(rec), timeout=15.0)
    await sender.send(make_job(id=1, message_id="msg_a"))
    await sender.send(make_job(id=2, message_id="msg_b"))
    assert [r.headers["webhook-id"] for r in rec.requests] == ["msg_a", "msg_b"]


# -- answers and failures ----------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_2xx_is_ok(client_for, status: int) -> None:
    result = await send_with(client_for, Recorder(status))
    assert result.ok
    assert result.status_code == status
    assert result.error is None
    assert not result.permanent
    assert result.retry_after is None


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirect_is_a_failure_and_is_not_followed(client_for, status: int) -> None:
    rec = Recorder(status, headers={"Location": "https://elsewhere.example.test/hook"})
    result = await send_with(client_for, rec)
    assert len(rec.requests) == 1
    assert not result.ok
    assert result.status_code == status
    assert result.error is not None
    assert "redirect" in result.error
    assert not result.permanent


async def test_410_is_permanent(client_for) -> None:
    result = await send_with(client_for, Recorder(410))
    assert not result.ok
    assert result.permanent
    assert result.status_code == 410
    assert result.error == "HTTP 410"


@pytest.mark.parametrize("status", [400, 404, 500, 502])
async def test_other_errors_are_retryable(client_for, status: int) -> None:
    result = await send_with(client_for, Recorder(status))
    assert not result.ok
    assert not result.permanent
    assert result.status_code == status
    assert result.error == f"HTTP {status}"
    assert result.retry_after is None


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_read_on_429_and_503(client_for, status: int) -> None:
    result = await send_with(client_for, Recorder(status, headers={"Retry-After": "7"}))
    assert not result.ok
    assert not result.permanent
    assert result.status_code == status
    assert result.retry_after == 7


@pytest.mark.parametrize("status", [429, 503])
async def test_missing_retry_after_is_none(client_for, status: int) -> None:
    result = await send_with(client_for, Recorder(status))
    assert not result.ok
    assert result.retry_after is None


async def test_retry_after_is_ignored_on_other_statuses(client_for) -> None:
    result = await send_with(client_for, Recorder(500, headers={"Retry-After": "7"}))
    assert result.retry_after is None


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("connection refused"), httpx.ReadTimeout("read timed out")],
    ids=["connect", "read-timeout"],
)
async def test_transport_errors_become_failed_results(client_for, exc: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    result = await send_with(client_for, handler, secret=SECRET)
    assert not result.ok
    assert not result.permanent
    assert result.status_code is None
    assert isinstance(result.error, str)
    assert result.error
    assert "whsec_" not in result.error
    assert isinstance(result.duration_ms, int)
    assert result.duration_ms >= 0


async def test_connect_error_names_the_error(client_for) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    result = await send_with(client_for, handler)
    assert result.error is not None
    assert "ConnectError" in result.error
    assert "connection refused" in result.error


async def test_timeout_says_so(client_for) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out")

    result = await send_with(client_for, handler)
    assert result.error == "timeout after 15 s"


async def test_long_error_messages_are_cut(client_for) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("x" * 5000)

    result = await send_with(client_for, handler)
    assert result.error is not None
    assert len(result.error) <= 300


@pytest.mark.parametrize("status", [200, 302, 410, 500])
async def test_duration_is_a_non_negative_int(client_for, status: int) -> None:
    result = await send_with(client_for, Recorder(status))
    assert isinstance(result.duration_ms, int)
    assert result.duration_ms >= 0


# -- load_signer ---------------------------------------------------------------------


def test_load_signer_without_secret_is_none() -> None:
    assert load_signer(None) is None
    assert load_signer("") is None


def test_load_signer_accepts_a_whsec_secret() -> None:
    assert isinstance(load_signer(SECRET), Webhook)


@pytest.mark.parametrize("bad", ["whsec_QQQQQ", "whsec_!!!!", "ZZZZZ"])
def test_load_signer_rejects_undecodable_secrets_without_echoing_them(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_signer(bad)
    message = str(info.value)
    assert "TRACKER_WEBHOOK_SECRET" in message
    assert bad not in message
    assert bad.removeprefix("whsec_") not in message
    # the chained cause ends up in tracebacks too
    assert bad.removeprefix("whsec_") not in str(info.value.__cause__)


@pytest.mark.parametrize("bad", ["not-a-secret", "hunter2", "whsec_not valid base64"])
def test_load_signer_rejects_a_value_that_is_not_a_secret(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_signer(bad)
    assert bad not in str(info.value)


async def test_sender_with_a_bad_secret_fails_at_construction(client_for) -> None:
    with pytest.raises(ConfigError):
        WebhookSender(client_for(Recorder()), timeout=15.0, secret="whsec_")
