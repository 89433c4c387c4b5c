"""Downloading one output file into the archive: streamed, measured, stored whole.

The body goes from the socket to ``storage.open_upload(key)`` chunk by chunk, its
sha256 and size computed on the way; it is committed (moved into place) only once
all of it arrived and matched its ``Content-Length``, and any failure aborts the
upload, so nothing is ever stored under the key but a whole file.

Rules (SPEC, "Archived outputs"):

- The file host is judged by TRACKER_ARCHIVE_ALLOWED_HOSTS on the address actually
  connected to (``make_download_client``, in ``tracker.archive.client``: an aiohttp
  session with the policy connector webhooks use), for every hop of a redirect chain.
- Redirects are followed by hand, at most ``MAX_REDIRECTS``, each a new request
  through the same client: only to http(s), a relative ``Location`` resolved
  against the URL that gave it.
- The API key (``Authorization: Bearer``, as polls send it) goes only to the
  scheme, host and port of the API base, before or after a redirect; never elsewhere.
- A file larger than ``max_bytes`` is refused as soon as that is known: from its
  ``Content-Length`` before a byte is stored, or when the running count passes it.
- Time: ``timeout`` bounds connecting and waiting for each answer's headers, and
  each wait for the next chunk of a body (a silent server fails after ``timeout``).
  On top, an overall deadline per answer: ``timeout`` plus the time the body takes
  at ``MIN_RATE`` (256 KiB/s; its Content-Length, else ``max_bytes``), so a server
  that trickles a byte now and then still ends, as a timeout that may be retried,
  while an honest slow host (2 GiB over 2 Mbit/s) gets its file through.

Failures are ``DownloadFailed``: ``reason`` is one line fit to store and show (no
key, no control character), worded as polls and webhooks word theirs
(``tracker.net.errors``); ``retry`` says whether trying later can help.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import httpx
from aiohttp.http_exceptions import ContentEncodingError
from yarl import URL

from tracker.archive.client import MAX_CONNECT_SECONDS, make_download_client
from tracker.archive.storage import ArchiveStorage, StorageError, Upload
from tracker.exceptions import TrackerError
from tracker.net.errors import NETWORK_ERRORS, describe_failure, host_port
from tracker.net.origin import DEFAULT_PORTS, configured_origin, origin
from tracker.net.policy import AddressRefused
from tracker.net.read import KiB, MiB
from tracker.text.display import MASK, escape_line
from tracker.timeparse import parse_retry_after

#: redirects followed at most (the sixth is refused)
MAX_REDIRECTS = 5
#: slowest average rate the overall deadline of a body allows (bytes per second)
MIN_RATE = 256 * KiB
#: characters of a failure's reason kept
REASON_CHARS = 300
#: characters of a Content-Type kept
CONTENT_TYPE_CHARS = 100
#: longest Retry-After honoured (seconds)
MAX_RETRY_AFTER = 3600.0
#: the setting a too-large file is refused by, as reasons name it
MAX_BYTES_VARIABLE = "TRACKER_ARCHIVE_MAX_BYTES"

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: statuses that may pass: the file may appear (a CDN catching up), access may come
#: back, a limit may lift
_PASSING = frozenset({401, 403, 404, 408, 410, 425, 429})
_ENCODING_NAMED = re.compile(r"content-encoding: (?:[\w.-]+ \(([\w.-]+)\)|([\w.-]+))")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
GiB = 1024 * MiB

log = logging.getLogger("tracker.archive.archiver")

__all__ = ["DownloadFailed", "Downloaded", "download", "make_download_client"]


@dataclass(frozen=True)
class Downloaded:
    stored_url: str
    bytes: int
    sha256: str  #: hex
    content_type: str | None  #: as the file host said, cleaned and cut to 100 characters
    #: a download with ``defer``: the blocking commit still to be made (``Upload.
    #: commit_later``; the file is not under ``stored_url`` before), or None: in place
    commit: Callable[[], str] | None = field(default=None, compare=False, repr=False)


class DownloadFailed(TrackerError):
    """A download that did not store the file; nothing is stored under its key."""

    def __init__(self, reason: str, *, retry: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        #: one line, safe to store and show
        self.reason = reason
        #: whether the same download may work later
        self.retry = retry
        #: seconds a 429/503 asked to wait, when it said
        self.retry_after = retry_after


async def download(
    client: aiohttp.ClientSession,
    url: str,
    storage: ArchiveStorage,
    key: str,
    *,
    max_bytes: int,
    api_base: str,
    api_key: str | None,
    timeout: float,
    defer: bool = False,
) -> Downloaded:
    """Store the file at ``url`` under ``key``, or raise ``DownloadFailed`` (see the
    module docstring for the rules). With ``defer``, a file the upload still holds
    whole may come back with its commit left to the caller (``Downloaded.commit``)."""
    job = _Download(
        client,
        storage,
        key,
        max_bytes=max_bytes,
        api_base=api_base,
        api_key=api_key,
        timeout=timeout,
        defer=defer,
    )
    return await job.run(url)


class _Download:
    def __init__(
        self,
        client: aiohttp.ClientSession,
        storage: ArchiveStorage,
        key: str,
        *,
        max_bytes: int,
        api_base: str,
        api_key: str | None,
        timeout: float,
        defer: bool,
    ) -> None:
        self._client = client
        self._defer = defer
        self._storage = storage
        self._key = key
        self._max_bytes = max_bytes
        self._api_origin = configured_origin(api_base)  # None (invalid): the key goes nowhere
        self._api_key = api_key or None
        self._timeout = timeout
        self._deadline = asyncio.timeout(None)
        self._budget = timeout  #: seconds the deadline now running allows
        self._answered = False  #: the current answer's headers have arrived
        self._hops = 0  #: redirects followed
        #: undo the body's Content-Encoding (off once it named one this install lacks)
        self._decode = True

    async def run(self, url: str) -> Downloaded:
        target = _http_url(url)
        try:
            async with self._deadline:
                while True:
                    self._extend(self._timeout)
                    try:
                        result = await self._hop(target)
                    except aiohttp.ClientResponseError as exc:
                        if not (self._decode and _undecodable(exc)):
                            raise
                        self._decode = False  # ask again, and store the body as it comes
                        log.warning(
                            "%s sent an output file in a Content-Encoding this install cannot"
                            " decode (identity was asked for): stored as received",
                            _netloc(target),
                        )
                        continue
                    if isinstance(result, Downloaded):
                        return result
                    target = result
        except AddressRefused as exc:
            raise self._failed(f"refused: {exc}", retry=False) from None
        except ValueError:  # aiohttp.InvalidURL too: a URL httpx parsed and aiohttp won't send
            if self._answered:
                raise
            raise self._failed(f"not a valid URL ({_netloc(target)})", retry=False) from None
        except NETWORK_ERRORS as exc:
            raise self._network_failure(exc, target) from None

    def _extend(self, seconds: float) -> None:
        """Let the deadline end ``seconds`` from now."""
        self._budget = seconds
        self._deadline.reschedule(asyncio.get_running_loop().time() + seconds)

    async def _hop(self, target: httpx.URL) -> Downloaded | httpx.URL:
        """One request: the stored file, or where a redirect points."""
        headers = {"Accept-Encoding": "identity"}
        # Credentials in the URL itself are sent instead (as the URL asks), never both
        if self._api_key and origin(target) == self._api_origin and not target.userinfo:
            headers["Authorization"] = f"Bearer {self._api_key}"
        self._answered = False
        # httpx.URL's text is already percent-encoded: yarl must not encode it again
        url = URL(str(target), encoded=True)
        get = self._client.get(
            url, headers=headers, allow_redirects=False, auto_decompress=self._decode
        )
        async with get as response:
            self._answered = True
            code = response.status
            if code in _REDIRECTS:
                return self._redirect(target, response)
            if not 200 <= code < 300 or code == 206:
                raise self._status_failure(target, response)
            return await self._store(target, response)

    def _redirect(self, target: httpx.URL, response: aiohttp.ClientResponse) -> httpx.URL:
        where = _netloc(target)
        if self._hops >= MAX_REDIRECTS:
            raise DownloadFailed(f"more than {MAX_REDIRECTS} redirects", retry=False)
        location = response.headers.get("Location", "").strip()
        if not location:
            raise self._failed(f"HTTP {response.status} from {where} without a Location")
        try:
            following = target.join(location)
        except (httpx.InvalidURL, ValueError):
            raise self._failed(f"redirect from {where} to an invalid URL", retry=False) from None
        if following.scheme not in DEFAULT_PORTS or not following.host:
            scheme = escape_line(following.scheme[:20]) or "?"
            raise self._failed(f"redirect from {where} to a {scheme}: URL refused", retry=False)
        self._hops += 1
        return following

    def _status_failure(
        self, target: httpx.URL, response: aiohttp.ClientResponse
    ) -> DownloadFailed:
        code = response.status
        retry_after = None
        if code in (429, 503):
            retry_after = parse_retry_after(response.headers.get("Retry-After"), MAX_RETRY_AFTER)
        passing = code in _PASSING or code >= 500
        return self._failed(
            f"HTTP {code} from {_netloc(target)}", retry=passing, retry_after=retry_after
        )

    async def _store(self, target: httpx.URL, response: aiohttp.ClientResponse) -> Downloaded:
        declared = _content_length(response)
        if declared is not None and declared > self._max_bytes:
            raise self._too_large()
        expected = self._max_bytes if declared is None else declared
        self._extend(self._timeout + expected / MIN_RATE)
        content_type = clean_content_type(response.headers.get("Content-Type"))
        upload = await self._open_upload()
        try:
            size, sha256 = await self._copy(target, response, upload, declared)
            later = upload.commit_later() if self._defer else None
            if later is not None:
                stored_url = self._storage.stored_url(self._key)
                return Downloaded(stored_url, size, sha256, content_type, commit=later)
            stored_url = await self._commit(upload)
        except BaseException:
            await asyncio.shield(upload.abort())
            raise
        return Downloaded(stored_url, size, sha256, content_type)

    async def _copy(
        self,
        target: httpx.URL,
        response: aiohttp.ClientResponse,
        upload: Upload,
        declared: int | None,
    ) -> tuple[int, str]:
        """Body to upload; the size and sha256 of what was stored (after any content
        decoding, so a compressed bomb counts as what it unpacks to)."""
        digest = hashlib.sha256()
        size = 0
        try:
            async for chunk in response.content.iter_any():
                size += len(chunk)
                if size > self._max_bytes:
                    raise self._too_large()
                digest.update(chunk)
                try:
                    await upload.write(chunk)
                except StorageError as exc:
                    raise self._failed(f"archive storage failed: {exc}") from None
        except aiohttp.ClientPayloadError as exc:  # fewer bytes than declared, a cut chunk
            if decoding := self._decoding_failure(exc, target):
                raise decoding from None
            got = f": {size} of {declared} bytes" if declared is not None else ""
            raise self._failed(f"answer from {host_port(target)} broken off{got}") from None
        return size, digest.hexdigest()

    async def _open_upload(self) -> Upload:
        try:
            return await self._storage.open_upload(self._key)
        except StorageError as exc:
            raise self._failed(f"archive storage failed: {exc}") from None

    async def _commit(self, upload: Upload) -> str:
        try:
            return await upload.commit()
        except StorageError as exc:
            raise self._failed(f"archive storage failed: {exc}") from None

    def _too_large(self) -> DownloadFailed:
        limit = size_text(self._max_bytes)
        return self._failed(f"larger than {limit} ({MAX_BYTES_VARIABLE})", retry=False)

    def _decoding_failure(self, exc: BaseException, target: httpx.URL) -> DownloadFailed | None:
        """The failure of a body that is not what its Content-Encoding (sent although
        ``identity`` was asked for) says: corrupt or cut, so it may be tried again."""
        error = _encoding_error(exc)
        if error is None:
            return None
        # aiohttp names the encoding only in its message: "…: gzip", "…: brotli (br). …"
        named = _ENCODING_NAMED.search(str(error))
        name = escape_line((named.group(1) or named.group(2))[:40]) if named else "?"
        return self._failed(f"answer from {host_port(target)} could not be decoded ({name})")

    def _network_failure(self, exc: BaseException, target: httpx.URL) -> DownloadFailed:
        try:
            where = host_port(target)
        except httpx.InvalidURL:
            where = "the file host"
        reason = describe_failure(
            exc,
            where=where,
            timeout=round(self._budget, 1) if self._deadline.expired() else self._timeout,
            connect_timeout=min(self._timeout, MAX_CONNECT_SECONDS),
            timed_out=self._deadline.expired(),
            answered=self._answered,
        )
        return self._failed(reason, retry=not reason.startswith("refused: "))

    def _failed(
        self, reason: str, *, retry: bool = True, retry_after: float | None = None
    ) -> DownloadFailed:
        if self._hops:
            reason += f" (after {self._hops} redirect{'s' if self._hops > 1 else ''})"
        if self._api_key:
            reason = reason.replace(self._api_key, MASK)
        reason = escape_line(reason)
        if len(reason) > REASON_CHARS:
            reason = reason[: REASON_CHARS - 1] + "…"
        return DownloadFailed(reason, retry=retry, retry_after=retry_after)


# -- helpers -----------------------------------------------------------------------------


def _http_url(url: str) -> httpx.URL:
    """The URL to fetch; DownloadFailed (not to be retried) unless it is http(s)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise DownloadFailed("not a valid URL", retry=False) from None
    if parsed.scheme not in DEFAULT_PORTS:
        scheme = escape_line(parsed.scheme[:20]) or "no scheme"
        raise DownloadFailed(f"not an http(s) URL ({scheme})", retry=False)
    if not parsed.host:
        raise DownloadFailed("not a valid URL (no host)", retry=False)
    return parsed


def _encoding_error(exc: BaseException) -> ContentEncodingError | None:
    """aiohttp's ContentEncodingError in the chain of causes of ``exc``, if any."""
    error: BaseException | None = exc
    for _ in range(10):  # a chain of causes is short; a cycle must not hang
        if error is None or isinstance(error, ContentEncodingError):
            return error
        error = error.__cause__ or error.__context__
    return None


def _undecodable(exc: BaseException) -> bool:
    """An answer in an encoding this install has no decoder for (brotli or zstd
    without their packages): a decoder's own error would be its cause."""
    error = _encoding_error(exc)
    return error is not None and (error.__cause__ or error.__context__) is None


def _netloc(url: httpx.URL) -> str:
    """``host`` or ``host:port`` (a port only when not the scheme's), no user info."""
    return escape_line(url.netloc.decode("ascii", "replace"))


def _content_length(response: aiohttp.ClientResponse) -> int | None:
    value = response.headers.get("Content-Length", "").strip()
    return int(value) if value.isdigit() else None


def clean_content_type(value: str | None) -> str | None:
    """A Content-Type fit to store: no control characters, one space between words,
    at most CONTENT_TYPE_CHARS characters; None when empty."""
    if value is None:
        return None
    text = " ".join(_CONTROL.sub("", value).split())[:CONTENT_TYPE_CHARS].strip()
    return text or None


def size_text(size: int) -> str:
    """``2 GiB``, ``16 MiB``, ``64 KiB`` or ``1000 bytes``."""
    for unit, name in ((GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} bytes"
