"""The upstream HTTP client: URLs, headers, and how every answer or failure is mapped."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import httpx
import pytest
from aiohttp.client_reqrep import ConnectionKey

from tracker.exceptions import (
    TrackerError,
    UpstreamAuthError,
    UpstreamBadAnswer,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamTransient,
)
from tracker.poll.upstream import (
    BODY_SNIPPET,
    DEFAULT_RATE_LIMIT_PAUSE,
    MAX_UPSTREAM_RETRY_AFTER,
    Answer,
    UpstreamClient,
    _CookielessClient,
)

BASE = "https://api.example.test/v1"
KEY = "r8_SeCrEtKeY0123456789abcdef"
PREDICTION = {"id": "abc123", "status": "processing", "logs": "step 1\n"}

Handler = Callable[[httpx.Request], httpx.Response]


def respond(
    status: int,
    *,
    body: object = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Handler:
    """A handler answering every request the same way."""

    def handler(request: httpx.Request) -> httpx.Response:
        if content is not None:
            return httpx.Response(status, content=content, headers=headers)
        if body is not None:
            return httpx.Response(status, json=body, headers=headers)
        return httpx.Response(status, headers=headers)

    return handler


def recording(requests: list[httpx.Request], handler: Handler | None = None) -> Handler:
    inner = handler or respond(200, body=PREDICTION)

    def handler_(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return inner(request)

    return handler_


@asynccontextmanager
async def upstream(
    handler: Handler, *, api_key: str | None = KEY, base: str = BASE
) -> AsyncIterator[UpstreamClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        yield UpstreamClient(http, base, api_key)


async def fetch(handler: Handler, prediction_id: str = "abc123", **kwargs: object) -> Answer:
    async with upstream(handler, **kwargs) as client:  # type: ignore[arg-type]
        return await client.get_prediction(prediction_id)


# --- URL ------------------------------------------------------------------------------------


async def test_url_is_base_predictions_id() -> None:
    seen: list[httpx.Request] = []
    await fetch(recording(seen), "w44zs9cet5rmc0cqzp49gpkhf8")
    assert len(seen) == 1
    assert seen[0].method == "GET"
    assert str(seen[0].url) == f"{BASE}/predictions/w44zs9cet5rmc0cqzp49gpkhf8"


async def test_trailing_slash_on_base_gives_no_double_slash() -> None:
    seen: list[httpx.Request] = []
    await fetch(recording(seen), "abc123", base=BASE + "/")
    assert seen[0].url.raw_path == b"/v1/predictions/abc123"


@pytest.mark.parametrize(
    "prediction_id", ["../x", "../../admin", "a/b", "a b", "x?y=1", "x#frag", "%2e%2e", ""]
)
async def test_ids_outside_the_pattern_are_never_requested(prediction_id: str) -> None:
    seen: list[httpx.Request] = []
    async with upstream(recording(seen)) as client:
        with pytest.raises(UpstreamError, match="invalid ID"):
            await client.get_prediction(prediction_id)
    assert seen == []


async def test_valid_id_is_one_path_segment() -> None:
    async with upstream(respond(200, body=PREDICTION)) as client:
        assert client.prediction_url("a_b-9") == f"{BASE}/predictions/a_b-9"


@pytest.mark.parametrize("prediction_id", ["..", "."])
async def test_dot_segment_id_does_not_leave_the_prediction_path(prediction_id: str) -> None:
    seen: list[httpx.Request] = []
    async with upstream(recording(seen)) as client:
        # refusing the ID outright is as good as quoting it
        with contextlib.suppress(TrackerError):
            await client.get_prediction(prediction_id)
    for request in seen:
        assert request.url.raw_path.startswith(b"/v1/predictions/")
        assert request.url.raw_path != b"/v1/predictions/"


# --- headers --------------------------------------------------------------------------------


async def test_bearer_header_sent_when_key_set() -> None:
    seen: list[httpx.Request] = []
    await fetch(recording(seen), api_key=KEY)
    assert seen[0].headers["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("api_key", [None, ""])
async def test_no_authorization_header_without_key(api_key: str | None) -> None:
    seen: list[httpx.Request] = []
    await fetch(recording(seen), api_key=api_key)
    assert "Authorization" not in seen[0].headers


async def test_non_ascii_key_fails_as_a_tracker_error() -> None:
    with pytest.raises(TrackerError):
        async with upstream(respond(200, body=PREDICTION), api_key="r8_kéy") as client:
            await client.get_prediction("abc123")


# --- 2xx ------------------------------------------------------------------------------------


async def test_json_200_is_returned_as_answer() -> None:
    answer = await fetch(respond(200, body=PREDICTION))
    assert answer == Answer(body=PREDICTION, status_code=200)


async def test_other_2xx_with_json_is_an_answer_too() -> None:
    answer = await fetch(respond(202, body=[1, 2, 3]))
    assert answer.body == [1, 2, 3]
    assert answer.status_code == 202


async def test_non_json_200_is_bad_answer_with_short_snippet() -> None:
    page = "<html><body>" + "Maintenance window " * 50 + "</body></html>"
    handler = respond(200, content=page.encode(), headers={"Content-Type": "text/html"})
    with pytest.raises(UpstreamBadAnswer) as info:
        await fetch(handler)
    detail = info.value.detail
    assert detail.startswith("answer is not JSON (text/html): <html><body>Maintenance window")
    assert detail.endswith("…")
    snippet = detail.split(": ", 1)[1]
    assert len(snippet) == BODY_SNIPPET + 1
    assert info.value.status_code == 200
    assert isinstance(info.value.__cause__, ValueError)


async def test_empty_200_body_is_bad_answer() -> None:
    with pytest.raises(UpstreamBadAnswer) as info:
        await fetch(respond(200, content=b""))
    assert "(empty)" in info.value.detail


async def test_undecodable_200_body_is_bad_answer() -> None:
    with pytest.raises(UpstreamBadAnswer):
        await fetch(respond(200, content=b"\x80\x81\xfe{not json"))


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, UpstreamAuthError),
        (403, UpstreamAuthError),
        (404, UpstreamNotFound),
        (408, UpstreamTransient),
        (500, UpstreamTransient),
        (502, UpstreamTransient),
        (503, UpstreamTransient),
        (504, UpstreamTransient),
        (418, UpstreamError),
        (400, UpstreamError),
    ],
)
async def test_status_maps_to_error_class(status: int, expected: type[UpstreamError]) -> None:
    handler = respond(status, body={"detail": "nope"})
    with pytest.raises(UpstreamError) as info:
        await fetch(handler)
    assert type(info.value) is expected
    assert info.value.status_code == status
    assert info.value.detail.startswith(f"HTTP {status}: ")
    assert "nope" in info.value.detail


async def test_error_detail_snippet_is_flattened_and_cut() -> None:
    handler = respond(500, content=("line\n\t " * 100).encode())
    with pytest.raises(UpstreamTransient) as info:
        await fetch(handler)
    snippet = info.value.detail.removeprefix("HTTP 500: ")
    assert "\n" not in snippet
    assert "\t" not in snippet
    assert snippet.startswith("line line line")
    assert len(snippet) == BODY_SNIPPET + 1
    assert snippet.endswith("…")


async def test_429_with_retry_after_seconds() -> None:
    with pytest.raises(UpstreamRateLimited) as info:
        await fetch(respond(429, headers={"Retry-After": "7"}))
    assert info.value.retry_after == 7.0
    assert info.value.status_code == 429


async def test_429_with_http_date_retry_after() -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=120)
    headers = {"Retry-After": format_datetime(when, usegmt=True)}
    with pytest.raises(UpstreamRateLimited) as info:
        await fetch(respond(429, headers=headers))
    # the header has whole seconds and some time passes before it is read
    assert 60.0 < info.value.retry_after <= 120.0


async def test_429_with_http_date_in_the_past_means_no_pause() -> None:
    headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    with pytest.raises(UpstreamRateLimited) as info:
        await fetch(respond(429, headers=headers))
    assert info.value.retry_after == 0.0


@pytest.mark.parametrize("headers", [None, {"Retry-After": "soon"}])
async def test_429_without_usable_retry_after_uses_default_pause(
    headers: dict[str, str] | None,
) -> None:
    with pytest.raises(UpstreamRateLimited) as info:
        await fetch(respond(429, headers=headers))
    assert info.value.retry_after == DEFAULT_RATE_LIMIT_PAUSE


async def test_429_retry_after_is_capped() -> None:
    with pytest.raises(UpstreamRateLimited) as info:
        await fetch(respond(429, headers={"Retry-After": "86400"}))
    assert info.value.retry_after == MAX_UPSTREAM_RETRY_AFTER


async def test_503_with_retry_after_is_rate_limited() -> None:
    with pytest.raises(UpstreamRateLimited) as info:
        await fetch(respond(503, headers={"Retry-After": "30"}))
    assert info.value.retry_after == 30.0
    assert info.value.status_code == 503


async def test_503_with_garbage_retry_after_is_transient() -> None:
    with pytest.raises(UpstreamTransient) as info:
        await fetch(respond(503, headers={"Retry-After": "later"}))
    assert not isinstance(info.value, UpstreamRateLimited)


async def test_retry_after_on_500_does_not_make_it_rate_limited() -> None:
    with pytest.raises(UpstreamTransient) as info:
        await fetch(respond(500, headers={"Retry-After": "30"}))
    assert not isinstance(info.value, UpstreamRateLimited)


def raising(make: Callable[[httpx.Request], Exception]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise make(request)

    return handler


def refused(request: httpx.Request) -> Exception:
    """What httpx-aiohttp raises for a refused connection: ConnectTimeout (its mapping
    picks the wrong type), from aiohttp's ClientConnectorError with the OS error."""
    key = ConnectionKey("api.example.test", 443, True, True, None, None, None, None)
    cause = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connect call failed"))
    exc = httpx.ConnectTimeout(str(cause), request=request)
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("make", "detail"),
    [
        (refused, "connection refused to api.example.test:443"),
        (
            lambda r: httpx.ConnectError("Connection refused", request=r),
            "request to api.example.test:443 failed: ConnectError: Connection refused",
        ),
        (
            lambda r: httpx.RemoteProtocolError("peer closed", request=r),
            "request to api.example.test:443 failed: RemoteProtocolError: peer closed",
        ),
        (lambda r: httpx.ReadTimeout("timed out", request=r), "timeout after 30 s"),
        (
            lambda r: httpx.ConnectTimeout("timed out", request=r),
            "timeout after 5 s connecting to api.example.test:443",
        ),
    ],
    ids=["refused", "connect-error", "protocol", "read-timeout", "connect-timeout"],
)
async def test_transport_failures_are_transient_and_say_what_happened(
    make: Callable[[httpx.Request], Exception], detail: str
) -> None:
    with pytest.raises(UpstreamTransient) as info:
        await fetch(raising(make))
    assert info.value.detail == detail
    assert info.value.status_code is None
    assert isinstance(info.value.__cause__, httpx.HTTPError)


async def test_other_httpx_error_is_plain_upstream_error() -> None:
    with pytest.raises(UpstreamError) as info:
        await fetch(raising(lambda r: httpx.DecodingError("bad gzip", request=r)))
    assert type(info.value) is UpstreamError
    assert info.value.detail == "request to api.example.test:443 failed: DecodingError: bad gzip"


# --- the key never leaks --------------------------------------------------------------------


@pytest.mark.parametrize(
    "handler",
    [
        respond(401, body={"detail": "Unauthenticated"}),
        respond(403, body={"detail": "You do not have permission"}),
        respond(404, body={"detail": "Not found"}),
        respond(429, body={"detail": "Throttled"}, headers={"Retry-After": "3"}),
        respond(500, content=b"Internal Server Error"),
        respond(418, content=b"I'm a teapot"),
        respond(200, content=b"<html>oops</html>"),
        raising(lambda r: httpx.ConnectError("Connection refused", request=r)),
        raising(lambda r: httpx.ReadTimeout("timed out", request=r)),
    ],
)
async def test_error_detail_never_contains_the_key(handler: Handler) -> None:
    with pytest.raises(UpstreamError) as info:
        await fetch(handler, api_key=KEY)
    assert KEY not in info.value.detail
    assert KEY not in str(info.value)


async def test_error_detail_masks_a_key_echoed_by_upstream() -> None:
    handler = respond(401, body={"detail": f"Invalid token {KEY}"})
    with pytest.raises(UpstreamAuthError) as info:
        await fetch(handler, api_key=KEY)
    assert KEY not in info.value.detail


async def test_the_poll_client_keeps_no_cookies() -> None:
    """Answers that set cookies change nothing about the next request."""
    requests: list[httpx.Request] = []
    cookie = {"Set-Cookie": "session=abc; Path=/"}
    handler = recording(requests, respond(200, body=PREDICTION, headers=cookie))
    async with _CookielessClient(transport=httpx.MockTransport(handler)) as http:
        client = UpstreamClient(http, BASE, KEY)
        await client.get_prediction("abc123")
        await client.get_prediction("abc123")
        assert len(http.cookies) == 0
    assert [r.headers.get("cookie") for r in requests] == [None, None]


async def test_a_poll_sends_the_clients_headers_with_the_key_over_a_real_socket() -> None:
    """Requests are built from the client's own headers plus the key (not through
    ``build_request``): what reaches a server on loopback is exactly those."""
    from aiohttp import web

    from tracker.poll.upstream import make_http_client
    from tracker.version import __version__

    seen: list[dict[str, str]] = []

    async def prediction(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response(PREDICTION, headers={"Set-Cookie": "session=abc; Path=/"})

    app = web.Application()
    app.router.add_get("/v1/predictions/{id}", prediction)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with make_http_client(max_connections=2) as http:
            client = UpstreamClient(http, f"http://127.0.0.1:{port}/v1", KEY)
            for _ in range(2):
                assert (await client.get_prediction("abc123")).body == PREDICTION
    finally:
        await runner.cleanup()
    for headers in seen:
        assert headers["Authorization"] == f"Bearer {KEY}"
        assert headers["User-Agent"] == f"tracker/{__version__}"
        assert headers["Accept"] == "application/json"
        assert headers["Host"] == f"127.0.0.1:{port}"
        assert "Cookie" not in headers
    assert len(seen) == 2
