"""The HTTP application of `tracker serve` (aiohttp's server).

``build_app(service)`` returns the ``web.Application``: the middlewares every route
gets, then the routes of each module in ROUTE_MODULES. The middlewares, outermost
first:

- errors as JSON: every error is ``{"error": "..."}`` with its status, never a
  traceback or an HTML page (the dashboard's own middleware, next, answers its
  errors as pages): ``ApiError`` and aiohttp's HTTP errors keep theirs,
  InvalidInput (what the command line refuses, in its words) is 400,
  PredictionNotFound 404, an unreachable or unmigrated database 503; anything
  else is logged and answered ``500 {"error": "internal error"}``;
- the dashboard's (``tracker.service.dashboard``): on its routes and paths only, the
  login check and errors as HTML pages; every other request passes through it;
- on SQLite, the database file check: once the file was deleted or replaced,
  every request is ``503`` (``tracker.service.filecheck``);
- the body limit: a body over MAX_BODY_BYTES is ``413`` (a declared length is
  refused before anything is read; a chunked body is not read past the limit);
- the bearer token: with TRACKER_SERVE_TOKEN set, every route under ``/api/``
  needs ``Authorization: Bearer TOKEN`` (compared in constant time), else ``401``.

Adding a route module: write ``tracker/service/NAME.py`` with a function
``add_routes(app: web.Application, service: Service) -> None`` that adds its routes
(``app.router.add_post(path, handler)``). Handlers are small ``async def
handler(request) -> web.Response``; they raise ``errors.ApiError(status, message)``
for a JSON error and find what they need in ``service`` or ``request.app[SERVICE]``
(``tracker.service.context``). Then add ``NAME.add_routes`` to ROUTE_MODULES below:
one line. Routes under ``/api/`` get the token check; others are public unless they
check something themselves (the push receiver checks signatures).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from tracker.exceptions import InvalidInput, PredictionNotFound, SchemaMissing, StoreUnavailable
from tracker.service import api, dashboard, health, metrics, push
from tracker.service.context import SERVICE, Service
from tracker.service.errors import ApiError, json_error
from tracker.service.filecheck import sqlite_file_check

log = logging.getLogger(__name__)

#: the largest request body read (bytes); a larger one is 413
MAX_BODY_BYTES = 2**20  # 1 MiB
#: routes below this prefix need the bearer token (when one is set)
API_PREFIX = "/api/"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


#: every route module's ``add_routes``, in the order their routes are added
ROUTE_MODULES: tuple[Callable[[web.Application, Service], None], ...] = (
    health.add_routes,
    metrics.add_routes,
    api.add_routes,
    push.add_routes,
    dashboard.add_routes,
)


def build_app(service: Service) -> web.Application:
    """The application: the middlewares (errors, body limit, token), then every route."""
    middlewares = [
        json_errors,
        dashboard.middleware,
        body_limit,
        bearer_token(service.settings.serve_token),
    ]
    file_check = sqlite_file_check(service.store)
    if file_check is not None:
        middlewares.insert(2, file_check)
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    app[SERVICE] = service
    for add_routes in ROUTE_MODULES:
        add_routes(app, service)
    return app


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as ``{"error": ...}``: aiohttp's HTTP errors keep their status (and
    headers such as Allow), anything unexpected is logged and answered 500."""
    try:
        return await handler(request)
    except ApiError as exc:
        return json_error(exc.status, exc.message)
    except InvalidInput as exc:  # what `tracker add` and the others refuse, same words
        return json_error(400, str(exc))
    except PredictionNotFound as exc:
        return json_error(404, str(exc))
    except (StoreUnavailable, SchemaMissing) as exc:  # says why; may pass: 503
        log.error("answering %s %s: %s", request.method, _route(request), exc)
        return json_error(503, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are not errors
        return json_error(exc.status, _reason(exc), headers=_kept_headers(exc))
    except Exception:
        log.exception("internal error answering %s %s", request.method, _route(request))
        return json_error(500, "internal error")


def _route(request: web.Request) -> str:
    """The route a request matched, as declared (``/api/predictions/{id}``): logs name
    it, never the path as sent (it could hold anything, a token by mistake)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(no route)"


def _reason(exc: web.HTTPException) -> str:
    """What an aiohttp error says: its text when a route set one, else its reason."""
    text = exc.text or ""
    if exc.status == 413:
        return f"request body larger than {MAX_BODY_BYTES} bytes"
    if text and not text.startswith(f"{exc.status}:"):
        return text
    return (exc.reason or "error").lower()


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    return {
        name: exc.headers[name] for name in ("Allow", "WWW-Authenticate") if name in exc.headers
    }


@web.middleware
async def body_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A declared body over the limit is refused before any of it is read; others are
    cut off by ``client_max_size`` as they are read (aiohttp raises 413)."""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=length)
    return await handler(request)


def bearer_token(token: str | None) -> Middleware:
    """The middleware that asks for ``Authorization: Bearer TOKEN`` below API_PREFIX;
    without a token (the service then listens on loopback only) it lets all through."""
    expected = None if token is None else f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is not None and _needs_token(request.path):
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, expected):
                return json_error(
                    401,
                    "missing or wrong bearer token (Authorization: Bearer TOKEN)",
                    headers={"WWW-Authenticate": 'Bearer realm="tracker"'},
                )
        return await handler(request)

    return check


def _needs_token(path: str) -> bool:
    return path.startswith(API_PREFIX) or path == API_PREFIX.rstrip("/")
