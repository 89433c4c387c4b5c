"""The dashboard's forms: logging in and out, cancelling a prediction upstream
(``AsyncTracker.cancel``: its message is what the page says), retrying a dead
delivery (``AsyncTracker.retry_deliveries``). Every POST carries the session's CSRF token (a refused
one is 403 and does nothing); each answers with a redirect to a page that shows
what happened (a flash message in the session)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from tracker.domain import ID_PATTERN, CancelOutcome
from tracker.exceptions import PredictionNotFound, TrackerError
from tracker.service.dashboard.auth import with_flash
from tracker.service.dashboard.web import (
    DASHBOARD,
    SESSION_KEY,
    message_response,
    page,
    redirect,
    session_of,
    set_session,
)
from tracker.service.errors import BODY_SECONDS

#: seconds a wrong token waits before its answer (a guesser gets fewer tries)
FAILED_LOGIN_DELAY = 0.5
#: where ``next`` may send a browser after the login: a path of this site only
_LOCAL_PATH = re.compile(r"^/(?![/\\])[^\s\\]*$")
_DELIVERY_ID = re.compile(r"^[0-9]{1,18}$")


class Refused(Exception):
    """A form without the session's CSRF token."""


async def checked_form(request: web.Request) -> MultiDictProxy[Any]:
    """The form, once its CSRF token is the session's; else ``Refused``."""
    try:
        form = await asyncio.wait_for(request.post(), BODY_SECONDS)
    except TimeoutError:
        raise web.HTTPRequestTimeout() from None
    given = form.get("csrf")
    session = request.get(SESSION_KEY)
    if not isinstance(given, str) or not request.app[DASHBOARD].sessions.csrf_matches(
        session, given
    ):
        raise Refused()
    return form


def refused(request: web.Request) -> web.Response:
    return message_response(
        request,
        403,
        "Refused",
        "This form was refused: its security token is missing or from another session."
        " Reload the page and try again.",
    )


def local_path(value: Any) -> str:
    """``value`` when it is a path of this site, else ``/``."""
    if isinstance(value, str) and len(value) < 2000 and _LOCAL_PATH.fullmatch(value):
        return value
    return "/"


# -- login -------------------------------------------------------------------------------


async def login_form(request: web.Request) -> web.Response:
    if request.app[DASHBOARD].sessions.open:
        return redirect("/")
    return page(request, "login.html", next=local_path(request.query.get("next")), error=None)


async def login(request: web.Request) -> web.StreamResponse:
    sessions = request.app[DASHBOARD].sessions
    try:
        form = await checked_form(request)
    except Refused:
        return refused(request)
    target = local_path(form.get("next"))
    if sessions.open:
        return redirect(target)
    token = form.get("token")
    if isinstance(token, str) and sessions.token_matches(token):
        set_session(request, sessions.new(authenticated=True))  # a new ID: never the old one
        return redirect(target)
    await asyncio.sleep(FAILED_LOGIN_DELAY)
    error = "That is not the token this service was started with."
    return page(request, "login.html", status=401, next=target, error=error)


async def logout(request: web.Request) -> web.StreamResponse:
    sessions = request.app[DASHBOARD].sessions
    try:
        await checked_form(request)
    except Refused:
        return refused(request)
    set_session(request, sessions.new())
    return redirect("/" if sessions.open else "/login")


# -- cancel and retry --------------------------------------------------------------------


async def cancel(request: web.Request) -> web.StreamResponse:
    try:
        await checked_form(request)
    except Refused:
        return refused(request)
    prediction_id = _prediction_id(request)
    try:
        result = await request.app[DASHBOARD].service.tracker.cancel(prediction_id)
    except TrackerError as exc:  # no API key, say: nothing was sent
        return _back(request, prediction_id, "error", f"Cancel failed: {exc}")
    if result.outcome == CancelOutcome.NOT_REGISTERED:
        raise PredictionNotFound(result.message)
    return _back(request, prediction_id, "ok" if result.ok else "error", result.message)


async def retry(request: web.Request) -> web.StreamResponse:
    try:
        await checked_form(request)
    except Refused:
        return refused(request)
    prediction_id = _prediction_id(request)
    text = request.match_info["delivery"]
    if not _DELIVERY_ID.fullmatch(text):
        raise web.HTTPNotFound()
    delivery = int(text)
    tracker = request.app[DASHBOARD].service.tracker
    await tracker.get(prediction_id)  # PredictionNotFound: 404
    retried = await tracker.retry_deliveries([delivery], prediction_id=prediction_id)
    if retried:
        words = f"Delivery {delivery} is queued again, with the whole retry schedule."
        return _back(request, prediction_id, "ok", words)
    words = f"Delivery {delivery} of this prediction is not dead: nothing to retry."
    return _back(request, prediction_id, "error", words)


def _prediction_id(request: web.Request) -> str:
    prediction_id = request.match_info["id"]
    if not ID_PATTERN.fullmatch(prediction_id):
        raise PredictionNotFound("no prediction has this ID: it is not a valid prediction ID")
    return prediction_id


def _back(request: web.Request, prediction_id: str, kind: str, text: str) -> web.Response:
    set_session(request, with_flash(session_of(request), kind, text))
    return redirect(f"/predictions/{prediction_id}")
