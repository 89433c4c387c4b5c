"""Checking what users type: IDs, ID files, labels, callback targets."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Iterator
from typing import IO
from urllib.parse import urlsplit

from tracker.domain import validate_id
from tracker.exceptions import InvalidInput
from tracker.net.policy import HostPolicy
from tracker.settingtypes import Duration
from tracker.text.display import escape_line, mask_url

_LABEL_KEY = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")
#: longest label value (UTF-8 bytes): each label is also a key of an index (on
#: PostgreSQL a btree entry holds at most about 2,700 bytes)
MAX_LABEL_VALUE_BYTES = 1024
_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
#: longest accepted webhook URL (characters)
MAX_URL_LENGTH = 2048
#: longest line read from an ID file (bytes; an ID has at most 128 characters)
MAX_ID_LINE_BYTES = 1024
#: most bytes read from one ID file: 1.2 million IDs of Replicate's 26 characters
MAX_ID_FILE_BYTES = 32 * 2**20
#: the longest deadline (--deadline, TRACKER_DEFAULT_DEADLINE)
MAX_DEADLINE_SECONDS = 366 * 86400.0  # a year
#: a deadline as --deadline and TRACKER_DEFAULT_DEADLINE take it
DEADLINE = Duration(metavar="DURATION", high=MAX_DEADLINE_SECONDS, examples="90s, 30m or 2h")
#: what a deadline may be given as to turn it off (and TRACKER_DEFAULT_DEADLINE with it)
NO_DEADLINE = "none"


def read_ids(stream: IO[bytes] | IO[str], source: str) -> Iterator[str]:
    """IDs from a file: one per line; blank lines and `#` comments skipped.

    At most ``MAX_ID_FILE_BYTES`` are read, one line of at most ``MAX_ID_LINE_BYTES``
    at a time, so neither ``/dev/zero`` nor a file without newlines eats the memory.
    Bytes are decoded as UTF-8 (a leading BOM is skipped); errors name the line.
    """
    total = 0
    for number in itertools.count(1):
        line = stream.readline(MAX_ID_LINE_BYTES + 1)
        if not line:
            return
        total += len(line)
        if total > MAX_ID_FILE_BYTES:
            raise InvalidInput(
                f"{source}: more than {MAX_ID_FILE_BYTES // 2**20} MiB, split it into smaller files"
            )
        text = _line_text(line, number, source).strip()
        if not text or text.startswith("#"):
            continue
        try:
            yield validate_id(text)
        except InvalidInput as exc:
            raise InvalidInput(f"{source}, line {number}: {exc}") from None


def _line_text(line: bytes | str, number: int, source: str) -> str:
    """One line of an ID file as text, refused when too long or not UTF-8."""
    if len(line) > MAX_ID_LINE_BYTES and line[-1:] not in (b"\n", "\n"):
        raise InvalidInput(
            f"{source}, line {number}: longer than {MAX_ID_LINE_BYTES} bytes"
            " (a prediction ID has at most 128 characters)"
        )
    if isinstance(line, str):
        return line.removeprefix("\ufeff") if number == 1 else line
    try:
        return line.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        bad = line[exc.start : exc.start + 1].hex()
        raise InvalidInput(
            f"{source}, line {number}: not UTF-8 text (byte 0x{bad} at column {exc.start + 1})"
        ) from None


def validate_ids(ids: Iterable[str]) -> list[str]:
    return [validate_id(i) for i in ids]


def parse_labels(items: Iterable[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _LABEL_KEY.fullmatch(key):
            raise InvalidInput(
                f"invalid label {item!r}: expected KEY=VALUE, KEY of letters, digits, _.:/-"
            )
        _check_label_value(key, value)
        labels[key] = value
    return labels


def _check_label_value(key: str, value: str) -> None:
    """A value both engines store and index as it is."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, from a JSON escape
        size = -1
    if size < 0 or "\x00" in value:
        raise InvalidInput(f"invalid label {key}=...: the value must be UTF-8 text without NUL")
    if size > MAX_LABEL_VALUE_BYTES:
        raise InvalidInput(
            f"invalid label {key}=...: the value is longer than {MAX_LABEL_VALUE_BYTES} bytes"
        )


def validate_webhook_url(url: str, allowed: HostPolicy | None = None) -> str:
    """An http(s) URL; with ``allowed``, a literal address must pass that policy
    (host names are judged on the address they resolve to, at each delivery)."""
    shown = escape_line(mask_url(url[:200]))
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unbalanced [ in the host
        raise InvalidInput(f"invalid webhook URL {shown!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"invalid webhook URL {shown!r}: expected an http:// or https:// URL")
    if any(ch.isspace() for ch in url):
        raise InvalidInput(f"invalid webhook URL {shown!r}: it contains white space")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise InvalidInput(f"invalid webhook URL {shown!r}: {exc}") from None
    if allowed is not None:
        try:
            allowed.check_literal(parts.hostname or "")
        except InvalidInput as exc:
            raise InvalidInput(f"webhook URL refused: {exc}") from None
    return url


def parse_deadline(value: str | float) -> float | None:
    """A deadline in seconds: a duration (``90s``, ``30m``, ``2h``) or a number of
    seconds, above 0 and at most a year; ``"none"`` is None (no deadline)."""
    if isinstance(value, str):
        if value.strip().lower() == NO_DEADLINE:
            return None
        try:
            return DEADLINE(value)
        except ValueError as exc:
            raise InvalidInput(f"invalid deadline: {exc}") from None
    number_ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not number_ok or not math.isfinite(value) or not 0 < value <= MAX_DEADLINE_SECONDS:
        raise InvalidInput(
            f"invalid deadline {value!r:.40}: expected a duration such as 90s, 30m or 2h,"
            f" or seconds above 0 and at most {MAX_DEADLINE_SECONDS:.0f} (a year)"
        )
    return float(value)


def validate_email(address: str) -> str:
    if not _EMAIL.fullmatch(address):
        raise InvalidInput(f"invalid email address {address!r}")
    return address
