"""Logging to stderr, as readable lines or JSON, with secrets masked.

A record's ``extra`` fields (``log.info("...", extra={"prediction_id": pid})``)
are fields of its JSON object beside ``msg``, so a log pipeline can filter on them
without parsing the text; the text format shows the message alone. Field names
the daemon uses: ``prediction_id``, ``from_status``, ``to_status``, ``event``,
``kind`` (``upstream``, ``webhook``, ``email``), ``endpoint`` (masked), ``error``,
``failures``, ``given_up``, ``status_code``, ``duration_ms``, ``retry_in_s``,
``interval_s``, ``duration_s``, and the summary's counts.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from tracker.text.display import MASK, escape_line, escape_text, json_text

__all__ = [
    "LOG_LEVELS",
    "MASK",
    "JsonFormatter",
    "RedactSecrets",
    "TextFormatter",
    "configure_logging",
    "extra_fields",
]

#: the names --log-level takes, and their levels
LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

#: attributes every LogRecord has: anything else on a record came from ``extra``
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
#: JSON keys the formatter writes itself; an extra field of the same name is prefixed
_OWN_KEYS = frozenset({"ts", "level", "logger", "msg", "exc"})


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record was given through ``extra``."""
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}


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
        for name, value in extra_fields(record).items():
            if isinstance(value, str):
                setattr(record, name, self._redact(value))
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
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in extra_fields(record).items():
            entry[f"extra_{name}" if name in _OWN_KEYS else name] = _json_value(value)
        trace = _exception_text(self, record)
        if trace:
            entry["exc"] = trace
        return json_text(entry)


def _json_value(value: Any) -> Any:
    """``value`` if JSON holds it as it is, else its text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    if record.exc_text:
        return record.exc_text
    if record.exc_info:
        return formatter.formatException(record.exc_info)
    return None


def configure_logging(
    *, fmt: str = "text", level: int | str = logging.INFO, secrets: Iterable[str] = ()
) -> None:
    """Log to stderr at ``level`` (a level or one of ``LOG_LEVELS``' names)."""
    if isinstance(level, str):
        level = LOG_LEVELS[level]
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
