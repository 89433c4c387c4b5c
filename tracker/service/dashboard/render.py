"""The dashboard's Jinja2 templates and the filters they show values with.

Autoescape is on for every template, so any value reaching a page is HTML-escaped;
the filters here first make upstream text visible as text (control characters
shown as ``\\x1b``, URLs masked) and never return markup. ``href`` is the only way a
value becomes a link: http(s) URLs only, anything else is no link at all.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2

from tracker.domain import Status, Tracking
from tracker.text import human
from tracker.text.display import escape_line, escape_text, json_text, mask_url
from tracker.text.timeline import duration

TEMPLATES = Path(__file__).parent / "templates"
#: the CSS class of each status and tracking state (anything else: "other")
STATUS_CLASSES = {s.value: f"s-{s.value}" for s in Status} | {
    t.value: f"t-{t.value}" for t in Tracking
}
#: the longest URL made a link (characters)
MAX_HREF = 2000


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        text=shown_text,
        line=shown_line,
        json=shown_json,
        masked=masked,
        href=href,
        when=when,
        iso=iso,
        seconds=seconds,
        duration=duration_text,
        size=size,
        number=number,
        status_class=status_class,
        status_word=status_word,
    )
    env.globals.update(ago=ago, query=query)
    return env


def shown_text(value: Any) -> str:
    """Text as ``tracker show`` prints it: controls but newline and tab escaped."""
    return "" if value is None else escape_text(str(value))


def shown_line(value: Any) -> str:
    """Text on one line: newlines and tabs escaped too."""
    return "" if value is None else escape_line(str(value))


def shown_json(value: Any) -> str:
    """A JSON value, indented; a string as itself."""
    if value is None:
        return ""
    if isinstance(value, str):
        return escape_text(value)
    return escape_text(json_text(value, indent=2))


def masked(url: Any) -> str:
    """A URL with its password and query values masked (as every command shows one)."""
    return "" if url is None else escape_line(mask_url(str(url)))


def href(url: Any) -> str | None:
    """``url`` when it is fit to be a link's target (an http(s) URL with a host and
    nothing a browser would read otherwise), else None: no link."""
    if not isinstance(url, str) or len(url) > MAX_HREF:
        return None
    if any(ch.isspace() or ord(ch) < 0x20 or ch in "\\\"'<>`" for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return url


def when(moment: datetime | None) -> str:
    """``2026-01-02 13:04:05 UTC`` (milliseconds when there are any)."""
    if moment is None:
        return ""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + " UTC"


def iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def ago(moment: datetime | None) -> str:
    """``12 s ago``, ``in 3 s`` (relative to now)."""
    return human.ago(moment, datetime.now(UTC))


def seconds(value: float | None) -> str:
    return "" if value is None else human.seconds(value)


def duration_text(value: float | None) -> str:
    return "" if value is None else duration(value)


def size(value: int | None) -> str:
    return "" if value is None else human.size(value)


def number(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def status_class(value: str | None) -> str:
    """The CSS class for a status or tracking state: a fixed name, never the text."""
    if value is None:
        return "s-none"
    return STATUS_CLASSES.get(value, "s-other")


def status_word(value: str | None) -> str:
    return "not seen yet" if value is None else escape_line(value)


def query(**params: Any) -> str:
    """``?a=1&b=2`` of the parameters given that have a value ('' when none)."""
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return f"?{urlencode(kept)}" if kept else ""
