"""The HTTP client for the upstream prediction API.

Every failure leaves this module as an ``UpstreamError`` subclass; nothing
above it sees an httpx or aiohttp exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

import httpx
from httpx_aiohttp import AiohttpTransport

from tracker.config import DEFAULT_MAX_ANSWER_BYTES, DEFAULT_POLL_TIMEOUT
from tracker.domain import ID_PATTERN
from tracker.exceptions import (
    ConfigError,
    UpstreamAuthError,
    UpstreamBadAnswer,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamTransient,
)
from tracker.net.errors import NETWORK_ERRORS, describe_failure, host_port
from tracker.net.origin import origin_of
from tracker.net.read import MiB, declared_too_long, read_capped, read_prefix, size_text
from tracker.text.sanitize import TooDeep, clean_text, decode_json
from tracker.timeparse import parse_retry_after
from tracker.version import __version__

#: seconds to wait for a TCP/TLS connection (the rest of a poll has only the
#: poll's own timeout, TRACKER_POLL_TIMEOUT, for all of it)
CONNECT_TIMEOUT = 5.0
#: pause for a 429 that gives no Retry-After (seconds)
DEFAULT_RATE_LIMIT_PAUSE = 5.0
#: longest pause of all polling an upstream's Retry-After may impose (seconds)
MAX_UPSTREAM_RETRY_AFTER = 3600.0
#: characters of an unusable body kept in the error text
BODY_SNIPPET = 120
#: bytes of an error answer (not 2xx) read: only a snippet of it is kept
ERROR_BODY_BYTES = 64 * 1024
#: bodies longer than this are parsed in a worker thread, so polls go on meanwhile
THREAD_PARSE_BYTES = 1 * MiB


@dataclass(frozen=True, slots=True)
class Answer:
    """A 2xx answer whose body parsed as JSON."""

    body: object
    status_code: int


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing: the prediction API sets no cookies, and
    httpx reads every answer's headers for them (a few % of the poll loop's CPU)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _CookielessClient(httpx.AsyncClient):
    """An AsyncClient whose cookie jar stays empty (see ``_NoCookies``)."""

    @property  # type: ignore[override, misc]  # read-only on purpose
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES


_NO_COOKIES = _NoCookies()


def make_http_client(*, max_connections: int) -> httpx.AsyncClient:
    """An httpx client sized for the poll loop (no redirects, explicit timeouts).

    The requests go through aiohttp's connection pool (``httpx-aiohttp``): httpx's
    own pool spends most of the poll loop's CPU time once dozens of requests are
    in flight (see docs/performance.md); the httpx API stays the same.
    """
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return _CookielessClient(
        transport=AiohttpTransport(limits=limits),
        # No read limit of its own: the poll's timeout covers the whole request, so a
        # silent server is reported as what it is ("timeout after N s", N as configured).
        timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT),
        follow_redirects=False,
        headers={"User-Agent": f"tracker/{__version__}", "Accept": "application/json"},
    )


class UpstreamClient:
    """``GET {base}/predictions/{id}`` (and ``POST`` its cancel URL) with the bearer key."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        api_key: str | None,
        *,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        timeout: float = DEFAULT_POLL_TIMEOUT,
    ) -> None:
        if api_key and (not api_key.isascii() or any(ch.isspace() for ch in api_key)):
            raise ConfigError("the API key contains spaces or non-ASCII characters")
        self._http = http
        self._base = base_url.rstrip("/")
        #: masked wherever the upstream echoes them (answers are stored and logged)
        self._secrets: tuple[str, ...] = (api_key,) if api_key else ()
        auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        #: the client's own headers with the key: each request is built from them
        #: directly, not by ``AsyncClient.build_request``, which merges URL, headers and
        #: cookies again every time (103 against 44 microseconds a request, about 5 %
        #: of a poll's CPU; docs/performance.md)
        self._request_headers = httpx.Headers(http.headers)
        self._request_headers.update(auth)
        self._max_bytes = max_answer_bytes
        self._timeout = timeout
        #: scheme, host and port of the base: the only origin the key is sent to
        self._origin = origin_of(self._base)
        #: host:port of the upstream, as error texts name it
        try:
            self._where = host_port(self._base)
        except httpx.InvalidURL:
            self._where = "the upstream"

    def prediction_url(self, prediction_id: str) -> str:
        # The pattern rules out "." and "..", which quote() would leave for the
        # URL layer to resolve into another path.
        if not ID_PATTERN.fullmatch(prediction_id):
            raise UpstreamError(f"refusing to request an invalid ID {prediction_id[:140]!r}")
        return f"{self._base}/predictions/{quote(prediction_id, safe='')}"

    async def get_prediction(self, prediction_id: str) -> Answer:
        """The answer, or an ``UpstreamError``; never longer than the timeout in all
        (a server sending one byte a second does not hold a poll). A failure says
        what happened (``tracker.net.errors``): a refused connection is not a timeout."""
        response, content = await self._call("GET", self.prediction_url(prediction_id))
        if len(content) > THREAD_PARSE_BYTES:
            return await asyncio.to_thread(_interpret, response, content, self._secrets)
        return _interpret(response, content, self._secrets)

    def cancel_url(self, prediction_id: str, urls: object = None) -> str:
        """Where to cancel a prediction: its ``urls.cancel`` when that is on the API's
        own origin (scheme, host and port of the base), else
        ``{base}/predictions/{id}/cancel``. The key never goes to another origin."""
        fallback = f"{self.prediction_url(prediction_id)}/cancel"
        given = urls.get("cancel") if isinstance(urls, dict) else None
        if not isinstance(given, str) or not given.isprintable() or " " in given:
            return fallback
        return given if self._origin is not None and origin_of(given) == self._origin else fallback

    async def cancel_prediction(self, prediction_id: str, urls: object = None) -> Answer:
        """``POST`` the cancel URL (``cancel_url``). Any 2xx is an accepted request:
        its body, when it is a JSON object, is the prediction as the upstream answered
        (else None). Failures are the ``UpstreamError``s of a poll, worded alike."""
        url = self.cancel_url(prediction_id, urls)
        try:
            response, content = await self._call("POST", url)
        except UpstreamBadAnswer:  # a 2xx body past the cap: accepted all the same
            return Answer(None, 200)
        if not response.is_success:
            return _interpret(response, content, self._secrets)  # raises
        try:
            body = _json_body(response, content, self._secrets)
        except UpstreamBadAnswer:
            body = None
        return Answer(body if isinstance(body, dict) else None, response.status_code)

    async def _call(self, method: str, url: str) -> tuple[httpx.Response, bytes]:
        """One request and its body within the timeout; network failures mapped."""
        answered: list[httpx.Response] = []
        deadline = asyncio.timeout(self._timeout)
        try:
            async with deadline:
                return await self._fetch(method, url, answered)
        except UpstreamError:
            raise
        except NETWORK_ERRORS as exc:
            detail = describe_failure(
                exc,
                where=self._where,
                timeout=self._timeout,
                connect_timeout=min(CONNECT_TIMEOUT, self._timeout),
                timed_out=deadline.expired(),
                answered=bool(answered),
            )
            transient = not isinstance(exc, httpx.HTTPError) or isinstance(
                exc, httpx.TransportError
            )
            error = UpstreamTransient if transient else UpstreamError
            raise error(self._redact(detail)) from exc

    async def _fetch(
        self, method: str, url: str, answered: list[httpx.Response]
    ) -> tuple[httpx.Response, bytes]:
        request = httpx.Request(method, url, headers=self._request_headers)
        response = await self._http.send(request, stream=True)
        try:
            answered.append(response)
            return response, await self._read(response)
        finally:
            await response.aclose()

    async def _read(self, response: httpx.Response) -> bytes:
        """The body: all of a 2xx one up to the cap, a prefix of any other."""
        if not response.is_success:
            return await read_prefix(response, ERROR_BODY_BYTES)
        too_long = UpstreamBadAnswer(
            f"answer longer than {size_text(self._max_bytes)}; not read further"
        )
        if declared_too_long(response, self._max_bytes):
            raise too_long
        content = await read_capped(response, self._max_bytes)
        if content is None:
            raise too_long
        return content

    def _redact(self, text: str) -> str:
        """Error details are stored and logged: an upstream echoing the key must not leak it."""
        return clean_text(text, self._secrets)


def _interpret(response: httpx.Response, content: bytes, secrets: Sequence[str]) -> Answer:
    code = response.status_code
    if 200 <= code < 300:
        return Answer(_json_body(response, content, secrets), code)
    detail = clean_text(f"HTTP {code}: {_snippet(_text(response, content))}", secrets)
    if code in (401, 403):
        raise UpstreamAuthError(detail, status_code=code)
    if code == 404:
        raise UpstreamNotFound(detail, status_code=code)
    retry_after = parse_retry_after(response.headers.get("Retry-After"), MAX_UPSTREAM_RETRY_AFTER)
    if code == 429:
        pause = DEFAULT_RATE_LIMIT_PAUSE if retry_after is None else retry_after
        raise UpstreamRateLimited(detail, status_code=code, retry_after=pause)
    if code == 503 and retry_after is not None:
        raise UpstreamRateLimited(detail, status_code=code, retry_after=retry_after)
    if code >= 500 or code == 408:
        raise UpstreamTransient(detail, status_code=code)
    raise UpstreamError(detail, status_code=code)


def _json_body(response: httpx.Response, content: bytes, secrets: Sequence[str]) -> object:
    """The body, parsed and made storable (see ``tracker.text.sanitize``)."""
    try:
        return decode_json(content, secrets)
    except TooDeep as exc:
        raise UpstreamBadAnswer(str(exc)) from exc
    except ValueError as exc:  # not JSON, or not UTF-8
        content_type = response.headers.get("Content-Type", "no content type")
        detail = f"answer is not JSON ({content_type}): {_snippet(_text(response, content))}"
        raise UpstreamBadAnswer(clean_text(detail, secrets)) from exc


def _text(response: httpx.Response, content: bytes) -> str:
    """The body as text, in its declared charset (else UTF-8), bad bytes replaced."""
    try:
        return content.decode(response.charset_encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return content.decode("utf-8", errors="replace")


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat[:BODY_SNIPPET] + ("…" if len(flat) > BODY_SNIPPET else "") if flat else "(empty)"
