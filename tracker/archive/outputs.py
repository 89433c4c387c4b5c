"""Which parts of a prediction's output are files to archive.

A Replicate output is a URL, a list of URLs, an object whose values are URLs, or
any nesting of those (with text and numbers beside them). Every ``http(s)`` URL
found, walking the output in order (lists by index, objects by their keys as
sent), gets the next position: the same output always gives the same positions,
so an artifact is "position N of prediction P" however often it is seen.
"""

from __future__ import annotations

from typing import Any

#: at most this many files are archived per prediction; the rest are left out
MAX_FILES = 100
#: URLs longer than this are not archived (no file host needs more)
MAX_URL_LENGTH = 4096
#: nesting deeper than this is not searched
MAX_DEPTH = 8


def output_urls(output: Any) -> tuple[tuple[int, str], ...]:
    """``(position, url)`` of each http(s) URL in ``output``, in order."""
    found: list[str] = []
    _walk(output, found, 0)
    return tuple(enumerate(found))


def _walk(value: Any, found: list[str], depth: int) -> None:
    if len(found) >= MAX_FILES or depth > MAX_DEPTH:
        return
    if isinstance(value, str):
        if _is_file_url(value):
            found.append(value)
    elif isinstance(value, list):
        for item in value:
            _walk(item, found, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _walk(item, found, depth + 1)


def _is_file_url(text: str) -> bool:
    lowered = text[:8].lower()
    return (
        lowered.startswith(("http://", "https://"))
        and len(text) <= MAX_URL_LENGTH
        and text.isprintable()
        and " " not in text
    )
