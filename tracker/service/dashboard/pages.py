"""The dashboard's pages and their live fragments: the overview, the predictions list,
one prediction (and its whole logs as text)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from tracker.domain import ID_PATTERN, PredictionDetail, Status, Tracking
from tracker.exceptions import InvalidInput, PredictionNotFound
from tracker.inputs import parse_labels
from tracker.records import mask_target
from tracker.service.dashboard import charts, views
from tracker.service.dashboard.overview import OverviewState
from tracker.service.dashboard.web import DASHBOARD, fragment, page
from tracker.store.dashboard import NO_STATUS, Cursor, PredictionFilter, PredictionPage
from tracker.timeparse import utcnow

#: rows of the list per page
PAGE_SIZE = 50
#: seconds between two refreshes of a live page
LIVE_SECONDS = {"overview": 5, "prediction": 3}
#: the longest status and model a filter takes (characters)
MAX_FILTER_CHARS = 200
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"^(\d{1,20})-(.+)$")
_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


# -- the overview ------------------------------------------------------------------------


async def overview(request: web.Request) -> web.Response:
    return page(request, "overview.html", **await _overview_context(request))


async def overview_fragment(request: web.Request) -> web.Response:
    return fragment(request, "_overview.html", **await _overview_context(request))


async def _overview_context(request: web.Request) -> dict[str, Any]:
    state = await request.app[DASHBOARD].overview.get()
    return {
        "state": state,
        "hourly": charts.hourly(state.hourly, state.read_at),
        "run_times": charts.run_times(state.run_times),
        "dead": [mask_target(row) for row in state.dead],
        "live_seconds": LIVE_SECONDS["overview"],
    }


# -- the list ----------------------------------------------------------------------------


async def predictions(request: web.Request) -> web.Response:
    dashboard = request.app[DASHBOARD]
    state = dashboard.overview.peek()
    form = {
        k: request.query.get(k, "").strip() for k in ("status", "tracking", "model", "label", "q")
    }
    try:
        flt = list_filter(request.query)
        after, before = _cursor(request.query.get("after")), _cursor(request.query.get("before"))
    except InvalidInput as exc:
        return page(
            request, "predictions.html", status=400, form=form, error=str(exc), **_empty(state)
        )
    found: PredictionPage = await asyncio.to_thread(
        dashboard.queries.page, flt, size=PAGE_SIZE, after=after, before=before
    )
    return page(
        request,
        "predictions.html",
        form=form,
        error=None,
        rows=found.rows,
        newer=cursor_text(found.newer),
        older=cursor_text(found.older),
        searched=found.searched,
        **_from_overview(state, flt),
    )


def _empty(state: OverviewState | None) -> dict[str, Any]:
    nothing: dict[str, Any] = {"rows": [], "newer": None, "older": None, "searched": None}
    return {**nothing, **_from_overview(state, None)}


def _from_overview(state: OverviewState | None, flt: PredictionFilter | None) -> dict[str, Any]:
    """What the list takes from the overview's last read (nothing before the first):
    "about N", the models and statuses its filters suggest."""
    known = [s.value for s in Status]
    if state is None:
        return {"about": None, "models": [], "statuses": [*known, NO_STATUS]}
    seen = sorted({s for s, _ in state.counts if s is not None and s not in known})
    return {
        "about": None if flt is None else state.about(flt),
        "models": state.models,
        "statuses": [*known, *seen[:20], NO_STATUS],
    }


def list_filter(query: Mapping[str, str]) -> PredictionFilter:
    """The list's filters from its query string; InvalidInput for a bad one."""
    status = query.get("status", "").strip()[:MAX_FILTER_CHARS]
    tracking = query.get("tracking", "").strip()
    if tracking and tracking not in {t.value for t in Tracking}:
        raise InvalidInput(
            f"unknown tracking state: choose from {', '.join(t.value for t in Tracking)}"
        )
    label = query.get("label", "").strip()
    labels = parse_labels([label]) if label else {}
    prefix = query.get("q", "").strip()
    if prefix and not _PREFIX.fullmatch(prefix):
        raise InvalidInput("an ID prefix is made of letters, digits, '_' and '-'")
    model = query.get("model", "").strip()
    return PredictionFilter(
        status=status or None,
        tracking=tracking or None,
        model=model[: MAX_FILTER_CHARS * 5] or None,
        labels=labels,
        id_prefix=prefix or None,
    )


def cursor_text(cursor: Cursor | None) -> str | None:
    """``MICROSECONDS-ID``: a place in the list, as a link carries it."""
    if cursor is None:
        return None
    micros = (cursor.registered_at - EPOCH) // timedelta(microseconds=1)
    return f"{micros}-{cursor.id}"


def _cursor(text: str | None) -> Cursor | None:
    if not text:
        return None
    match = _CURSOR.fullmatch(text)
    if match is None or not ID_PATTERN.fullmatch(match.group(2)):
        raise InvalidInput("this page link is damaged: start again from the newest predictions")
    return Cursor(EPOCH + timedelta(microseconds=int(match.group(1))), match.group(2))


# -- one prediction ----------------------------------------------------------------------


async def prediction(request: web.Request) -> web.Response:
    detail = await _detail(request)
    return page(request, "prediction.html", **_prediction_context(detail))


async def prediction_fragment(request: web.Request) -> web.Response:
    detail = await _detail(request)
    context = _prediction_context(detail)
    return fragment(request, "_prediction.html", more=context["live"], **context)


async def logs(request: web.Request) -> web.Response:
    """The whole logs as text (``tracker show --logs all``)."""
    detail = await _detail(request)
    return web.Response(text=views.full_logs(detail), content_type="text/plain", charset="utf-8")


async def _detail(request: web.Request) -> PredictionDetail:
    prediction_id = request.match_info["id"]
    if not ID_PATTERN.fullmatch(prediction_id):
        raise PredictionNotFound("no prediction has this ID: it is not a valid prediction ID")
    return await request.app[DASHBOARD].service.tracker.detail(prediction_id)


def _shown_target(kind: str, target: str) -> str:
    """A webhook URL masked (password, query values), an address as it is."""
    return str(mask_target({"kind": kind, "target": target})["target"])


def _prediction_context(detail: PredictionDetail) -> dict[str, Any]:
    now = utcnow()
    p = detail.prediction
    return {
        "p": p,
        "detail": detail,
        "live": views.active(detail),
        "live_seconds": LIVE_SECONDS["prediction"],
        "timeline": views.timeline_of(detail, now),
        "logs": views.logs_of(detail),
        "images": views.images(detail.artifacts),
        "stored": views.stored,
        "callbacks": [(c, _shown_target(c.kind, c.target)) for c in detail.callbacks],
        "deliveries": [(d, _shown_target(d.kind, d.target)) for d in detail.deliveries],
    }
