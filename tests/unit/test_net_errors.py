"""What a failed request is called, for polls and webhooks alike (tracker.net.errors):
real clients against real sockets on loopback, and the classifier itself."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import httpx
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_reqrep import ConnectionKey
from httpx_aiohttp import AiohttpTransport

from tests.rawservers import Behaviour, RawServer, closed_port, self_signed_context
from tracker.callbacks.webhook import WebhookSender, make_webhook_client
from tracker.domain import DeliveryJob, SendResult
from tracker.exceptions import UpstreamError, UpstreamTransient
from tracker.net.connect import PolicyConnector
from tracker.net.errors import describe_failure, host_port
from tracker.net.policy import AddressRefused, parse_policy
from tracker.poll.upstream import UpstreamClient, make_http_client

TIMEOUT = 1.5


def job(target: str) -> DeliveryJob:
    return DeliveryJob(
        id=1,
        message_id="msg_1",
        prediction_id="p1",
        kind="webhook",
        target=target,
        event="completed",
        payload='{"id": "p1"}',
        attempts=0,
        created_at=datetime(2026, 1, 2, tzinfo=UTC),
    )


async def poll_error(base: str, http: httpx.AsyncClient | None = None) -> UpstreamError:
    """The error of one poll of ``base`` with the daemon's client (or ``http``)."""
    async with make_http_client(max_connections=2) as own:
        upstream = UpstreamClient(http or own, base, "key", timeout=TIMEOUT)
        with pytest.raises(UpstreamError) as info:
            await upstream.get_prediction("p1")
    return info.value


async def send(target: str, http: httpx.AsyncClient | None = None) -> SendResult:
    """One webhook attempt with the daemon's client (or ``http``)."""
    policy = parse_policy("loopback", "TRACKER_WEBHOOK_ALLOWED_HOSTS")
    async with make_webhook_client(timeout=TIMEOUT, max_connections=2, allowed=policy) as own:
        return await WebhookSender(http or own, timeout=TIMEOUT).send(job(target))


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[RawServer]:
    behaviour: Behaviour = request.param
    with RawServer(behaviour) as raw:
        yield raw


# -- refused: at once, and never called a timeout --------------------------------------


async def test_a_closed_port_is_connection_refused_for_a_poll() -> None:
    port = closed_port()
    started = time.monotonic()
    error = await poll_error(f"http://127.0.0.1:{port}/v1")
    assert isinstance(error, UpstreamTransient)
    assert error.detail == f"connection refused to 127.0.0.1:{port}"
    assert time.monotonic() - started < 1


async def test_a_closed_port_is_connection_refused_for_a_webhook() -> None:
    port = closed_port()
    result = await send(f"http://user:pw-secret@127.0.0.1:{port}/hook?token=t0k")
    assert not result.ok and result.status_code is None
    assert result.error == f"connection refused to 127.0.0.1:{port}"
    assert result.duration_ms is not None and result.duration_ms < 1000


# -- TLS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["plain"], indirect=True)
async def test_https_to_a_plain_http_server_is_a_tls_failure(server: RawServer) -> None:
    where = f"127.0.0.1:{server.port}"
    error = await poll_error(server.url("v1", scheme="https"))
    assert error.detail == f"TLS failure with {where}: wrong version number"
    result = await send(server.url("hook", scheme="https"))
    assert result.error == f"TLS failure with {where}: wrong version number"


async def test_an_untrusted_certificate_is_a_tls_failure(tmp_path: Path) -> None:
    context = self_signed_context(tmp_path)
    if context is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    with RawServer("plain", tls=context) as server:
        where = f"127.0.0.1:{server.port}"
        expected = f"TLS failure with {where}: certificate not trusted (self-signed certificate)"
        assert (await poll_error(server.url("v1", scheme="https"))).detail == expected
        assert (await send(server.url("hook", scheme="https"))).error == expected


# -- timeouts: the configured N, when it really ran out ---------------------------------


@pytest.mark.parametrize("server", ["silent"], indirect=True)
async def test_a_server_that_never_answers_is_a_timeout_after_the_configured_seconds(
    server: RawServer,
) -> None:
    started = time.monotonic()
    error = await poll_error(server.url("v1"))
    assert error.detail == f"timeout after {TIMEOUT:g} s"
    assert TIMEOUT - 0.1 < time.monotonic() - started < TIMEOUT + 1.5
    result = await send(server.url("hook"))
    assert result.error == f"timeout after {TIMEOUT:g} s"
    assert result.duration_ms is not None and result.duration_ms >= (TIMEOUT - 0.1) * 1000


# -- other ways a server lets a request down ---------------------------------------------


@pytest.mark.parametrize("server", ["close"], indirect=True)
async def test_a_server_that_hangs_up_says_so(server: RawServer) -> None:
    expected = f"connection closed by 127.0.0.1:{server.port} without an answer"
    assert (await poll_error(server.url("v1"))).detail == expected
    assert (await send(server.url("hook"))).error == expected


@pytest.mark.parametrize("server", ["garbage"], indirect=True)
async def test_an_answer_that_is_not_http_is_an_error_on_the_poll(server: RawServer) -> None:
    """aiohttp lets this one through httpx-aiohttp unmapped: still an UpstreamError."""
    error = await poll_error(server.url("v1"))
    assert isinstance(error, UpstreamTransient)
    assert error.detail.startswith(f"invalid HTTP answer from 127.0.0.1:{server.port}: ")
    result = await send(server.url("hook"))
    assert result.error is not None and result.error.startswith("invalid HTTP answer from ")


# -- names that do not resolve -------------------------------------------------------------


class NoNames(AbstractResolver):
    """A resolver that knows no name, as a DNS server answering NXDOMAIN would (no
    query leaves the machine: tests must not depend on, or send to, a real resolver)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        return None


@asynccontextmanager
async def client_without_dns(*, policy: bool) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client over aiohttp (as the daemon's) whose resolver knows no name."""

    def session() -> aiohttp.ClientSession:
        if policy:
            allowed = parse_policy("*", "TRACKER_WEBHOOK_ALLOWED_HOSTS")
            return aiohttp.ClientSession(connector=PolicyConnector(allowed, resolver=NoNames()))
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=NoNames()))

    async with httpx.AsyncClient(transport=AiohttpTransport(client=session)) as http:
        yield http


async def test_a_name_that_does_not_resolve_says_so() -> None:
    expected = "name not resolved: hooks.example.invalid (name or service not known)"
    async with client_without_dns(policy=False) as http:
        error = await poll_error("https://hooks.example.invalid/v1", http)
    assert isinstance(error, UpstreamTransient) and error.detail == expected
    async with client_without_dns(policy=True) as http:
        result = await send("https://hooks.example.invalid/hook", http)
    assert result.error == expected


# -- the classifier on its own -------------------------------------------------------------


def key(host: str = "h.example", port: int = 443) -> ConnectionKey:
    return ConnectionKey(host, port, True, True, None, None, None, None)


def mapped(cause: BaseException) -> httpx.ConnectTimeout:
    """As httpx-aiohttp raises it: ConnectTimeout from the aiohttp exception."""
    exc = httpx.ConnectTimeout(str(cause))
    exc.__cause__ = cause
    return exc


def describe(exc: BaseException, **kwargs: object) -> str:
    return describe_failure(exc, where="h.example:443", timeout=30, connect_timeout=5, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            mapped(aiohttp.ClientConnectorError(key(), ConnectionRefusedError(111, "refused"))),
            "connection refused to h.example:443",
        ),
        (
            mapped(aiohttp.ClientConnectorError(key(), OSError(errno.ENETUNREACH, "unreachable"))),
            "connection to h.example:443 failed: network unreachable",
        ),
        (
            mapped(
                aiohttp.ClientConnectorDNSError(
                    key(), socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
                )
            ),
            "name not resolved: h.example (temporary failure in name resolution)",
        ),
        (
            mapped(aiohttp.ConnectionTimeoutError("Connection timeout to host")),
            "timeout after 5 s connecting to h.example:443",
        ),
        (
            mapped(
                aiohttp.ClientConnectorCertificateError(
                    key(), ssl.SSLCertVerificationError(1, "certificate verify failed")
                )
            ),
            "TLS failure with h.example:443: certificate not trusted (certificate verify failed)",
        ),
        (mapped(ConnectionResetError(104, "reset")), "connection reset by h.example:443"),
        (AddressRefused("10.0.0.1 is private"), "refused: 10.0.0.1 is private"),
        (TimeoutError(), "timeout after 30 s"),
    ],
    ids=lambda v: "" if isinstance(v, str) else type(v.__cause__ or v).__name__,
)
def test_each_cause_gets_its_name(exc: BaseException, expected: str) -> None:
    assert describe(exc) == expected


def test_the_deadline_decides_whatever_was_raised() -> None:
    """When the caller's deadline expired, it is a timeout after the whole limit."""
    assert describe(asyncio.CancelledError(), timed_out=True) == "timeout after 30 s"
    assert (
        describe(TimeoutError(), timed_out=True, answered=True)
        == "timeout after 30 s (answer incomplete)"
    )


def test_host_port_names_the_scheme_port_and_never_credentials() -> None:
    assert host_port("https://user:pw@hooks.example.com/x?token=1") == "hooks.example.com:443"
    assert host_port("http://127.0.0.1/v1") == "127.0.0.1:80"
    assert host_port("http://[::1]:8080/v1") == "[::1]:8080"
