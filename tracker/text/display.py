"""Showing text that came from outside: escaped, masked, never interpreted.

Upstream text (logs, errors, statuses, outputs) and callback targets are
printed by the CLI and written to the daemon's log. An upstream must not be
able to clear the screen, move the cursor, forge a line or hide a link in
them (SPEC, "Text from upstream, and what is shown").
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

#: what replaces a secret wherever it would be shown or logged
MASK = "***"

#: DEL and the C1 controls (0x9b is a one-byte CSI), and the bidirectional
#: overrides that make text read in another order
_ACTED_ON = "\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069"
#: those and the C0 controls but tab and newline
_CONTROL = re.compile(f"[\x00-\x08\x0b-\x1f{_ACTED_ON}]")
#: the same plus newline and tab, for text that must stay on one line
_CONTROL_ONE_LINE = re.compile(f"[\x00-\x1f{_ACTED_ON}]")
#: what JSON may carry raw (it escapes C0 itself) but a terminal would act on
_JSON_UNSAFE = re.compile(f"[{_ACTED_ON}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_text(text: str) -> str:
    """``text`` with every control character but newline and tab shown as ``\\x1b``."""
    return _CONTROL.sub(_escape, text)


def escape_line(text: str) -> str:
    """``text`` escaped as ``escape_text`` does, newline and tab included."""
    return _CONTROL_ONE_LINE.sub(_escape, text)


def json_text(value: Any, *, indent: int | None = None) -> str:
    """``value`` as JSON, non-ASCII text kept readable but every character a terminal
    would act on escaped (``\\u009b``): the same data, safe to print."""
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def mask_url(url: str) -> str:
    """A URL fit to show: its password and every query value replaced by ``***``.

    ``https://user:pw@host/hook?token=abc`` -> ``https://user:***@host/hook?token=***``;
    a user name alone (``https://KEY@host``) is masked too, and so is a fragment.
    Text that does not parse as a URL is shown with everything after the scheme masked.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        scheme, sep, _ = url.partition("://")
        return f"{scheme}://{MASK}" if sep else MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        # a user name without a password is often the secret itself (https://KEY@host)
        netloc = f"{user}:{MASK}@{hostport}" if colon else f"{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{quote(name, safe='')}={MASK}" for name, _ in pairs) or MASK
    fragment = MASK if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))
