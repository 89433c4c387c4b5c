"""A hostile HTTP server on loopback for tests: answers that never end, that come
one byte a second, or that are huge. It serves as an upstream (GET) and as a
webhook receiver (POST) alike.

The first path segment picks the behaviour, so ``f"{server.url('endless')}"``
is an API base (``…/endless/predictions/ID``) or a webhook URL:

- ``ok``: 200 with a small prediction object (the ID from the path, ``processing``);
- ``endless``: 200, chunked, a body that never ends (64 KiB chunks, as fast as read);
- ``endless-500``: the same with status 500;
- ``slowloris``: 200 headers at once, then one byte of the body a second;
- ``giant-N``: 200 with a valid JSON prediction of exactly N bytes (Content-Length);
- ``giantchunked-N``: the same, chunked (no length declared up front);
- ``dribble``: the status line and headers one byte a second (never finishes);
- ``dribble-body``: 200 headers at once, then a 1000-byte body one byte a second.

The request (headers and a Content-Length body) is always read first. The server
runs its own event loop in a thread; ``stop()`` (or leaving the ``with``) closes
every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections import Counter

CHUNK = 64 * 1024
_ID = re.compile(r"/predictions/([^/?]+)")


class HostileServer:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._closed: Counter[str] = Counter()
        self._sent: Counter[str] = Counter()
        self.base_url = ""

    # -- life ---------------------------------------------------------------

    def __enter__(self) -> HostileServer:
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def url(self, mode: str, path: str = "") -> str:
        return f"{self.base_url}/{mode}{'/' + path.lstrip('/') if path else ''}"

    # -- what happened ------------------------------------------------------

    def requests(self, mode: str) -> int:
        """Requests received for this behaviour."""
        with self._lock:
            return self._requests[mode]

    def closed_early(self, mode: str) -> int:
        """Connections the client closed while this behaviour was still answering."""
        with self._lock:
            return self._closed[mode]

    def sent(self, mode: str) -> int:
        """Body bytes written for this behaviour."""
        with self._lock:
            return self._sent[mode]

    # -- serving ------------------------------------------------------------

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; whether the connection may carry another."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length:
            await reader.readexactly(length)
        mode = path.strip("/").split("/")[0]
        with self._lock:
            self._requests[mode] += 1
        try:
            return await self._answer(mode, path, writer)
        except ConnectionError:
            with self._lock:
                self._closed[mode] += 1
            raise

    async def _answer(self, mode: str, path: str, writer: asyncio.StreamWriter) -> bool:
        found = _ID.search(path)
        prediction_id = found[1] if found else "hook"
        if mode == "ok":
            body = json.dumps({"id": prediction_id, "status": "processing"}).encode()
            writer.write(_head(200, {"Content-Length": str(len(body))}) + body)
            await writer.drain()
            return True
        if mode in ("endless", "endless-500"):
            status = 500 if mode == "endless-500" else 200
            writer.write(_head(status, {"Transfer-Encoding": "chunked"}))
            block = b"%x\r\n%s\r\n" % (CHUNK, b" " * CHUNK)
            while True:
                writer.write(block)
                self._count(mode, CHUNK)
                await writer.drain()
        if mode == "slowloris":
            writer.write(_head(200, {"Content-Length": "1000000"}) + b"{")
            await self._dribble(mode, writer, b" " * 999_999)
            return False
        if mode.startswith(("giant-", "giantchunked-")):
            await self._giant(mode, prediction_id, int(mode.split("-")[1]), writer)
            return True
        if mode == "dribble":
            await self._dribble(mode, writer, _head(200, {"Content-Length": "2"}) + b"{}")
            return False
        if mode == "dribble-body":
            writer.write(_head(200, {"Content-Length": "1000"}))
            await self._dribble(mode, writer, b" " * 1000)
            return False
        writer.write(_head(404, {"Content-Length": "0"}))
        await writer.drain()
        return True

    async def _dribble(self, mode: str, writer: asyncio.StreamWriter, data: bytes) -> None:
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            self._count(mode, 1)
            await writer.drain()
            await asyncio.sleep(1.0)

    async def _giant(
        self, mode: str, prediction_id: str, size: int, writer: asyncio.StreamWriter
    ) -> None:
        start = b'{"id": "%s", "status": "processing", "logs": "' % prediction_id.encode()
        end = b'"}'
        filler = size - len(start) - len(end)
        chunked = mode.startswith("giantchunked")
        framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(size)}
        writer.write(_head(200, framing))
        block = b"x" * CHUNK
        pieces = [start]
        while filler > 0:
            pieces.append(block[: min(CHUNK, filler)])
            filler -= len(pieces[-1])
            if filler <= 0:
                pieces.append(end)
            for piece in pieces:
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                self._count(mode, len(piece))
            pieces = []
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()

    def _count(self, mode: str, size: int) -> None:
        with self._lock:
            self._sent[mode] += size


def _head(status: int, headers: dict[str, str]) -> bytes:
    reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}.get(status, "X")
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/json",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
