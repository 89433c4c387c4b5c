"""Reading times: upstream timestamps, Retry-After, durations and moments typed by people."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

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


#: a duration as people type it: a number and one unit
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float | None:
    """Seconds in a duration such as `30d`, `12h`, `90m` (units s, m, h, d, w), or None."""
    match = _DURATION.match(text.strip())
    if not match:
        return None
    return float(match[1]) * _UNIT_SECONDS[match[2]]


def parse_moment(text: str, *, now: datetime | None = None) -> datetime | None:
    """A point in time from the command line: an RFC 3339 time, a date (UTC
    midnight), or a duration ago such as `30m`, `12h`, `7d`. None if unreadable."""
    text = text.strip()
    now = now or utcnow()
    seconds = parse_duration(text)
    if seconds is not None:
        return now - timedelta(seconds=seconds)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError:
            return None
    return parse_timestamp(text)


def parse_retry_after(
    value: str | None, cap: float, *, now: datetime | None = None
) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date),
    between 0 and ``cap``; None when absent or unreadable. Each caller names its cap:
    how long an upstream may pause polling is not how long a receiver may delay a retry."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or utcnow())).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), cap)
