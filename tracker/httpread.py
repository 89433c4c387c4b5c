"""Reading HTTP answer bodies with a cap, so no answer can fill the memory."""

from __future__ import annotations

import httpx

KiB = 1024
MiB = 1024 * KiB


async def read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of a streamed body, and whether that is all of it.

    Reading stops as soon as the body (after any content decoding, so a gzip bomb
    counts as what it unpacks to) passes ``limit``; the connection is then closed
    rather than reused.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            chunks.append(chunk[: len(chunk) - (size - limit)])
            return b"".join(chunks), False
        chunks.append(chunk)
    return b"".join(chunks), True


def declared_too_long(response: httpx.Response, limit: int) -> bool:
    """Whether the answer says (Content-Length) that its body is longer than ``limit``."""
    declared = response.headers.get("Content-Length", "").strip()
    return declared.isdigit() and int(declared) > limit


def size_text(size: int) -> str:
    """``16 MiB``, ``64 KiB`` or ``1000 bytes``."""
    for unit, name in ((MiB, "MiB"), (KiB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} bytes"
