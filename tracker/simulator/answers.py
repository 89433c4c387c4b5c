"""What the simulated API answers besides a prediction's state: ready-made bodies,
Replicate-style errors, the answers of plan faults, and the ``Gate`` every API request
passes first (auth, the rate limit, random faults)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from http import HTTPStatus

from aiohttp import web

from tracker.simulator.scenarios import Fault, SimConfig

JSON = "application/json"
NOT_FOUND = b'{"detail": "Not found."}'
UNAUTHENTICATED = b'{"detail": "Unauthenticated"}'
THROTTLED = b'{"detail": "Request was throttled."}'
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Just a moment...</title></head>\n"
    b"<body><h1>Checking your browser before accessing the API.</h1></body></html>\n"
)


class TokenBucket:
    """A token bucket refilled at ``rate`` per second, holding at most ``capacity``."""

    def __init__(self, rate: float, capacity: float | None = None, *, now: float = 0.0) -> None:
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate)
        self._tokens = self.capacity
        self._updated = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; ``False`` means the request is throttled."""
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Gate:
    """The refusal due before any prediction logic: auth (``config.api_key``), the rate
    limit (``config.rate_limit_rps``), random faults (``config.fault_rate``, drawn from
    ``rng``)."""

    def __init__(self, config: SimConfig, rng: random.Random) -> None:
        self._config = config
        self._rng = rng
        rps = config.rate_limit_rps
        self._bucket = TokenBucket(rps, now=time.monotonic()) if rps else None
        key = config.api_key
        self._expected_auth = f"Bearer {key}" if key else None

    def refusal(self, request: web.Request) -> web.Response | None:
        """The answer that refuses ``request``, or None: it passes."""
        if self._expected_auth and request.headers.get("Authorization") != self._expected_auth:
            return json_response(401, UNAUTHENTICATED)
        if self._bucket is not None and not self._bucket.take(time.monotonic()):
            return json_response(429, THROTTLED, {"Retry-After": "1"})
        rate = self._config.fault_rate
        if rate and self._rng.random() < rate:
            return http_fault(self._rng.choice((500, 502)))
        return None


def json_response(
    status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A response with a ready-made JSON body."""
    return web.Response(status=status, body=body, content_type=JSON, headers=headers)


def detail(status: int, detail: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """A Replicate-style error answer ``{"detail": ...}``."""
    return json_response(status, json.dumps({"detail": detail}).encode(), headers)


def http_fault(status: int, retry_after: int | None = None) -> web.Response:
    """The answer of an ``http`` fault."""
    headers = None if retry_after is None else {"Retry-After": str(retry_after)}
    if status == 429:
        wait = f" Expected available in {retry_after} seconds." if retry_after else ""
        return detail(status, f"Request was throttled.{wait}", headers)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return detail(status, phrase, headers)


def not_prediction_body(now: float) -> bytes:
    """A JSON body some aggregators send that is not a prediction object."""
    data = {"created": int(now), "data": [{"url": "https://example.com/generated/0.png"}]}
    return json.dumps(data).encode()


def fault_response(fault: Fault, now: float) -> web.Response | None:
    """The answer a fault replaces the normal one with (``None``: answer normally)."""
    if fault.kind == "http":
        return http_fault(fault.status, fault.retry_after)
    if fault.kind == "html":
        return web.Response(status=200, body=HTML_PAGE, content_type="text/html")
    if fault.kind == "not_prediction":
        return json_response(200, not_prediction_body(now))
    return None
