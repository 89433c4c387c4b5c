"""Answers of the JSON API: every error is ``{"error": "..."}`` with its status."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web

#: how long a client may take to send a whole request body (the body limit bounds
#: its size; this bounds a client that sends a few bytes and then nothing)
BODY_SECONDS = 30.0


class ApiError(Exception):
    """Raised by a handler to answer ``{"error": message}`` with ``status`` (the
    errors middleware of ``tracker.service.app`` turns it into the answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_error(
    status: int, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


async def read_body(request: web.Request, timeout: float | None = None) -> bytes:
    """The request body, whole, within ``timeout`` seconds (BODY_SECONDS): 408 past
    it, so a client that stops sending cannot hold a connection and a handler forever."""
    timeout = BODY_SECONDS if timeout is None else timeout
    try:
        return await asyncio.wait_for(request.read(), timeout)
    except TimeoutError:
        raise ApiError(408, f"request body not received within {timeout:g} s") from None
