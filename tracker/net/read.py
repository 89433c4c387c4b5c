"""Reading HTTP answer bodies with a cap, so no answer can fill the memory."""

from __future__ import annotations

import httpx

KiB = 1024
MiB = 1024 * KiB


async def read_capped(response: httpx.Response, limit: int) -> bytes | None:
    """A streamed body, or None as soon as it passes ``limit`` bytes.

    The count is taken after any content decoding, so a gzip bomb counts as what
    it unpacks to. Reading stops there and the connection is closed, not reused.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def read_prefix(response: httpx.Response, limit: int) -> bytes:
    """The first ``limit`` bytes of a streamed body (all of a shorter one)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk[: limit - size])
        size += len(chunks[-1])
        if size >= limit:
            break
    return b"".join(chunks)


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
