"""Checking what users type: IDs, ID files, labels, callback targets."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TextIO
from urllib.parse import urlsplit

from tracker.domain import validate_id
from tracker.exceptions import InvalidInput

_LABEL_KEY = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")
_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
#: longest accepted webhook URL (characters)
MAX_URL_LENGTH = 2048


def read_ids(stream: TextIO, source: str) -> Iterator[str]:
    """IDs from a file: one per line; blank lines and `#` comments skipped."""
    for number, line in enumerate(stream, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            yield validate_id(text)
        except InvalidInput as exc:
            raise InvalidInput(f"{source}, line {number}: {exc}") from None


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
        labels[key] = value
    return labels


def validate_webhook_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"invalid webhook URL {url!r}: expected an http:// or https:// URL")
    if any(ch.isspace() for ch in url):
        raise InvalidInput(f"invalid webhook URL {url!r}: it contains white space")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise InvalidInput(f"invalid webhook URL {url!r}: {exc}") from None
    return url


def validate_email(address: str) -> str:
    if not _EMAIL.fullmatch(address):
        raise InvalidInput(f"invalid email address {address!r}")
    return address
