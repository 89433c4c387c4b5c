"""Callback events, as in Replicate's ``webhook_events_filter``."""

from __future__ import annotations

import enum
from collections.abc import Iterable

from tracker.exceptions import InvalidInput


class Event(enum.StrEnum):
    START = "start"  #: the prediction was first seen running (or already past starting)
    OUTPUT = "output"  #: the output changed
    LOGS = "logs"  #: new log text arrived
    COMPLETED = "completed"  #: a terminal status was reached
    #: every output file was archived (TRACKER_ARCHIVE_URL); only when asked for
    ARCHIVED = "archived"
    #: its deadline (``--deadline``) passed and the daemon is cancelling it; only when
    #: asked for
    DEADLINE = "deadline"


#: order used whenever events are written out
EVENT_ORDER = (
    Event.START,
    Event.OUTPUT,
    Event.LOGS,
    Event.COMPLETED,
    Event.ARCHIVED,
    Event.DEADLINE,
)
DEFAULT_EVENTS = (Event.COMPLETED,)


def canonical_events(events: Iterable[str]) -> tuple[str, ...]:
    wanted = {e.strip() for e in events if e.strip()}
    unknown = wanted - {e.value for e in Event}
    if unknown:
        raise InvalidInput(
            f"unknown event(s) {', '.join(sorted(unknown))}: choose from"
            f" {', '.join(e.value for e in EVENT_ORDER)}"
        )
    return tuple(e.value for e in EVENT_ORDER if e.value in wanted)


def parse_events(text: str) -> tuple[str, ...]:
    events = canonical_events(text.split(","))
    if not events:
        raise InvalidInput(
            "--events needs at least one of " + ",".join(e.value for e in EVENT_ORDER)
        )
    return events
