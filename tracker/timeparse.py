"""Reading times: upstream timestamps, Retry-After, durations and moments typed by people."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from tracker.exceptions import InvalidInput

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


#: what ``--since``, ``--until`` and ``--older-than`` accept, as help and errors name it
MOMENT_FORMS = (
    "a date or time (2026-11-01, 2026-11-01T14:30, '2026-11-01 14:30:05+02:00';"
    " UTC unless a zone is given), a duration ago (10m, 36h, 30d, 2w), today or yesterday"
)

#: an ISO 8601 date, or date and time, as people type it: `T` or a space between them,
#: minutes or seconds or a fraction, an optional zone (Z, +02:00, +0200, +02)
_ISO_MOMENT = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[Tt ](?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:[.,](?P<frac>\d+))?)?"
    r"\s*(?P<tz>Z|z|[+-]\d{2}(?::?\d{2})?)?)?$"
)


def parse_moment(text: str, *, now: datetime | None = None) -> datetime | None:
    """A point in time typed on the command line, as an aware UTC datetime, or None
    if unreadable: an ISO 8601 date (UTC midnight) or date and time (UTC unless it
    names a zone), a duration ago such as `30m`, `12h`, `7d`, or `today` (UTC
    midnight) and `yesterday` (the midnight before)."""
    text = text.strip()
    now = now or utcnow()
    keyword = text.lower()
    if keyword in ("today", "yesterday"):
        midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight - timedelta(days=1 if keyword == "yesterday" else 0)
    seconds = parse_duration(text)
    if seconds is not None:
        try:
            return (now - timedelta(seconds=seconds)).astimezone(UTC)
        except OverflowError:  # a duration longer than the calendar
            return None
    match = _ISO_MOMENT.match(text)
    return None if match is None else _iso_moment(match)


def _iso_moment(match: re.Match[str]) -> datetime | None:
    text = match["date"]
    if match["hour"] is not None:
        text += f"T{match['hour']}:{match['minute']}:{match['second'] or '00'}"
        if match["frac"]:
            text += "." + match["frac"][:6].ljust(6, "0")
    tz = match["tz"]
    if tz and tz not in ("Z", "z"):
        digits = tz[1:].replace(":", "").ljust(4, "0")
        text += f"{tz[0]}{digits[:2]}:{digits[2:]}"
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # no such day or hour; out of range in UTC
        return None


def read_moment(text: str, option: str, *, now: datetime | None = None) -> datetime:
    """:func:`parse_moment` for an option: InvalidInput naming it and the forms it takes."""
    moment = parse_moment(text, now=now)
    if moment is None:
        raise InvalidInput(f"cannot read {option} {text!r}: use {MOMENT_FORMS}")
    return moment


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
