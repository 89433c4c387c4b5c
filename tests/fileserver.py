"""A file host on loopback for archive tests: each path answers what it was given
(a body, or a status), counts its requests, and ``/slow/...`` paths send their
headers and then a byte a second, so a download is surely in flight."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileHost:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}  #: path -> body (200)
        self.statuses: dict[str, int] = {}  #: path -> status without a body
        self.hits: Counter[str] = Counter()
        self.stopping = threading.Event()
        self.slow_started = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def put(self, path: str, body: bytes) -> str:
        """Serve ``body`` at ``path``; its URL."""
        self.files[path] = body
        self.statuses.pop(path, None)
        return self.url(path)

    def fail(self, path: str, status: int) -> str:
        self.statuses[path] = status
        self.files.pop(path, None)
        return self.url(path)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                host.hits[self.path] += 1
                if self.path.startswith("/slow/"):
                    self._trickle()
                elif self.path in host.files:
                    body = host.files[self.path]
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_response(host.statuses.get(self.path, 404))
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def _trickle(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(10**6))
                self.end_headers()
                host.slow_started.set()
                try:
                    while not host.stopping.wait(1.0):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                except OSError:
                    return

        return Handler

    def start(self) -> FileHost:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def file_host() -> Iterator[FileHost]:
    host = FileHost().start()
    try:
        yield host
    finally:
        host.stop()


def png(seed: int, size: int = 2048) -> bytes:
    """Some bytes that start like a PNG (the archive does not look inside)."""
    block = hashlib.sha256(str(seed).encode()).digest()
    return (b"\x89PNG\r\n\x1a\n" + block * (size // len(block) + 1))[:size]


def wait_for(event: threading.Event, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not event.wait(0.05):
        assert time.monotonic() < deadline, "timed out"
