"""The origin of a URL (scheme, host, port): the API key goes only to the API's own."""

from __future__ import annotations

import functools

import httpx

#: the port each scheme uses when a URL names none
DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int | None]


def origin(url: httpx.URL) -> Origin:
    """Scheme, host (lower case) and port (the scheme's default when none is given)."""
    return (url.scheme, url.host.lower(), url.port or DEFAULT_PORTS.get(url.scheme))


def origin_of(text: str) -> Origin | None:
    """The origin of an http(s) URL given as text; None when it is not one."""
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    return origin(url) if url.scheme in DEFAULT_PORTS and url.host else None


@functools.lru_cache(maxsize=8)
def configured_origin(base: str) -> Origin | None:
    """``origin_of`` a configured URL (TRACKER_API_BASE), parsed once: every download
    asks for it, and parsing costs about 0.1 ms."""
    return origin_of(base)
