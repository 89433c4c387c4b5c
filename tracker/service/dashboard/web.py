"""What every dashboard request goes through: the middleware (the session read,
the login check, errors as HTML pages, the session cookie written back) and the
security headers, and the helpers handlers answer with (``page``, ``fragment``).

Dashboard requests are those of a dashboard route (named ``dashboard.…``) and, for a
path no route matched, those below the dashboard's paths; everything else (``/api/``,
``/healthz``, ``/metrics``, ``/webhooks/``, unknown paths) passes through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from tracker.archive.storage import ArchiveStorage, StorageError
from tracker.exceptions import InvalidInput, PredictionNotFound, SchemaMissing, StoreUnavailable
from tracker.service.context import Service
from tracker.service.dashboard.auth import COOKIE, Session, Sessions, without_flash
from tracker.service.dashboard.overview import Cached, OverviewState
from tracker.service.dashboard.static import StaticFiles
from tracker.service.errors import ApiError
from tracker.store.dashboard import DashboardQueries
from tracker.timeparse import utcnow

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: every dashboard response has these
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
#: route names start with this
ROUTE_PREFIX = "dashboard."
#: routes open without a login (the login form, the stylesheet and script)
PUBLIC_ROUTES = frozenset({"dashboard.login", "dashboard.login_post", "dashboard.static"})
#: routes that answer pieces of pages or files: refused (401), never sent to the login
NOT_PAGES = ("dashboard.fragment", "dashboard.file", "dashboard.logs")
#: path prefixes that are the dashboard's even when no route matched them
PATH_PREFIXES = ("/predictions/", "/files/", "/fragments/", "/static/")
PATHS = frozenset({"/", "/predictions", "/login", "/logout"})
#: where a request keeps its session (absent: the request came without one)
SESSION_KEY = web.RequestKey("dashboard_session", Session)


@dataclass
class Dashboard:
    """The dashboard's parts, one per application (``request.app[DASHBOARD]``)."""

    service: Service
    templates: jinja2.Environment
    sessions: Sessions
    static: StaticFiles
    overview: Cached[OverviewState] = field(init=False)
    storage: ArchiveStorage | None = None
    _queries: DashboardQueries | None = None

    @property
    def queries(self) -> DashboardQueries:
        """The dashboard's reads, on the engine of the service's store."""
        if self._queries is None:
            self._queries = DashboardQueries(self.service.store.engine)
        return self._queries


DASHBOARD = web.AppKey("dashboard", Dashboard)


def is_dashboard(request: web.Request) -> bool:
    route = request.match_info.route
    name = route.name if route is not None else None
    if name is not None:
        return name.startswith(ROUTE_PREFIX)
    path = request.path
    return path in PATHS or path.startswith(PATH_PREFIXES)


def route_name(request: web.Request) -> str:
    return request.match_info.route.name or ""


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Dashboard requests: session and login checked, errors as HTML pages, the session
    cookie written back when it changed. Other requests pass through."""
    dashboard = request.app.get(DASHBOARD)
    if dashboard is None or not is_dashboard(request):
        return await handler(request)
    session = dashboard.sessions.read(request.cookies.get(COOKIE))
    if session is not None:
        request[SESSION_KEY] = session
    try:
        response = _refused(request, dashboard, session) or await handler(request)
    except Exception as exc:
        response = error_response(request, exc)
    current = request.get(SESSION_KEY)
    if current is not None and current.dirty and not response.prepared:
        dashboard.sessions.set_cookie(response, current, secure=is_https(request))
    return response


def _refused(
    request: web.Request, dashboard: Dashboard, session: Session | None
) -> web.StreamResponse | None:
    """The answer to a request that needs a login it does not have, else None."""
    name = route_name(request)
    if name in PUBLIC_ROUTES or authenticated(request, dashboard, session):
        return None
    if request.method == "GET" and name and not name.startswith(NOT_PAGES):
        return redirect(f"/login?{urlencode({'next': request.path_qs})}")
    return message_response(request, 401, "Log in first", "This needs a login.", login=True)


def authenticated(request: web.Request, dashboard: Dashboard, session: Session | None) -> bool:
    if dashboard.sessions.open or (session is not None and session.authenticated):
        return True
    header = request.headers.get("Authorization")
    return header is not None and dashboard.sessions.bearer_matches(header)


def is_https(request: web.Request) -> bool:
    """Whether the browser reached us over https (directly, or through a proxy that
    says so): the session cookie is then ``Secure``."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the security headers on every dashboard response
    (streamed files included), and no caching unless a route chose otherwise."""
    if DASHBOARD not in request.app or not is_dashboard(request):
        return
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", "no-store")


# -- answering ---------------------------------------------------------------------------


def session_of(request: web.Request) -> Session:
    """The request's session, a new one when it had none (its cookie is then set)."""
    session = request.get(SESSION_KEY)
    if session is None:
        dashboard = request.app[DASHBOARD]
        header = request.headers.get("Authorization")
        bearer = header is not None and dashboard.sessions.bearer_matches(header)
        session = dashboard.sessions.new(authenticated=bearer)
        request[SESSION_KEY] = session
    return session


def set_session(request: web.Request, session: Session) -> None:
    request[SESSION_KEY] = replace(session, dirty=True)


def render(request: web.Request, template: str, **context: Any) -> str:
    dashboard = request.app[DASHBOARD]
    session = session_of(request)
    values = {
        "csrf": dashboard.sessions.csrf_token(session),
        "open": dashboard.sessions.open,
        "logged_in": session.authenticated and not dashboard.sessions.open,
        "static": dashboard.static.urls,
        "now": utcnow(),
        "flash": None,
        "section": "",
        **context,
    }
    return dashboard.templates.get_template(template).render(**values)


def page(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    """A whole page; it shows (and so uses up) the session's flash message."""
    session = session_of(request)
    if session.flash is not None:
        context.setdefault("flash", session.flash)
        request[SESSION_KEY] = without_flash(session)
    text = render(request, template, **context)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def fragment(
    request: web.Request, template: str, *, more: bool = True, **context: Any
) -> web.Response:
    """A piece of a page for the live refresh; ``X-Live: stop`` once it stops changing."""
    text = render(request, template, **context)
    response = web.Response(text=text, content_type="text/html", charset="utf-8")
    response.headers["X-Live"] = "continue" if more else "stop"
    return response


def redirect(location: str) -> web.Response:
    """303 See Other: after a POST the browser GETs ``location`` (a local path)."""
    return web.Response(status=303, headers={"Location": location})


def message_response(
    request: web.Request, status: int, title: str, message: str, *, login: bool = False
) -> web.Response:
    try:
        return page(
            request, "message.html", status=status, title=title, message=message, login=login
        )
    except Exception:  # a page that cannot be drawn still answers
        log.exception("dashboard: the %d page could not be drawn", status)
        return web.Response(text=f"{title}: {message}", status=status, content_type="text/plain")


# -- errors ------------------------------------------------------------------------------


def error_response(request: web.Request, exc: Exception) -> web.StreamResponse:
    """An exception as a page: its status and words, never a traceback."""
    if isinstance(exc, web.HTTPException) and exc.status < 400:
        return web.Response(status=exc.status, headers=exc.headers)
    status, title, message = _error_words(request, exc)
    response = message_response(request, status, title, message)
    if isinstance(exc, web.HTTPException) and "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def _error_words(request: web.Request, exc: Exception) -> tuple[int, str, str]:
    if isinstance(exc, PredictionNotFound):
        return 404, "Not found", str(exc)
    if isinstance(exc, InvalidInput):
        return 400, "Bad request", str(exc)
    if isinstance(exc, ApiError):
        return exc.status, _title(exc.status), exc.message
    if isinstance(exc, web.HTTPException):
        return exc.status, _title(exc.status), _reason(exc)
    if isinstance(exc, StoreUnavailable | SchemaMissing):
        log.error("answering %s %s: %s", request.method, _canonical(request), exc)
        return 503, "Database unavailable", str(exc)
    if isinstance(exc, StorageError):
        log.error("answering %s %s: %s", request.method, _canonical(request), exc)
        return 503, "Archive unavailable", str(exc)
    log.exception("internal error answering %s %s", request.method, _canonical(request))
    return 500, "Internal error", "Something went wrong; the service's log says what."


def _reason(exc: web.HTTPException) -> str:
    """What an aiohttp error says: the text a handler gave it, else its reason."""
    text = exc.text or ""
    if text and not text.startswith(f"{exc.status}:"):
        return text
    return (exc.reason or "error").capitalize() + "."


def _title(status: int) -> str:
    return {
        400: "Bad request",
        401: "Log in first",
        403: "Refused",
        404: "Not found",
        405: "Method not allowed",
        413: "Too large",
    }.get(status, "Error")


def _canonical(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(no route)"
