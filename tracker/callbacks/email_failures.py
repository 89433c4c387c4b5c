"""What went wrong with an SMTP attempt, in words an operator can act on.

``classify_failure`` maps an aiosmtplib (or network, or TLS) exception to a
``Failure``: the SMTP reply code when there is one, a one-line message, and
whether a retry could ever succeed. Permanent are a 5xx refusal of the
recipient or the message, an invalid address, and a feature this message
needs that the server lacks; whatever a change of settings or a working
network can fix (authentication, the sender address, a timeout) is retried.
``safe_error`` makes that message fit to store: one line, bounded, and with
the SMTP password masked should a server have echoed it.
"""

from __future__ import annotations

import logging
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import quote

import aiosmtplib

from tracker.logsetup import MASK

log = logging.getLogger(__name__)

_MAX_ERROR = 300  # characters in a SendResult.error


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt, ready for a ``SendResult``."""

    error: str
    code: int | None = None  #: the SMTP reply code, when the server gave one
    permanent: bool = False  #: no retry can succeed


def classify_failure(exc: Exception, where: str, *, sending: bool) -> Failure:
    """The failure ``exc`` stands for; ``where`` is ``host:port``.

    ``sending`` tells a failure while sending this message (which may say
    something about the message) from one while connecting or logging in
    (which says something about the settings or the network).
    """
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return _recipients_refused(exc)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _refused(exc, where)
    error = _transport_error(exc, where)
    if error is not None:
        return Failure(error)
    return _other(exc, where, sending=sending)


def safe_error(text: str, password: str | None) -> str:
    """One short line, with the password masked should a server have echoed it."""
    text = " ".join(text.split())
    if password:
        for form in {password, quote(password, safe="")}:
            text = text.replace(form, MASK)
    if len(text) > _MAX_ERROR:
        text = text[: _MAX_ERROR - 1] + "…"
    return text


def _recipients_refused(exc: aiosmtplib.SMTPRecipientsRefused) -> Failure:
    first = exc.recipients[0] if exc.recipients else None
    if first is None:
        return Failure("recipient refused")
    return Failure(
        f"recipient refused: {first.code} {first.message}",
        code=first.code,
        permanent=first.code >= 500,
    )


def _refused(exc: aiosmtplib.SMTPResponseException, where: str) -> Failure:
    """A reply from the server; subclasses first, as they say more."""
    code = exc.code
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return Failure(
            f"SMTP authentication failed ({code} {exc.message}):"
            " check the user name and password of the SMTP URL",
            code=code,
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return Failure(f"recipient refused: {code} {exc.message}", code, permanent=code >= 500)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        # The sender address is a setting: fixing it helps, so retry.
        return Failure(f"sender {exc.sender} refused: {code} {exc.message}", code)
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return Failure(f"message refused: {code} {exc.message}", code, permanent=code >= 500)
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return Failure(f"SMTP server {where} refused the session: {code} {exc.message}", code)
    return Failure(f"SMTP error: {code} {exc.message}", code)


def _transport_error(exc: Exception, where: str) -> str | None:
    """The message for a timeout, a failed connection or TLS handshake; None for the rest."""
    if isinstance(exc, TimeoutError):  # SMTPTimeoutError and its kind
        return f"timed out talking to SMTP server {where}"
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLError):
            return f"TLS with SMTP server {where} failed: {_ssl_reason(cause)}"
        if isinstance(cause, OSError):
            return f"cannot connect to SMTP server {where}: {_os_reason(cause)}"
        return f"cannot connect to SMTP server {where}: {exc.message}"
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return f"SMTP server {where} closed the connection"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with SMTP server {where} failed: {_ssl_reason(exc)}"
    if isinstance(exc, OSError):
        return f"network error with SMTP server {where}: {_os_reason(exc)}"
    return None


def _other(exc: Exception, where: str, *, sending: bool) -> Failure:
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        # While sending: this message can never go (e.g. a non-ASCII address without
        # SMTPUTF8). While connecting: the settings ask for something the server lacks.
        return Failure(f"not supported by SMTP server {where}: {exc.message}", permanent=sending)
    if isinstance(exc, ValueError) and sending:
        return Failure(f"invalid address: {exc}", permanent=True)
    if isinstance(exc, aiosmtplib.SMTPException):
        return Failure(f"SMTP failure with {where}: {exc.message}")
    log.warning("unexpected %s while sending mail via %s", type(exc).__name__, where)
    return Failure(f"unexpected {type(exc).__name__}: {exc}")


def _ssl_reason(exc: ssl.SSLError) -> str:
    return getattr(exc, "verify_message", None) or exc.reason or str(exc)


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror or exc})"
    return str(exc) or type(exc).__name__
