"""The JSON API under ``/api/``: thin handlers that read the request, call the
application layer (``tracker.asyncapi.AsyncTracker``, as the command line calls
``Tracker``) and answer what the command line would print as JSON.

- ``POST /api/predictions``: one registration ``{"id", "webhooks", "emails",
  "events", "labels", "deadline"}`` or a list of them; 201 when at least one ID is
  new, 200 when all were known, with the counts. What `tracker add` refuses is 400
  with its message (for a list, prefixed with the entry's position: ``[3]: ...``);
  nothing of a refused request is written. ``deadline`` takes what `tracker add
  --deadline` takes (``"30m"``, a number of seconds, ``"none"``).
- ``GET /api/predictions/{id}``: what `tracker show ID --format json` prints; 404.
- ``GET /api/predictions?status=&active=&model=&label=&since=&until=&limit=``:
  ``{"predictions": [...]}`` as `tracker list --format json` prints them, newest
  first, the newest 50 unless ``limit`` (0: all), streamed as they are read.
- ``POST /api/predictions/{id}/cancel``: as `tracker cancel ID` (the body, if any, is
  not read): 200 when the upstream accepted the request, 404 when the ID is not
  registered, 409 when the prediction has already ended (nothing is sent), 502 when
  the upstream refused the request or could not be reached, 503 without an API key
  for an upstream off this machine. Every answer is the result as `tracker cancel
  --format json` prints it (``prediction_id``, ``outcome``, ``message``, ...), with
  ``error`` (the message) when it is not 200.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from tracker.api import Registration
from tracker.domain import CancelOutcome, Status
from tracker.exceptions import ConfigError
from tracker.inputs import parse_labels
from tracker.records import (
    RECORD_COLUMNS,
    cancel_record,
    detail_record,
    listed_record,
    to_jsonable,
)
from tracker.service.context import SERVICE, Service
from tracker.service.errors import ApiError, read_body

#: rows a listing answers unless ``limit`` says otherwise (as `tracker list`)
DEFAULT_LIMIT = 50
#: the fields of one registration, and the JSON type each must have
FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "webhooks": (list,),
    "emails": (list,),
    "events": (list, str),
    "labels": (dict,),
    "deadline": (str, int, float),
}
#: the query parameters of the listing
LIST_PARAMS = frozenset({"status", "active", "model", "label", "since", "until", "limit"})
STATUSES = tuple(s.value for s in Status)
#: rows of the listing sent per write
ROWS_PER_WRITE = 200


def add_routes(app: web.Application, service: Service) -> None:
    app.router.add_post("/api/predictions", register)
    app.router.add_get("/api/predictions", list_predictions)
    app.router.add_get("/api/predictions/{id}", show)
    app.router.add_post("/api/predictions/{id}/cancel", cancel)


# -- registering -----------------------------------------------------------------------


async def register(request: web.Request) -> web.Response:
    body = await read_json(request)
    entries = body if isinstance(body, list) else [body]
    if not entries:
        raise ApiError(400, "give at least one prediction")
    registrations = [
        _registration(entry, i if isinstance(body, list) else None)
        for i, entry in enumerate(entries)
    ]
    result = await request.app[SERVICE].tracker.add_batch(registrations)
    answer = {
        "added": result.added,
        "already_known": result.already_known,
        "callbacks_added": result.callbacks_added,
    }
    return web.json_response(answer, status=201 if result.added else 200)


async def read_json(request: web.Request) -> Any:
    """The body as JSON; 400 when it is not (or is nested too deeply to read), 413
    past the body limit (the body is not read further)."""
    raw = await read_body(request)
    try:
        return json.loads(raw)
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply") from None
    except UnicodeDecodeError:
        raise ApiError(400, "malformed JSON: not UTF-8 text") from None
    except ValueError as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None


def _registration(entry: Any, position: int | None) -> Registration:
    """One entry of the body, its shape checked (its values are checked by the
    application layer, with the command line's rules)."""
    where = "" if position is None else f"[{position}]: "
    if not isinstance(entry, dict):
        raise ApiError(400, f'{where}expected an object with an "id", got {_kind(entry)}')
    unknown = sorted(set(entry) - set(FIELDS))
    if unknown:
        raise ApiError(
            400, f"{where}unknown field {unknown[0][:40]!r}: expected {', '.join(FIELDS)}"
        )
    if "id" not in entry:
        raise ApiError(400, f"{where}missing field 'id'")
    for name, value in entry.items():
        wrong_type = value is not None and not isinstance(value, FIELDS[name])
        if wrong_type or isinstance(value, bool):
            wanted = " or ".join(_JSON_NAMES[t] for t in FIELDS[name])
            raise ApiError(400, f"{where}{name!r} must be {wanted}, got {_kind(value)}")
    _strings(entry.get("webhooks"), "webhooks", where)
    _strings(entry.get("emails"), "emails", where)
    if isinstance(entry.get("events"), list):
        _strings(entry["events"], "events", where)
    return Registration(
        ids=entry["id"],
        webhooks=entry.get("webhooks") or (),
        emails=entry.get("emails") or (),
        events=entry.get("events"),
        labels=entry.get("labels"),
        deadline=entry.get("deadline"),
    )


_JSON_NAMES = {str: "text", list: "a list", dict: "an object", int: "a number", float: "a number"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    for kind, name in _JSON_NAMES.items():
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _strings(values: Any, name: str, where: str) -> None:
    for value in values or ():
        if not isinstance(value, str):
            raise ApiError(400, f"{where}{name!r} must be a list of text, got {_kind(value)}")


# -- reading ---------------------------------------------------------------------------


async def show(request: web.Request) -> web.Response:
    prediction_id = request.match_info["id"]
    detail = await request.app[SERVICE].tracker.detail(prediction_id)
    return web.json_response(detail_record(detail))


async def list_predictions(request: web.Request) -> web.StreamResponse:
    """The listing, streamed: the first row is read (and the filters checked) before
    the answer starts, so that a bad filter or an unreachable database is still a
    JSON error; then rows are written as they come, ROWS_PER_WRITE at a time."""
    filters, limit = list_filters(request.query)
    rows = request.app[SERVICE].tracker.iter_columns(
        RECORD_COLUMNS, limit=limit or None, newest_first=True, **filters
    )
    try:
        first = await anext(rows, None)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"predictions": [')
        if first is not None:
            batch = [_listed(first)]
            async for row in rows:
                batch.append(b", " + _listed(row))
                if len(batch) >= ROWS_PER_WRITE:
                    await response.write(b"".join(batch))
                    batch = []
            await response.write(b"".join(batch))
        await response.write(b"]}")
        await response.write_eof()
    finally:
        await aclose(rows)
    return response


async def aclose(rows: AsyncIterator[Any]) -> None:
    """End an async iterator's read (its read transaction) however the answer ended."""
    close = getattr(rows, "aclose", None)
    if close is not None:
        await close()


def _listed(row: dict[str, Any]) -> bytes:
    return json.dumps(to_jsonable(listed_record(row))).encode()


def list_filters(query: Mapping[str, str]) -> tuple[dict[str, Any], int]:
    """The listing's filters from the query string, as ``Tracker.iter_columns`` takes
    them, and the limit (0: all). ``status`` and ``label`` may be repeated (``status``
    also takes a comma list)."""
    multi: Any = query
    unknown = sorted(set(query) - LIST_PARAMS)
    if unknown:
        expected = ", ".join(sorted(LIST_PARAMS))
        raise ApiError(400, f"unknown query parameter {unknown[0][:40]!r}: expected {expected}")
    for name in ("active", "model", "since", "until", "limit"):
        if len(multi.getall(name, ())) > 1:
            raise ApiError(400, f"query parameter {name!r} given more than once")
    statuses = [s for value in multi.getall("status", ()) for s in value.split(",") if s]
    for status in statuses:
        if status not in STATUSES:
            raise ApiError(
                400, f"unknown status {status[:40]!r}: choose from {', '.join(STATUSES)}"
            )
    filters: dict[str, Any] = {
        "status": statuses,
        "active": _flag(query.get("active"), "active"),
        "model": query.get("model") or None,
        "since": query.get("since") or None,
        "until": query.get("until") or None,
        "labels": parse_labels(multi.getall("label", ())),
    }
    return filters, _limit(query.get("limit"))


def _flag(text: str | None, name: str) -> bool | None:
    if text is None or text == "":
        return None
    value = text.strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    raise ApiError(400, f"{name} must be true or false, got {text[:40]!r}")


def _limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIMIT
    if not text.isdigit() or len(text) > 9:
        raise ApiError(400, f"limit must be a whole number, 0 for all, got {text[:40]!r}")
    return int(text)


# -- cancelling ------------------------------------------------------------------------

#: the answer's status for each outcome of a cancel
CANCEL_STATUS = {
    CancelOutcome.REQUESTED: 200,
    CancelOutcome.NOT_REGISTERED: 404,
    CancelOutcome.TERMINAL: 409,
    CancelOutcome.FAILED: 502,
}


async def cancel(request: web.Request) -> web.Response:
    try:
        result = await request.app[SERVICE].tracker.cancel(request.match_info["id"])
    except ConfigError as exc:  # no API key: the service's setup, not the request
        raise ApiError(503, str(exc)) from None
    record = cancel_record(result)
    status = CANCEL_STATUS[CancelOutcome(result.outcome)]
    return web.json_response(
        record if status == 200 else {"error": result.message, **record}, status=status
    )
