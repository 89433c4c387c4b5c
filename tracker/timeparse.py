"""Lenient parsing of the timestamps upstream APIs send."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

# RFC 3339 with up to nanosecond precision, 'Z' or an offset.
_RFC3339 = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<frac>\d+))?"
    r"(?P<tz>Z|z|[+-]\d{2}:?\d{2})?$"
)


def parse_timestamp(value: object) -> datetime | None:
    """An aware UTC datetime, or None for anything that is not a timestamp.

    Python's ``fromisoformat`` stops at microseconds; Replicate sends
    nanoseconds, so the fraction is cut to six digits first. A timestamp
    without a zone is taken as UTC.
    """
    if not isinstance(value, str):
        return None
    match = _RFC3339.match(value.strip())
    if not match:
        return None
    text = match["base"].replace(" ", "T").replace("t", "T")
    if match["frac"]:
        text += "." + match["frac"][:6].ljust(6, "0")
    tz = match["tz"]
    if tz and tz not in ("Z", "z"):
        text += tz if ":" in tz else f"{tz[:3]}:{tz[3:]}"
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # out of range, e.g. year 1 at +01:00
        return None


def utcnow() -> datetime:
    return datetime.now(UTC)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_moment(text: str, *, now: datetime | None = None) -> datetime | None:
    """A point in time from the command line: an RFC 3339 time, a date (UTC
    midnight), or a duration ago such as `30m`, `12h`, `7d`. None if unreadable."""
    text = text.strip()
    now = now or utcnow()
    match = _DURATION.match(text)
    if match:
        return now - timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError:
            return None
    return parse_timestamp(text)
