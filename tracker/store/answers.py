"""The last answer as ``predictions.raw`` holds it, without a second copy of its logs.

An answer's ``logs`` are nearly always the text the ``logs`` column holds after the
answer is written. Then ``raw`` keeps ``null`` in their place (the key stays where
it was, so the object reads back in the same key order) and ``raw_logs_moved`` is
true; reading puts the column's text back. Any other answer is kept whole.
"""

from __future__ import annotations

from typing import Any


def stored_answer(raw: Any, logs_moved: bool | None) -> Any:
    """What ``raw`` holds for an answer whose logs are (or not) in the logs column."""
    if logs_moved and isinstance(raw, dict):
        return {**raw, "logs": None}
    return raw


def restored_answer(raw: Any, logs_moved: bool | None, logs: str) -> Any:
    """The answer as received, from ``raw``, ``raw_logs_moved`` and ``logs``."""
    if logs_moved and isinstance(raw, dict):
        return {**raw, "logs": logs}
    return raw
