"""Logging to stderr, as readable lines or JSON, with secrets masked."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

from tracker.text.display import MASK, escape_line, escape_text, json_text

__all__ = ["MASK", "JsonFormatter", "RedactSecrets", "TextFormatter", "configure_logging"]


class RedactSecrets(logging.Filter):
    """Replaces every known secret in a record's final message, whatever put it there."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        record.msg, record.args = self._redact(record.getMessage()), None
        if record.exc_info:
            # Tracebacks can quote secrets too: render them here, masked.
            record.exc_text = self._redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        # One record, one line: upstream text in a message cannot forge another line,
        # move the cursor or clear the screen. A traceback keeps its own newlines.
        message = escape_line(record.getMessage())
        line = f"{stamp}Z {record.levelname:<7} {record.name}: {message}"
        trace = _exception_text(self, record)
        return f"{line}\n{escape_text(trace)}" if trace else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        trace = _exception_text(self, record)
        if trace:
            entry["exc"] = trace
        return json_text(entry)


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    if record.exc_text:
        return record.exc_text
    if record.exc_info:
        return formatter.formatException(record.exc_info)
    return None


def configure_logging(
    *, fmt: str = "text", level: int = logging.INFO, secrets: Iterable[str] = ()
) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Library chatter (one line per request) drowns the tracker's own lines.
    for noisy in ("httpx", "httpcore", "aiohttp.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # APScheduler warns on every skipped tick when a tick runs long; that is expected.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
