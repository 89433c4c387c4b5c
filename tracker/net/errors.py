"""What went wrong with an HTTP request, in words an operator can act on.

Polls and webhooks both go through httpx over aiohttp (``httpx-aiohttp``), which
maps aiohttp's exceptions onto httpx's coarsely: a refused connection, a name
that does not resolve and a failed TLS handshake all arrive as
``httpx.ConnectTimeout``, raised ``from`` the aiohttp exception that says what
really happened. ``describe_failure`` reads the whole chain and names the cause:

- ``connection refused to HOST:PORT``
- ``name not resolved: HOST (REASON)``
- ``TLS failure with HOST:PORT: REASON`` (a certificate the trust store rejects:
  ``certificate not trusted (…)``)
- ``timeout after N s`` (the whole attempt), ``timeout after N s connecting to
  HOST:PORT`` (the connect phase alone)
- ``connection reset by HOST:PORT``, ``connection closed by HOST:PORT without an
  answer``, ``answer from HOST:PORT broken off``, ``invalid HTTP answer from
  HOST:PORT: …``, ``connection to HOST:PORT failed: …``
- ``refused: …``: the host policy (``tracker.net.policy``) does not allow the address.

The same function serves the stored error (``predictions.last_error``,
``deliveries.last_error``) and the log line, so both say the same thing.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator

import aiohttp
import httpx

from tracker.net.policy import AddressRefused

__all__ = ["NETWORK_ERRORS", "describe_failure", "host_port"]

#: what a request can raise besides answering: httpx's errors, aiohttp's (the mapping
#: lets some through unmapped, e.g. a malformed status line) and the OS's (TimeoutError
#: included)
NETWORK_ERRORS: tuple[type[BaseException], ...] = (httpx.HTTPError, aiohttp.ClientError, OSError)
#: characters of a library's own message kept
_DETAIL_CHARS = 160
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: errno values with a name operators know, for connections that fail otherwise
_ERRNO_WORDS = {
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ETIMEDOUT: "connection timed out",
    errno.ECONNABORTED: "connection aborted",
}


def host_port(url: str | httpx.URL) -> str:
    """``host:port`` of a URL (the scheme's port when none is given), with brackets
    around an IPv6 address and never the user name or password."""
    parsed = httpx.URL(url) if isinstance(url, str) else url
    host = parsed.host
    if ":" in host:
        host = f"[{host}]"
    port = parsed.port or _DEFAULT_PORTS.get(parsed.scheme)
    return f"{host}:{port}" if port else host


def describe_failure(
    exc: BaseException,
    *,
    where: str,
    timeout: float,
    connect_timeout: float | None = None,
    timed_out: bool = False,
    answered: bool = False,
) -> str:
    """One line saying what went wrong with a request to ``where`` (``host:port``).

    ``timed_out``: the caller's deadline for the whole attempt (``timeout`` seconds)
    expired; ``answered``: the status line and headers had arrived by then.
    ``connect_timeout`` is the limit of the connect phase alone, when it has one.
    """
    if timed_out:
        return f"timeout after {timeout:g} s" + (" (answer incomplete)" if answered else "")
    chain = list(_chain(exc))
    for step in _CHECKS:
        text = step(chain, where, answered)
        if text is not None:
            return text
    # httpx's own type says little when aiohttp's exception is underneath it (a
    # refused connection arrives as httpx.ConnectTimeout): judge by the causes then.
    causes = [e for e in chain if not isinstance(e, httpx.HTTPError)] or chain
    for error in causes:
        if _is_timeout(error):
            if _is_connect_timeout(error) and connect_timeout is not None:
                return f"timeout after {connect_timeout:g} s connecting to {where}"
            return f"timeout after {timeout:g} s"
    root = chain[-1]
    return f"request to {where} failed: {type(root).__name__}: {_detail(root)}"


# -- the checks, most telling first -----------------------------------------------------


def _policy(chain: list[BaseException], where: str, answered: bool) -> str | None:
    for error in chain:
        if isinstance(error, AddressRefused):
            return f"refused: {error}"
    return None


def _dns(chain: list[BaseException], where: str, answered: bool) -> str | None:
    for error in chain:
        if isinstance(error, aiohttp.ClientConnectorDNSError | socket.gaierror):
            host = error.host if isinstance(error, aiohttp.ClientConnectorError) else None
            host = host or where.rpartition(":")[0] or where
            reason = _resolver_reason(
                [*chain, error.os_error]
                if isinstance(error, aiohttp.ClientConnectorError)
                else chain
            )
            return f"name not resolved: {host}" + (f" ({reason})" if reason else "")
    return None


def _tls(chain: list[BaseException], where: str, answered: bool) -> str | None:
    for error in chain:
        if isinstance(error, aiohttp.ClientConnectorCertificateError):
            cert = error.certificate_error
            return f"TLS failure with {where}: certificate not trusted ({_ssl_reason(cert)})"
        if isinstance(error, ssl.SSLCertVerificationError):
            return f"TLS failure with {where}: certificate not trusted ({_ssl_reason(error)})"
    for error in reversed(chain):  # the root says most
        if isinstance(error, ssl.SSLError):
            return f"TLS failure with {where}: {_ssl_reason(error)}"
    return None


def _refused_or_reset(chain: list[BaseException], where: str, answered: bool) -> str | None:
    for error in chain:
        if isinstance(error, ConnectionRefusedError) or _errno(error) == errno.ECONNREFUSED:
            return f"connection refused to {where}"
        if isinstance(error, ConnectionResetError) or _errno(error) == errno.ECONNRESET:
            return f"connection reset by {where}"
    return None


def _http_level(chain: list[BaseException], where: str, answered: bool) -> str | None:
    for error in chain:
        if isinstance(error, aiohttp.ClientPayloadError):
            return f"answer from {where} broken off: {_detail(chain[-1])}"
        if isinstance(error, aiohttp.ServerDisconnectedError):
            if answered:
                return f"answer from {where} broken off: connection closed"
            return f"connection closed by {where} without an answer"
        if isinstance(error, aiohttp.ClientResponseError):
            return f"invalid HTTP answer from {where}: {_detail(error.message)}"
    return None


def _other_os_error(chain: list[BaseException], where: str, answered: bool) -> str | None:
    for error in chain:
        if isinstance(error, OSError) and not _is_timeout(error):
            number = _errno(error)
            if number in _ERRNO_WORDS:
                return f"connection to {where} failed: {_ERRNO_WORDS[number]}"
    for error in reversed(chain):  # the root says most
        if type(error) is OSError or (
            isinstance(error, OSError) and error.errno and not _is_timeout(error)
        ):
            text = error.strerror or str(error) or type(error).__name__
            return f"connection to {where} failed: {_detail(text)}"
    return None


_CHECKS = (_policy, _dns, _tls, _refused_or_reset, _http_level, _other_os_error)


# -- helpers -----------------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what caused it, down to the root (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _errno(error: BaseException) -> int | None:
    if isinstance(error, aiohttp.ClientConnectorError):
        return error.os_error.errno
    return error.errno if isinstance(error, OSError) else None


def _is_timeout(error: BaseException) -> bool:
    return isinstance(error, TimeoutError | httpx.TimeoutException)


def _is_connect_timeout(error: BaseException) -> bool:
    return isinstance(error, aiohttp.ConnectionTimeoutError | httpx.ConnectTimeout)


def _resolver_reason(chain: list[BaseException]) -> str:
    for error in reversed(chain):
        if isinstance(error, OSError) and not isinstance(error, aiohttp.ClientError):
            text = error.strerror or str(error)
            return _detail(text[:1].lower() + text[1:]) if text else ""
    return ""


def _ssl_reason(error: BaseException) -> str:
    """``wrong version number`` from ``[SSL: WRONG_VERSION_NUMBER] wrong version number
    (_ssl.c:1006)``; a certificate's ``verify_message`` when it has one."""
    verify = getattr(error, "verify_message", None)
    if verify:
        return _detail(str(verify))
    text = (error.strerror if isinstance(error, OSError) else None) or str(error)
    if "] " in text:
        text = text.split("] ", 1)[1]
    text = text.split(" (_ssl.c:", 1)[0]
    return _detail(text) or type(error).__name__


def _detail(text: object) -> str:
    flat = " ".join(str(text).split())
    return flat[:_DETAIL_CHARS] + ("…" if len(flat) > _DETAIL_CHARS else "")
