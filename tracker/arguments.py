"""Checking the Python API's arguments with the command line's rules and messages:
a bad one is InvalidInput, whose text the CLI prints after ``Error:``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

from tracker.domain import DeliveryState, validate_id
from tracker.exceptions import InvalidInput
from tracker.inputs import parse_labels
from tracker.store.deliveries import DeliveryQuery
from tracker.store.listing import PredictionQuery
from tracker.timeparse import read_moment


def strings(value: str | Iterable[str] | None) -> list[str]:
    """One string or several, as a list (a lone string is one value, not characters)."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        if not isinstance(item, str):
            raise InvalidInput(f"expected text, got {type(item).__name__} {item!r:.40}")
    return items


def labels(given: Mapping[str, str] | None) -> dict[str, str]:
    """Labels as ``--label KEY=VALUE`` takes them."""
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise InvalidInput("labels must be a mapping of KEY to VALUE")
    checked: dict[str, str] = {}
    for key, value in given.items():
        item = f"{key}={value}"
        if not isinstance(value, str):
            raise InvalidInput(f"invalid label {item!r}: the value must be text")
        if not isinstance(key, str) or parse_labels([item]) != {key: value}:
            raise InvalidInput(
                f"invalid label {item!r}: expected KEY=VALUE, KEY of letters, digits, _.:/-"
            )
        checked[key] = value
    return checked


def limit(value: int | None) -> int | None:
    """At most this many rows; None for all."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidInput(f"limit must be a whole number of at least 1 (got {value!r:.40})")
    return value


def delivery_ids(ids: int | Iterable[int]) -> list[int]:
    items: list[Any] = [ids] if isinstance(ids, int) else list(ids)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise InvalidInput(f"invalid delivery ID {item!r:.40}: expected a whole number")
    return items


def moment(value: datetime | str | None, option: str = "--since") -> datetime | None:
    """A point in time; a naive datetime is taken as UTC, text as ``--since`` reads it
    (a date or time, a duration ago such as ``36h``, ``today``, ``yesterday``)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise InvalidInput(f"{option} must be a datetime or text (got {value!r:.40})")
    return read_moment(value, option)


def bounds(
    since: datetime | str | None, until: datetime | str | None
) -> tuple[datetime | None, datetime | None]:
    """``since`` and ``until`` read, an ``until`` before ``since`` refused."""
    start, end = moment(since, "--since"), moment(until, "--until")
    if start is not None and end is not None and end < start:
        raise InvalidInput(f"--until ({_shown(end)}) is before --since ({_shown(start)})")
    return start, end


class Window(TypedDict, total=False):
    """The filters every listing takes besides its own, as keyword arguments: a
    ``datetime`` (naive is UTC) or text as ``--since`` reads it (``2026-11-01``,
    ``36h``, ``today``); ``until`` before ``since`` is InvalidInput."""

    since: datetime | str | None  #: registered (a delivery: created) at or after
    until: datetime | str | None  #: registered (a delivery: created) before
    labels: Mapping[str, str] | None  #: (its prediction) having every one of these labels


def prediction_query(
    status: str | Iterable[str] | None,
    active: bool | None,
    model: str | None,
    rows: int | None,
    newest_first: bool,
    **window: Unpack[Window],
) -> PredictionQuery:
    """A listing's filters checked (``status``: one upstream status or several;
    ``active``: only those still polled), as the store takes them."""
    if model is not None and not isinstance(model, str):
        raise InvalidInput(f"model must be text (owner/name), got {model!r:.40}")
    since, until = _window(window)
    return PredictionQuery(
        statuses=strings(status),
        active_only=bool(active),
        model=model,
        since=since,
        until=until,
        labels=labels(window.get("labels")),
        limit=limit(rows),
        newest_first=bool(newest_first),
    )


def delivery_query(
    state: str | Iterable[str] | None,
    prediction_id: str | None,
    rows: int | None,
    newest_first: bool,
    **window: Unpack[Window],
) -> DeliveryQuery:
    """A delivery listing's filters checked, as the store takes them."""
    states = strings(state)
    known = [s.value for s in DeliveryState]
    for value in states:
        if value not in known:
            raise InvalidInput(f"unknown delivery state {value!r}: choose from {', '.join(known)}")
    if prediction_id is not None:
        validate_id(prediction_id)
    since, until = _window(window)
    return DeliveryQuery(
        states=states,
        prediction_id=prediction_id,
        since=since,
        until=until,
        labels=labels(window.get("labels")),
        limit=limit(rows),
        newest_first=bool(newest_first),
    )


def columns(names: Iterable[str], allowed: Sequence[str]) -> list[str]:
    """Column names, each one of ``allowed``."""
    wanted = strings(names)
    unknown = [c for c in wanted if c not in allowed]
    if unknown or not wanted:
        raise InvalidInput(
            f"unknown column(s) {', '.join(map(repr, unknown)) or '(none given)'}:"
            f" choose from {', '.join(allowed)}"
        )
    return wanted


def _window(window: Window) -> tuple[datetime | None, datetime | None]:
    unknown = set(window) - set(Window.__annotations__)
    if unknown:  # a misspelt keyword that a type checker would have caught
        raise InvalidInput(f"unknown filter(s) {', '.join(sorted(unknown))}")
    return bounds(window.get("since"), window.get("until"))


def _shown(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="seconds").replace("+00:00", " UTC")
