"""What aiohttp logs about requests it could not even parse.

A request line or header past aiohttp's limits (8190 bytes), or bytes that are not
HTTP, are answered by aiohttp itself before any middleware runs, and logged on
``aiohttp.server`` at ERROR with a traceback: anyone who can reach the port could
fill the log with tracebacks. Such a request is the client's mistake, not ours: it
becomes one INFO line, cut short. Errors in our own handlers never reach this
logger (the errors middleware answers and logs them).
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

#: longest description of a bad request kept in the log (aiohttp quotes the bytes)
MAX_DESCRIPTION = 200

SERVER_LOGGER = "aiohttp.server"


class BadRequestsAreOneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            description = f"{type(exc).__name__}: {exc}"
            if len(description) > MAX_DESCRIPTION:
                description = description[:MAX_DESCRIPTION] + "…"
            record.args = (record.getMessage(), description)
            record.msg = "%s: %s"
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_bad_requests() -> None:
    """Install the filter once (serving several apps in one process is fine)."""
    server = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, BadRequestsAreOneLine) for f in server.filters):
        server.addFilter(BadRequestsAreOneLine())
