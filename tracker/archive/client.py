"""The HTTP client that downloads output files (``tracker.archive.download`` uses it
and re-exports ``make_download_client``).

Downloads go through aiohttp directly, not through httpx as polls and webhooks do:
a download is one streamed GET whose answer is handled by hand (redirects, size,
deadline), so httpx's layer would add only its cost, about 0.35 ms of CPU per
request, which is most of what a small image's download costs the daemon.
"""

from __future__ import annotations

import aiohttp
import httpx

from tracker.net.connect import PolicyConnector
from tracker.net.policy import HostPolicy
from tracker.version import __version__

#: longest connect phase of a request (seconds)
MAX_CONNECT_SECONDS = 10.0


def make_download_client(
    *, timeout: float, max_connections: int, allowed: HostPolicy
) -> aiohttp.ClientSession:
    """An aiohttp session that connects only where ``allowed``
    (TRACKER_ARCHIVE_ALLOWED_HOSTS) lets it, keeps no cookies (file hosts have no
    business setting them for later downloads, and a daemon runs for months), reads
    no proxy settings and leaves redirects to ``download``. ``timeout`` bounds the
    connect phase (at most 10 s) and each wait for the next bytes of an answer."""
    connector = PolicyConnector(
        allowed,
        limit=max_connections,
        keepalive_timeout=5.0,
        ssl=httpx.create_ssl_context(),  # the trust store polls and webhooks use
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": f"tracker/{__version__}"},
        timeout=aiohttp.ClientTimeout(
            total=None,
            connect=min(timeout, MAX_CONNECT_SECONDS),
            sock_connect=min(timeout, MAX_CONNECT_SECONDS),
            sock_read=timeout,
        ),
        trust_env=False,
    )
