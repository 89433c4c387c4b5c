"""Email callbacks: the SMTP settings, the message for one delivery, and a pooled sender.

``parse_smtp_url`` turns ``smtp://user:pass@host:587`` or ``smtps://...`` into
``SmtpSettings``; ``render_email`` builds the message for one ``DeliveryJob``
(plain text with an HTML alternative); ``Mailer.send`` delivers it over a small
pool of reused SMTP connections and maps every outcome to a ``SendResult``.

The password never appears in a repr, an error, an exception or a log line.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aiosmtplib

from tracker.callbacks.base import DeliveryJob, SendResult
from tracker.exceptions import ConfigError
from tracker.logsetup import MASK
from tracker.timeparse import parse_timestamp

log = logging.getLogger(__name__)

SMTP_PORT = 25
SMTPS_PORT = 465
#: how many trailing log lines a message shows
LOG_TAIL_LINES = 20

_URL_HINT = "expected smtp://[user[:password]@]host[:port] or smtps://..."
_MAX_ERROR = 300  # characters in a SendResult.error
_MAX_FIELD = 500  # characters shown for a one-line field (model, status, a time)
_MAX_ITEM = 2048  # characters shown for one output item; longer URLs are not linked
_MAX_ITEMS = 100  # output list items shown
_MAX_BLOCK = 10_000  # characters shown for the error or a JSON output
_MAX_LOG_LINE = 1000  # characters shown per log line

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # keeps \t and \n
_MSGID_UNSAFE = re.compile(r"[^A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]")
_EVENT_HEADLINES = {
    "start": "started",
    "output": "produced output",
    "logs": "wrote new logs",
    "completed": "completed",
}


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


# --------------------------------------------------------------------------- rendering


def render_email(job: DeliveryJob, mail_from: str) -> EmailMessage:
    """The message for one delivery: plain text with an HTML alternative.

    Nothing in the payload can make this raise: it may be any text, any JSON,
    or a prediction with missing or odd fields. (A ``job.target`` or
    ``mail_from`` with line breaks is rejected by the email package with
    ``ValueError``; ``Mailer.send`` reports that as a permanent failure.)
    """
    prediction, note = _load_payload(job.payload)
    prediction_id = _one_line(job.prediction_id, 200) or _one_line(prediction.get("id"), 200)
    status = _one_line(prediction.get("status"), 100) or "unknown"
    event = _one_line(job.event, 100) or "unknown"

    msg = EmailMessage()
    msg["Subject"] = f"[tracker] {prediction_id or 'unknown'} {status}"
    msg["From"] = mail_from
    msg["To"] = job.target
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = _message_id(job)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Tracker-Event"] = event
    if prediction_id:
        msg["X-Tracker-Prediction"] = prediction_id

    try:
        view = _View.build(prediction, note, prediction_id, status, event)
        text, page = view.text(), view.html(msg["Subject"])
    except Exception:  # a bug here must not stop the delivery: send what is certain
        log.exception("rendering prediction %s failed; sending a minimal message", prediction_id)
        headline = f"Prediction {prediction_id or 'unknown'}: {event} ({status})"
        text = f"{headline}\n\nThe details could not be rendered.\n"
        page = f"<!DOCTYPE html><html><body><p>{html.escape(headline)}</p></body></html>\n"
    msg.set_content(text)
    msg.add_alternative(page, subtype="html")
    return msg


def _message_id(job: DeliveryJob) -> str:
    local = _MSGID_UNSAFE.sub("-", str(job.message_id)).strip(".")[:200]
    return f"<{local or f'delivery-{job.id}'}@tracker>"


def _load_payload(payload: object) -> tuple[dict[str, Any], str | None]:
    try:
        data = json.loads(payload)  # type: ignore[arg-type]
    except (TypeError, ValueError, RecursionError):
        return {}, "The payload is not valid JSON."
    if not isinstance(data, dict):
        return {}, "The payload is not a prediction object."
    return data, None


def _clean(text: str, limit: int) -> str:
    """Printable text: no lone surrogates, ANSI sequences or control characters except tab and
    newline; at most ``limit`` characters (plus a note of what was cut)."""
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = _CONTROL.sub("", _ANSI.sub("", text.replace("\r\n", "\n")))
    if cut > 0:
        text += f"… ({cut} more characters)"
    return text


def _one_line(value: object, limit: int = _MAX_FIELD) -> str:
    """A header-safe single line; '' for None. Non-strings are shown as JSON."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else _json(value, compact=True)
    # str.splitlines knows every character the email package treats as a line break
    return " ".join(" ".join(_clean(text, limit).splitlines()).split())


def _json(value: object, *, compact: bool = False) -> str:
    try:
        if compact:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return json.dumps(value, ensure_ascii=False, indent=2)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _is_link(text: str) -> bool:
    return (
        text.startswith(("http://", "https://"))
        and len(text) <= _MAX_ITEM
        and not any(ch.isspace() or ch in "<>\"'" for ch in text)
    )


def _log_tail(logs: object, count: int) -> tuple[list[str], int]:
    """The last ``count`` lines of the logs, and how many lines there are in all.

    A line holding carriage returns (a progress bar) shows what a terminal
    would: the text after the last one.
    """
    if not isinstance(logs, str):
        return [], 0
    text = logs.rstrip()
    if not text:
        return [], 0
    total = text.count("\n") + 1
    start = len(text)
    for _ in range(count):
        start = text.rfind("\n", 0, start)
        if start < 0:
            break
    lines = []
    for raw in text[start + 1 :].split("\n"):
        line = raw.rstrip("\r").rpartition("\r")[2]
        lines.append(_clean(line, _MAX_LOG_LINE).rstrip())
    return lines, total


@dataclass
class _Row:
    label: str
    value: str
    href: str | None = None


@dataclass
class _View:
    """What a message shows, computed once for both the text and the HTML part."""

    headline: str
    note: str | None
    rows: list[_Row]
    output_items: list[str]  # shown one per line, links where they are URLs
    output_block: str | None  # JSON text, when the output is not a string or a list
    error: str | None
    log_lines: list[str]
    log_total: int

    @classmethod
    def build(
        cls, p: dict[str, Any], note: str | None, prediction_id: str, status: str, event: str
    ) -> _View:
        name = prediction_id or "unknown"
        verb = _EVENT_HEADLINES.get(event)
        headline = f"Prediction {name} {verb}" if verb else f"Prediction {name}: {event}"
        if event == "completed":
            headline += f" ({status})"

        rows = [_Row("Event", event), _Row("Status", status)]
        for label, key in (("Model", "model"), ("Version", "version")):
            value = _one_line(p.get(key))
            if value:
                rows.append(_Row(label, value))

        moments: dict[str, datetime | None] = {}
        for label, key in (
            ("Created", "created_at"),
            ("Started", "started_at"),
            ("Completed", "completed_at"),
        ):
            raw = p.get(key)
            parsed = parse_timestamp(raw)
            moments[key] = parsed
            if parsed is not None:
                rows.append(_Row(label, parsed.isoformat(timespec="milliseconds")[:-6] + "Z"))
            elif raw is not None and _one_line(raw):
                rows.append(_Row(label, _one_line(raw, 100)))
        for label, first, last in (
            ("Queued", "created_at", "started_at"),
            ("Ran", "started_at", "completed_at"),
        ):
            begin, end = moments[first], moments[last]
            if begin is not None and end is not None:
                rows.append(_Row(label, f"{(end - begin).total_seconds():.1f} s"))

        metrics = p.get("metrics")
        predict_time = metrics.get("predict_time") if isinstance(metrics, dict) else None
        if isinstance(predict_time, int | float) and not isinstance(predict_time, bool):
            rows.append(_Row("Predict time", f"{predict_time} s"))
        elif predict_time is not None and _one_line(predict_time):
            rows.append(_Row("Predict time", _one_line(predict_time, 100)))

        urls = p.get("urls")
        web = urls.get("web") if isinstance(urls, dict) else None
        if isinstance(web, str) and _is_link(web):
            rows.append(_Row("Web", _clean(web, _MAX_ITEM), href=web))

        items: list[str] = []
        block: str | None = None
        output = p.get("output")
        if isinstance(output, str):
            items.append(_clean(output, _MAX_ITEM))
        elif isinstance(output, list):
            for item in output[:_MAX_ITEMS]:
                text = item if isinstance(item, str) else _json(item, compact=True)
                items.append(_one_line(text, _MAX_ITEM))
            if len(output) > _MAX_ITEMS:
                items.append(f"… and {len(output) - _MAX_ITEMS} more")
            if not output:
                block = "[]"
        elif output is not None:
            block = _clean(_json(output), _MAX_BLOCK)

        error_value = p.get("error")
        error: str | None = None
        if error_value is not None:
            raw_error = error_value if isinstance(error_value, str) else _json(error_value)
            error = _clean(raw_error, _MAX_BLOCK).strip() or None

        log_lines, log_total = _log_tail(p.get("logs"), LOG_TAIL_LINES)
        return cls(headline, note, rows, items, block, error, log_lines, log_total)

    def _log_title(self) -> str:
        if self.log_total > len(self.log_lines):
            return f"Logs (last {len(self.log_lines)} of {self.log_total} lines)"
        return "Logs"

    def text(self) -> str:
        out = [self.headline, ""]
        if self.note:
            out += [self.note, ""]
        width = max(len(r.label) for r in self.rows) + 2
        out += [f"{(r.label + ':'):<{width}}{r.value}" for r in self.rows]
        out += ["", "Output:"]
        if self.output_items:
            out += [f"  {item}" for item in self.output_items]
        elif self.output_block is not None:
            out += [f"  {line}" for line in self.output_block.split("\n")]
        else:
            out.append("  (none)")
        if self.error:
            out += ["", "Error:"] + [f"  {line}" for line in self.error.split("\n")]
        if self.log_lines:
            out += ["", f"{self._log_title()}:"] + [f"  {line}" for line in self.log_lines]
        out += ["", "-- ", "Sent by tracker."]
        return "\n".join(out) + "\n"

    def html(self, title: str) -> str:
        e = html.escape
        out = [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8">',
            f"<title>{e(title)}</title></head>",
            '<body style="font-family: sans-serif">',
            f"<h2>{e(self.headline)}</h2>",
        ]
        if self.note:
            out.append(f"<p><em>{e(self.note)}</em></p>")
        out.append("<table>")
        for r in self.rows:
            value = f'<a href="{e(r.href)}">{e(r.value)}</a>' if r.href else e(r.value)
            out.append(f'<tr><th align="left">{e(r.label)}</th><td>{value}</td></tr>')
        out += ["</table>", "<h3>Output</h3>"]
        if self.output_items:
            out.append("<ul>")
            for item in self.output_items:
                shown = f'<a href="{e(item)}">{e(item)}</a>' if _is_link(item) else e(item)
                out.append(f"<li>{shown}</li>")
            out.append("</ul>")
        elif self.output_block is not None:
            out.append(f"<pre>{e(self.output_block)}</pre>")
        else:
            out.append("<p>(none)</p>")
        if self.error:
            out += ["<h3>Error</h3>", f"<pre>{e(self.error)}</pre>"]
        if self.log_lines:
            out += [
                f"<h3>{e(self._log_title())}</h3>",
                f"<pre>{e(chr(10).join(self.log_lines))}</pre>",
            ]
        out += ["<hr><p><small>Sent by tracker.</small></p>", "</body></html>"]
        return "\n".join(out) + "\n"


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
            error=self._safe(error) if error is not None else None,
            permanent=permanent,
            duration_ms=round((time.monotonic() - started) * 1000),
        )

    def _safe(self, text: str) -> str:
        """One short line, with the password masked should a server have echoed it."""
        text = " ".join(text.split())
        password = self._settings.password
        if password:
            for form in {password, quote(password, safe="")}:
                text = text.replace(form, MASK)
        if len(text) > _MAX_ERROR:
            text = text[: _MAX_ERROR - 1] + "…"
        return text

    def _failure(self, exc: Exception, started: float, *, sending: bool) -> SendResult:
        """Map an aiosmtplib (or network) failure to a SendResult."""
        code: int | None = None
        permanent = False
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            first = exc.recipients[0] if exc.recipients else None
            if first is not None:
                code = first.code
                error = f"recipient refused: {code} {first.message}"
            else:
                error = "recipient refused"
            permanent = code is not None and code >= 500
        elif isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            code = exc.code
            error = (
                f"SMTP authentication failed ({code} {exc.message}):"
                " check the user name and password of the SMTP URL"
            )
        elif isinstance(exc, aiosmtplib.SMTPRecipientRefused):
            code = exc.code
            error = f"recipient refused: {code} {exc.message}"
            permanent = code >= 500
        elif isinstance(exc, aiosmtplib.SMTPSenderRefused):
            # The sender address is a setting: fixing it helps, so retry.
            code = exc.code
            error = f"sender {exc.sender} refused: {code} {exc.message}"
        elif isinstance(exc, aiosmtplib.SMTPDataError):
            code = exc.code
            error = f"message refused: {code} {exc.message}"
            permanent = code >= 500
        elif isinstance(exc, aiosmtplib.SMTPConnectResponseError):
            code = exc.code
            error = f"SMTP server {self._where} refused the session: {code} {exc.message}"
        elif isinstance(exc, aiosmtplib.SMTPResponseException):
            code = exc.code
            error = f"SMTP error: {code} {exc.message}"
        elif isinstance(exc, TimeoutError):  # SMTPTimeoutError and its kind
            error = f"timed out talking to SMTP server {self._where}"
        elif isinstance(exc, aiosmtplib.SMTPConnectError):
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError):
                error = f"TLS with SMTP server {self._where} failed: {_ssl_reason(cause)}"
            elif isinstance(cause, OSError):
                error = f"cannot connect to SMTP server {self._where}: {_os_reason(cause)}"
            else:
                error = f"cannot connect to SMTP server {self._where}: {exc.message}"
        elif isinstance(exc, aiosmtplib.SMTPServerDisconnected):
            error = f"SMTP server {self._where} closed the connection"
        elif isinstance(exc, ssl.SSLError):
            error = f"TLS with SMTP server {self._where} failed: {_ssl_reason(exc)}"
        elif isinstance(exc, OSError):
            error = f"network error with SMTP server {self._where}: {_os_reason(exc)}"
        elif isinstance(exc, aiosmtplib.SMTPNotSupported):
            # While sending: this message can never go (e.g. a non-ASCII address without
            # SMTPUTF8). While connecting: the settings ask for something the server lacks.
            error = f"not supported by SMTP server {self._where}: {exc.message}"
            permanent = sending
        elif isinstance(exc, ValueError) and sending:
            error = f"invalid address: {exc}"
            permanent = True
        elif isinstance(exc, aiosmtplib.SMTPException):
            error = f"SMTP failure with {self._where}: {exc.message}"
        else:
            log.warning("unexpected %s while sending mail via %s", type(exc).__name__, self._where)
            error = f"unexpected {type(exc).__name__}: {exc}"
        return SendResult(
            ok=False,
            status_code=code,
            error=self._safe(error),
            permanent=permanent,
            duration_ms=round((time.monotonic() - started) * 1000),
        )


def _ssl_reason(exc: ssl.SSLError) -> str:
    return getattr(exc, "verify_message", None) or exc.reason or str(exc)


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror or exc})"
    return str(exc) or type(exc).__name__
