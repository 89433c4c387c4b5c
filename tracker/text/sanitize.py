"""Make upstream JSON storable on both engines, the same way on both.

What an engine cannot hold is replaced, everything else is kept as received
(SPEC, "Text from upstream"): lone surrogates and NUL become U+FFFD, the
non-numbers ``NaN`` and ``±Infinity`` become ``null``, and the API key,
wherever the upstream echoes it, becomes ``***``. A document nested deeper
than ``MAX_JSON_DEPTH`` is refused: no prediction object needs it, and every
layer that walks it (the JSON encoders, the drivers) recurses.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

from tracker.text.display import MASK

#: deepest nesting of arrays and objects accepted in an answer
MAX_JSON_DEPTH = 100
REPLACEMENT = "\ufffd"

#: what neither engine stores in text: NUL (PostgreSQL) and lone surrogates (UTF-8)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class TooDeep(ValueError):
    """The JSON nests deeper than MAX_JSON_DEPTH."""


def clean_text(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with NUL and lone surrogates replaced and every secret masked."""
    if text.isascii():
        if "\x00" in text:
            text = text.replace("\x00", REPLACEMENT)
    else:
        text = _UNSTORABLE.sub(REPLACEMENT, text)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def clean_json(value: object, secrets: Sequence[str] = (), *, depth: int = 0) -> object:
    """A copy of a decoded JSON value that both engines store as it is.

    Raises ``TooDeep`` past MAX_JSON_DEPTH levels of arrays and objects.
    """
    if isinstance(value, str):
        return clean_text(value, secrets)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        if depth >= MAX_JSON_DEPTH:
            raise TooDeep(f"the answer nests deeper than {MAX_JSON_DEPTH} levels")
        return {
            clean_text(str(k), secrets): clean_json(v, secrets, depth=depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        if depth >= MAX_JSON_DEPTH:
            raise TooDeep(f"the answer nests deeper than {MAX_JSON_DEPTH} levels")
        return [clean_json(v, secrets, depth=depth + 1) for v in value]
    return value  # int, bool, None


def _no_constant(_name: str) -> None:
    return None


def decode_json(content: bytes | str, secrets: Sequence[str] = ()) -> object:
    """Parse and clean an answer body.

    Raises ``ValueError`` (``UnicodeDecodeError``, ``json.JSONDecodeError`` or
    ``TooDeep``) for a body that is not usable JSON; never ``RecursionError``.
    """
    try:
        value = json.loads(content, parse_constant=_no_constant)
    except RecursionError:
        raise TooDeep(f"the answer nests deeper than {MAX_JSON_DEPTH} levels") from None
    return clean_json(value, secrets)
