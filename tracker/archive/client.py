"""The HTTP client that downloads output files (``tracker.archive.download`` uses it
and re-exports ``make_download_client``)."""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from tracker.net.connect import PolicyConnector
from tracker.net.policy import HostPolicy
from tracker.version import __version__

#: longest connect phase of a request (seconds)
MAX_CONNECT_SECONDS = 10.0


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing: file hosts have no business setting cookies for later
    downloads, and a daemon that runs for months must not collect them."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _CookielessClient(httpx.AsyncClient):
    @property  # type: ignore[override, misc]  # read-only on purpose
    def cookies(self) -> httpx.Cookies:
        return _NoCookies()


def make_download_client(
    *, timeout: float, max_connections: int, allowed: HostPolicy
) -> httpx.AsyncClient:
    """httpx over aiohttp's pool (as polls and webhooks) that connects only where
    ``allowed`` (TRACKER_ARCHIVE_ALLOWED_HOSTS) lets it, redirects left to ``download``.
    ``timeout`` bounds the connect phase (at most 10 s), the wait for an answer and
    each wait for the next chunk of a body."""

    def session() -> aiohttp.ClientSession:
        connector = PolicyConnector(
            allowed,
            limit=max_connections,
            keepalive_timeout=5.0,
            ssl=httpx.create_ssl_context(),
        )
        return aiohttp.ClientSession(connector=connector)

    return _CookielessClient(
        transport=AiohttpTransport(client=session),
        timeout=httpx.Timeout(timeout, connect=min(timeout, MAX_CONNECT_SECONDS)),
        follow_redirects=False,
        headers={"User-Agent": f"tracker/{__version__}"},
    )
