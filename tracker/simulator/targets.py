"""Where the simulator may push webhooks: this machine's loopback, nowhere else.

The simulator is a test tool; it must never send traffic off the machine. A webhook URL
is accepted only when its host is an IPv4 address in 127.0.0.0/8, the IPv6 address
``::1`` or the name ``localhost`` (:func:`check_webhook_url`, at creation). At sending
time the URL is checked again as the HTTP client parses it, and the client's resolver
(:class:`LoopbackResolver`) maps ``localhost`` to 127.0.0.1 and ::1 itself, without
reading ``/etc/hosts`` or asking DNS, and refuses every other name.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

#: the events of Replicate's ``webhook_events_filter``, in the order they happen
WEBHOOK_EVENTS: tuple[str, ...] = ("start", "output", "logs", "completed")
#: longest webhook URL accepted
MAX_URL_LENGTH = 2048
_LOCALHOST = "localhost"
_IPV6_LOOPBACK = ipaddress.IPv6Address("::1")


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost``, an IPv4 address in 127.0.0.0/8 or ``::1`` (brackets allowed)."""
    if not host:
        return False
    name = host.lower()
    if name == _LOCALHOST:
        return True
    try:
        address = ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    # IPv6: ::1 only (whether IPv4-mapped addresses count varies between Python versions)
    return address.is_loopback if address.version == 4 else address == _IPV6_LOOPBACK


def check_webhook_url(url: object) -> str:
    """``url`` when it is an http(s) URL to a loopback host; ``ValueError`` otherwise."""
    if not isinstance(url, str) or not url:
        raise ValueError("webhook must be a URL string")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"webhook must be at most {MAX_URL_LENGTH} characters")
    if any(char.isspace() or not char.isprintable() or char == "\\" for char in url):
        raise ValueError("webhook must not contain spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"webhook is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("webhook must be an http:// or https:// URL with a host")
    if not is_loopback_host(parts.hostname) or not is_loopback_host(URL(url).host):
        raise ValueError(
            f"webhook host {parts.hostname!r} is refused: this simulator only sends to "
            "loopback (127.0.0.0/8, ::1 or localhost)"
        )
    return url


def check_events_filter(events: object) -> list[str]:
    """``events`` when it is a list of known webhook events; ``ValueError`` otherwise."""
    if not isinstance(events, list) or not all(isinstance(event, str) for event in events):
        raise ValueError("webhook_events_filter must be a list of event names")
    unknown = sorted(set(events) - set(WEBHOOK_EVENTS))
    if unknown:
        raise ValueError(
            f"webhook_events_filter: unknown events {unknown}; known: {list(WEBHOOK_EVENTS)}"
        )
    return events


class LoopbackResolver(AbstractResolver):
    """An aiohttp resolver that knows one name, ``localhost``, and refuses the rest.

    aiohttp does not consult resolvers for IP literals; those are checked by
    :func:`is_loopback_host` before each request.
    """

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """127.0.0.1 (and ::1 unless IPv4 is asked for) for ``localhost``; else ``OSError``."""
        if host.lower() != _LOCALHOST:
            raise OSError(f"the simulator pushes to loopback only, not to {host!r}")
        addresses: Sequence[tuple[str, socket.AddressFamily]] = [("127.0.0.1", socket.AF_INET)]
        if family != socket.AF_INET:
            addresses = [*addresses, ("::1", socket.AF_INET6)]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=address_family,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address, address_family in addresses
            if family in (socket.AF_UNSPEC, address_family)
        ]

    async def close(self) -> None:
        """Nothing to release."""
