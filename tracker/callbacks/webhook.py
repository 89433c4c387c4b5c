"""POSTing a delivery to a webhook URL, signed the Standard Webhooks way."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import time
from datetime import UTC, datetime

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from standardwebhooks.webhooks import Webhook

from tracker.callbacks.retry import MAX_DELIVERY_RETRY_AFTER
from tracker.domain import DeliveryJob, SendResult
from tracker.exceptions import ConfigError
from tracker.net.connect import PolicyConnector
from tracker.net.errors import NETWORK_ERRORS, describe_failure, host_port
from tracker.net.policy import AddressRefused, HostPolicy
from tracker.net.read import read_prefix
from tracker.timeparse import parse_retry_after
from tracker.version import __version__

#: bytes of a receiver's answer read: its status code is what counts
ANSWER_BYTES = 64 * 1024
#: characters of an error text kept
ERROR_CHARS = 300
#: longest connect phase of an attempt (seconds)
MAX_CONNECT_SECONDS = 10.0


def make_webhook_client(
    *, timeout: float, max_connections: int, allowed: HostPolicy
) -> httpx.AsyncClient:
    """httpx over aiohttp's pool, as for polling (see ``tracker.poll.upstream``), that
    connects only to the addresses ``allowed`` lets through."""

    def session() -> aiohttp.ClientSession:
        connector = PolicyConnector(
            allowed,
            limit=max_connections,
            keepalive_timeout=5.0,
            ssl=httpx.create_ssl_context(),
        )
        return aiohttp.ClientSession(connector=connector)

    return httpx.AsyncClient(
        transport=AiohttpTransport(client=session),
        timeout=httpx.Timeout(timeout, connect=connect_timeout(timeout)),
        follow_redirects=False,  # a 3xx is a failure: the receiver must fix its URL
    )


def connect_timeout(timeout: float) -> float:
    """Seconds the connect phase of an attempt may take (the attempt has ``timeout``)."""
    return min(timeout, MAX_CONNECT_SECONDS)


def split_credentials(target: str) -> tuple[httpx.URL, httpx.BasicAuth | None]:
    """The URL without ``user:password@``, and those as HTTP basic auth."""
    url = httpx.URL(target)
    if not url.userinfo:
        return url, None
    return url.copy_with(username=None, password=None), httpx.BasicAuth(url.username, url.password)


#: shortest signing key accepted (bytes, after base64 decoding)
MIN_SECRET_BYTES = 16


def load_signer(secret: str | None) -> Webhook | None:
    """A signer for ``whsec_`` + base64 secrets; anything else is a configuration error.

    The ``standardwebhooks`` package decodes leniently (it drops characters that
    are not base64), which would sign with a key nobody meant: check strictly first.
    """
    if not secret:
        return None
    encoded = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigError(
            "TRACKER_WEBHOOK_SECRET is not a valid secret: expected whsec_ followed by"
            f" the base64 of at least {MIN_SECRET_BYTES} bytes"
        )
    return Webhook(secret)


class WebhookSender:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        secret: str | None = None,
        timeout: float,
    ) -> None:
        self._http = http
        self._signer = load_signer(secret)
        self._timeout = timeout

    def headers(self, job: DeliveryJob, sent_at: datetime) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"tracker/{__version__}",
            "webhook-id": job.message_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            # Which of start/output/logs/completed this is (the body is the prediction).
            "tracker-event": job.event,
        }
        if self._signer is not None:
            headers["webhook-signature"] = self._signer.sign(job.message_id, sent_at, job.payload)
        return headers

    async def send(self, job: DeliveryJob) -> SendResult:
        """One attempt, within the timeout in all; the status code decides, and a
        receiver's answer body is read only in part (``ANSWER_BYTES``)."""
        started = time.monotonic()
        try:
            url, auth = split_credentials(job.target)
        except (httpx.InvalidURL, ValueError):  # checked at add: only an old row
            return SendResult(ok=False, error="invalid URL", permanent=True)
        answered: httpx.Response | None = None
        deadline = asyncio.timeout(self._timeout)
        try:
            async with (
                deadline,
                self._http.stream(
                    "POST",
                    url,
                    content=job.payload.encode("utf-8"),
                    headers=self.headers(job, datetime.now(UTC)),
                    auth=auth,
                ) as response,
            ):
                answered = response
                # Read a little so the connection can be reused; a receiver that
                # breaks off or dribbles its answer has still given its status.
                with contextlib.suppress(*NETWORK_ERRORS):
                    await read_prefix(response, ANSWER_BYTES)
        except AddressRefused as exc:
            return SendResult(ok=False, error=f"refused: {exc}", duration_ms=_ms(started))
        except NETWORK_ERRORS as exc:
            if answered is None:  # else the status was given: it stands
                error = describe_failure(
                    exc,
                    where=_where(url),
                    timeout=self._timeout,
                    connect_timeout=connect_timeout(self._timeout),
                    timed_out=deadline.expired(),
                )
                error = _without_password(error, job.target)[:ERROR_CHARS]
                return SendResult(ok=False, error=error, duration_ms=_ms(started))
        assert answered is not None
        return _result(answered, _ms(started))


def _result(response: httpx.Response, duration_ms: int) -> SendResult:
    code = response.status_code
    if 200 <= code < 300:
        return SendResult(ok=True, status_code=code, duration_ms=duration_ms)
    error = f"HTTP {code}"
    if 300 <= code < 400:
        error += " (redirects are not followed)"
    retry_after = None
    if code in (429, 503):
        header = response.headers.get("Retry-After")
        retry_after = parse_retry_after(header, MAX_DELIVERY_RETRY_AFTER)
    return SendResult(
        ok=False,
        status_code=code,
        error=error,
        retry_after=retry_after,
        permanent=code == 410,
        duration_ms=duration_ms,
    )


def _without_password(text: str, target: str) -> str:
    """Error text without the URL's password, in case a library quoted the URL."""
    url = httpx.URL(target)
    raw = url.userinfo.decode("ascii", "replace").partition(":")[2]
    for secret in {url.password, raw} - {""}:
        text = text.replace(secret, "***")
    return text


def _where(url: httpx.URL) -> str:
    try:
        return host_port(url)
    except httpx.InvalidURL:
        return "the receiver"


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
