"""The SQLite file under a running service: refused once it is deleted or replaced.

SQLite keeps writing to the file it opened, so after an ``rm`` (or a restore that
moves another file into place) registrations would be acknowledged into an inode
nobody can open again, and ``/healthz`` would still read the old file and say ok.
The daemon stops in that case (tracker.poll.daemon); the service answers every
request 503 until it is restarted on a real file.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from tracker.poll.singleton import SqliteFileGuard
from tracker.service.errors import ApiError
from tracker.store.store import Store

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: what a client is told (the path and the details go to the log, once)
GONE = "database unavailable: the SQLite database file was deleted or replaced"


def sqlite_file_check(store: Store) -> Middleware | None:
    """The middleware for a SQLite store (None for other engines)."""
    guard = SqliteFileGuard.for_store(store)
    if guard is None:
        return None
    guard.remember()
    logged = False

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal logged
        problem = guard.problem()  # one stat(2)
        if problem is not None:
            if not logged:
                log.error("%s: every request is answered 503 until a restart", problem)
                logged = True
            raise ApiError(503, GONE)
        return await handler(request)

    return check
