"""WebhookSender over the real client against receivers on loopback: the network
policy (TRACKER_WEBHOOK_ALLOWED_HOSTS) judged on the address connected to, basic
auth from user:password@ URLs, and receivers whose answers never end or dribble."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import aiohttp
import httpx
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from httpx_aiohttp import AiohttpTransport

from tests.hostile import HostileServer
from tests.receiver import Receiver
from tracker.callbacks.webhook import WebhookSender, make_webhook_client
from tracker.domain import DeliveryJob, SendResult
from tracker.net.connect import PolicyConnector
from tracker.net.policy import parse_policy

VARIABLE = "TRACKER_WEBHOOK_ALLOWED_HOSTS"


def job(target: str) -> DeliveryJob:
    return DeliveryJob(
        id=1,
        message_id="msg_1",
        prediction_id="p1",
        kind="webhook",
        target=target,
        event="completed",
        payload='{"id": "p1", "status": "succeeded"}',
        attempts=0,
        created_at=datetime(2026, 1, 2, tzinfo=UTC),
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


async def send(target: str, allowed: str = "loopback", timeout: float = 5.0) -> SendResult:
    policy = parse_policy(allowed, VARIABLE)
    async with make_webhook_client(timeout=timeout, max_connections=4, allowed=policy) as http:
        return await WebhookSender(http, timeout=timeout).send(job(target))


# -- the network policy ---------------------------------------------------------------


async def test_loopback_is_refused_by_default(receiver: Receiver) -> None:
    result = await send(receiver.url("ok/a"), allowed="external")
    assert not result.ok and result.status_code is None
    assert result.error == (f"refused: 127.0.0.1 (loopback) is not allowed by {VARIABLE}=external")
    assert receiver.received() == []


async def test_a_name_is_judged_on_the_addresses_it_resolves_to(receiver: Receiver) -> None:
    result = await send(receiver.url("ok/a").replace("127.0.0.1", "localhost"), "external")
    assert not result.ok
    assert result.error is not None and result.error.startswith("refused: localhost is ")
    assert "127.0.0.1 (loopback)" in result.error
    assert receiver.received() == []


@pytest.mark.parametrize("allowed", ["loopback", "*", "127.0.0.0/8", "external,127.0.0.1"])
async def test_rules_that_let_loopback_through(receiver: Receiver, allowed: str) -> None:
    result = await send(receiver.url("ok/a"), allowed)
    assert result.ok, result.error
    assert len(receiver.received("ok/a")) == 1


async def test_a_host_glob_matches_the_name_not_the_address(receiver: Receiver) -> None:
    by_name = receiver.url("ok/a").replace("127.0.0.1", "localhost")
    assert (await send(by_name, "local*")).ok
    assert not (await send(receiver.url("ok/a"), "local*")).ok  # 127.0.0.1 is not a name


class Rebinding(AbstractResolver):
    """DNS that answers every name with 127.0.0.1, as a rebinding attacker's would."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host, host="127.0.0.1", port=port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        return None


@asynccontextmanager
async def rebinding_client(allowed: str) -> AsyncIterator[httpx.AsyncClient]:
    policy = parse_policy(allowed, VARIABLE)

    def session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=PolicyConnector(policy, resolver=Rebinding()))

    async with httpx.AsyncClient(transport=AiohttpTransport(client=session)) as http:
        yield http


async def test_a_public_looking_name_that_resolves_to_loopback_is_refused(
    receiver: Receiver,
) -> None:
    target = receiver.url("ok/a").replace("127.0.0.1", "hooks.example.com")
    async with rebinding_client("external") as http:
        result = await WebhookSender(http, timeout=15.0).send(job(target))
    assert result.error == (
        f"refused: hooks.example.com is 127.0.0.1 (loopback): not allowed by {VARIABLE}=external"
    )
    assert receiver.received() == []
    async with rebinding_client("*.example.com") as http:  # the name is trusted: sent
        assert (await WebhookSender(http, timeout=15.0).send(job(target))).ok
    assert len(receiver.received("ok/a")) == 1


async def test_metadata_addresses_pass_only_an_explicit_cidr() -> None:
    for allowed in ("*", "external,private,loopback", "*.example.com"):
        result = await send("http://169.254.169.254/latest/meta-data/", allowed, timeout=2)
        assert result.error is not None and "169.254.169.254 (link-local)" in result.error


# -- user:password@ --------------------------------------------------------------------


async def test_credentials_in_the_url_are_sent_as_basic_auth(receiver: Receiver) -> None:
    target = receiver.url("ok/auth").replace("http://", "http://hook%40user:pa%3Ass%20w0rd@")
    result = await send(target)
    assert result.ok, result.error
    [got] = receiver.received("ok/auth")
    expected = base64.b64encode(b"hook@user:pa:ss w0rd").decode()
    assert got.headers["authorization"] == f"Basic {expected}"


async def test_a_failed_attempt_with_credentials_does_not_tell_the_password() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await send(f"http://user:s3cret-pw@127.0.0.1:{port}/hook")
    assert not result.ok and result.error
    assert "s3cret-pw" not in result.error


# -- hostile receivers -----------------------------------------------------------------


async def test_an_endless_answer_is_not_read_to_its_end(hostile: HostileServer) -> None:
    started = time.monotonic()
    result = await send(hostile.url("endless", "hook"))
    assert result.ok and result.status_code == 200  # the status is what counts
    assert time.monotonic() - started < 3
    assert hostile.sent("endless") < 16 * 1024 * 1024


async def test_an_answer_dribbled_one_byte_a_second_times_out_as_a_whole(
    hostile: HostileServer,
) -> None:
    started = time.monotonic()
    result = await send(hostile.url("dribble", "hook"), timeout=1.5)
    elapsed = time.monotonic() - started
    assert not result.ok
    assert result.error == "timeout after 1.5 s"
    assert 1.4 < elapsed < 3


async def test_a_status_given_in_time_stands_when_the_body_dribbles(
    hostile: HostileServer,
) -> None:
    started = time.monotonic()
    result = await send(hostile.url("dribble-body", "hook"), timeout=1.5)
    assert result.ok and result.status_code == 200
    assert time.monotonic() - started < 3


async def test_many_endless_answers_at_once_stay_bounded(hostile: HostileServer) -> None:
    policy = parse_policy("loopback", VARIABLE)
    async with make_webhook_client(timeout=5, max_connections=8, allowed=policy) as http:
        sender = WebhookSender(http, timeout=5)
        results = await asyncio.gather(
            *(sender.send(job(hostile.url("endless", f"h{i}"))) for i in range(16))
        )
    assert all(r.ok for r in results)
