"""Answers of the JSON API: every error is ``{"error": "..."}`` with its status."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web


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
