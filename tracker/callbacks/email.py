"""Email callbacks: the SMTP settings and a pooled sender.

``parse_smtp_url`` turns ``smtp://user:pass@host:587`` or ``smtps://...`` into
``SmtpSettings``; ``Mailer.send`` renders the message for one ``DeliveryJob``
(``email_render``), delivers it over a small pool of reused SMTP connections
and maps every outcome to a ``SendResult`` (failures via ``email_failures``).

The password never appears in a repr, an error, an exception or a log line.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import parseaddr
from urllib.parse import unquote, urlsplit

import aiosmtplib

from tracker.callbacks.email_failures import classify_failure, safe_error
from tracker.callbacks.email_render import render_email
from tracker.domain import DeliveryJob, SendResult
from tracker.exceptions import ConfigError
from tracker.logsetup import MASK

__all__ = ["SMTPS_PORT", "SMTP_PORT", "Mailer", "SmtpSettings", "parse_smtp_url", "redacted"]

log = logging.getLogger(__name__)

SMTP_PORT = 25
SMTPS_PORT = 465

_URL_HINT = "expected smtp://[user[:password]@]host[:port] or smtps://..."


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send mail."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False  #: implicit TLS from the first byte (smtps://)
    start_tls: bool = True  #: upgrade with STARTTLS when the server offers it


def parse_smtp_url(url: str) -> SmtpSettings:
    """``smtp://user:pass@host:port`` (STARTTLS when offered, port 25) or ``smtps://`` (465).

    User name and password are percent-decoded. Errors never quote the URL, so
    they cannot leak the password.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"SMTP URL is empty: {_URL_HINT}")
    url = url.strip()
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ConfigError("SMTP URL contains white space or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigError(f"SMTP URL is malformed: {_URL_HINT}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps") or not url[len(scheme) :].startswith("://"):
        raise ConfigError(f"SMTP URL has an unsupported scheme: {_URL_HINT}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            "SMTP URL must not have a path, query or fragment"
            " (percent-encode '/', '?', '#' and '@' in the user name and password)"
        )
    try:
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise ConfigError("SMTP URL has an invalid port: expected 1 to 65535") from None
    if not host:
        raise ConfigError(f"SMTP URL has no host: {_URL_HINT}")
    if port == 0:
        raise ConfigError("SMTP URL has an invalid port: expected 1 to 65535")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if password is not None and username is None:
        raise ConfigError("SMTP URL has a password but no user name")
    implicit = scheme == "smtps"
    return SmtpSettings(
        host=host,
        port=port or (SMTPS_PORT if implicit else SMTP_PORT),
        username=username,
        password=password,
        use_tls=implicit,
        start_tls=not implicit,
    )


def redacted(url: str) -> str:
    """The URL with its password replaced by ``***``, safe to log.

    Errs on the side of masking: everything between the first ``:`` of the
    user part and the last ``@`` is hidden, even when the URL is malformed.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        if "@" not in url:
            return url
        return f"{MASK}@{url.rpartition('@')[2]}"
    if "@" not in rest:
        return url
    userinfo, _, hostpart = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':' + MASK if colon else ''}@{hostpart}"


# --------------------------------------------------------------------------- sending

# Failures after which the connection is still in step with the server.
_IN_STEP = (
    aiosmtplib.SMTPResponseException,
    aiosmtplib.SMTPRecipientsRefused,
    aiosmtplib.SMTPNotSupported,
    ValueError,
)


@dataclass
class _Idle:
    client: aiosmtplib.SMTP
    since: float


class Mailer:
    """Sends rendered deliveries over at most ``max_connections`` reused SMTP connections.

    Connections are opened on demand and kept for the next message; one that
    fails is dropped and replaced on the next send; one idle for more than
    ``IDLE_CHECK_AFTER`` seconds is checked with NOOP before use. ``timeout``
    bounds each SMTP command and also one whole attempt (connecting included,
    waiting for a free connection not). ``send`` never raises for a failed
    delivery: it returns a ``SendResult``.
    """

    IDLE_CHECK_AFTER = 60.0  #: seconds; an older idle connection gets a NOOP before use

    def __init__(
        self,
        settings: SmtpSettings,
        mail_from: str,
        *,
        max_connections: int = 2,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1:
            raise ConfigError("max_connections must be at least 1")
        _, address = parseaddr(mail_from)
        if not address or "@" not in address or len(mail_from.splitlines()) > 1:
            raise ConfigError(f"invalid sender address {mail_from!r}")
        self._settings = settings
        self._mail_from = mail_from
        self._envelope_from = address
        self._timeout = timeout
        self._tls_context = tls_context if tls_context is not None else ssl.create_default_context()
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Idle] = []
        self._closed = False
        self._where = f"{settings.host}:{settings.port}"

    async def __aenter__(self) -> Mailer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def send(self, job: DeliveryJob) -> SendResult:
        """Deliver one job; the outcome, never an exception (except cancellation)."""
        started = time.monotonic()
        if self._closed:
            return SendResult(ok=False, error="the mailer is closed", duration_ms=0)
        try:
            message = render_email(job, self._mail_from)
        except Exception as exc:  # only the target can cause this: a malformed address
            return self._result(started, error=f"cannot build the message: {exc}", permanent=True)
        async with self._slots:
            # Time (and bound) the SMTP work only, not the wait for a free connection.
            begun = time.monotonic()
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._deliver(message, job.target, begun)
            except TimeoutError:  # the whole attempt took too long; its connection is closed
                return self._result(begun, error=f"timed out talking to SMTP server {self._where}")

    async def close(self) -> None:
        """Say QUIT on every idle connection; those in use are closed when their send ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(entry.client) for entry in idle))

    # -- internals

    async def _deliver(self, message: EmailMessage, recipient: str, started: float) -> SendResult:
        for attempt in (1, 2):
            try:
                client, reused = await self._checkout(fresh=attempt > 1)
            except Exception as exc:
                return self._failure(exc, started, sending=False)
            try:
                await client.send_message(
                    message, sender=self._envelope_from, recipients=[recipient]
                )
            except BaseException as exc:
                if isinstance(exc, _IN_STEP) and client.is_connected:
                    self._checkin(client)
                else:
                    self._drop(client, exc)
                if not isinstance(exc, Exception):
                    raise  # cancelled: the connection is closed, the slot freed
                if reused and attempt == 1 and isinstance(exc, aiosmtplib.SMTPServerDisconnected):
                    # A kept connection the server had already closed: try a fresh one once.
                    log.debug("SMTP connection to %s went stale; reconnecting", self._where)
                    continue
                return self._failure(exc, started, sending=True)
            self._checkin(client)
            return self._result(started, ok=True, status_code=250)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _checkout(self, *, fresh: bool = False) -> tuple[aiosmtplib.SMTP, bool]:
        """A connected client: a kept one when there is one (True), else a new one (False)."""
        while self._idle and not fresh:
            entry = self._idle.pop()  # most recently used first: the others may age out
            client = entry.client
            if not client.is_connected:
                self._drop(client)
                continue
            if time.monotonic() - entry.since > self.IDLE_CHECK_AFTER:
                try:
                    await client.noop(timeout=min(self._timeout, 10.0))
                except BaseException as exc:
                    self._drop(client, exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
            return client, True
        return await self._connect(), False

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password if s.username else None,
            use_tls=s.use_tls,
            start_tls=None if s.start_tls and not s.use_tls else False,
            tls_context=self._tls_context,
            timeout=self._timeout,
        )
        await client.connect()  # on failure it closes itself
        log.debug("connected to SMTP server %s", self._where)
        return client

    def _checkin(self, client: aiosmtplib.SMTP) -> None:
        if self._closed or not client.is_connected:
            self._drop(client)
        else:
            self._idle.append(_Idle(client, time.monotonic()))

    def _drop(self, client: aiosmtplib.SMTP, exc: BaseException | None = None) -> None:
        if exc is not None:
            log.debug("dropping SMTP connection to %s: %s", self._where, type(exc).__name__)
        client.close()

    async def _quit(self, client: aiosmtplib.SMTP) -> None:
        try:
            if client.is_connected:
                await client.quit(timeout=min(self._timeout, 5.0))
        except Exception:  # closing anyway
            pass
        finally:
            client.close()

    def _result(
        self,
        started: float,
        *,
        ok: bool = False,
        status_code: int | None = None,
        error: str | None = None,
        permanent: bool = False,
    ) -> SendResult:
        return SendResult(
            ok=ok,
            status_code=status_code,
            error=safe_error(error, self._settings.password) if error is not None else None,
            permanent=permanent,
            duration_ms=round((time.monotonic() - started) * 1000),
        )

    def _failure(self, exc: Exception, started: float, *, sending: bool) -> SendResult:
        """The ``SendResult`` for an aiosmtplib (or network) failure; see ``email_failures``."""
        failure = classify_failure(exc, self._where, sending=sending)
        return self._result(
            started, status_code=failure.code, error=failure.error, permanent=failure.permanent
        )
