"""POSTing a delivery to a webhook URL, signed the Standard Webhooks way."""

from __future__ import annotations

import base64
import binascii
import time
from datetime import UTC, datetime

import httpx
from httpx_aiohttp import AiohttpTransport
from standardwebhooks.webhooks import Webhook

from tracker import __version__
from tracker.callbacks.base import DeliveryJob, SendResult
from tracker.exceptions import ConfigError
from tracker.upstream import parse_retry_after

#: seconds a receiver has to answer
DEFAULT_WEBHOOK_TIMEOUT = 15.0


def make_webhook_client(*, timeout: float, max_connections: int) -> httpx.AsyncClient:
    """httpx over aiohttp's pool, as for polling (see ``tracker.upstream``)."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncClient(
        transport=AiohttpTransport(limits=limits),
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        follow_redirects=False,  # a 3xx is a failure: the receiver must fix its URL
    )


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
    def __init__(self, http: httpx.AsyncClient, *, secret: str | None = None) -> None:
        self._http = http
        self._signer = load_signer(secret)

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
        started = time.monotonic()
        body = job.payload.encode("utf-8")
        try:
            response = await self._http.post(
                job.target, content=body, headers=self.headers(job, datetime.now(UTC))
            )
        except httpx.TimeoutException:
            return SendResult(ok=False, error="timed out", duration_ms=_ms(started))
        except httpx.HTTPError as exc:
            return SendResult(
                ok=False, error=f"{type(exc).__name__}: {exc}"[:300], duration_ms=_ms(started)
            )
        return _result(response, _ms(started))


def _result(response: httpx.Response, duration_ms: int) -> SendResult:
    code = response.status_code
    if 200 <= code < 300:
        return SendResult(ok=True, status_code=code, duration_ms=duration_ms)
    error = f"HTTP {code}"
    if 300 <= code < 400:
        error += " (redirects are not followed)"
    retry_after = None
    if code in (429, 503):
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return SendResult(
        ok=False,
        status_code=code,
        error=error,
        retry_after=retry_after,
        permanent=code == 410,
        duration_ms=duration_ms,
    )


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
