"""Servers on loopback that fail the way real networks do, for tests of what a
failed request is called (``tracker.net.errors``). Nothing here leaves 127.0.0.1.

- ``closed_port()``: a port nobody listens on (bound, then closed): connecting is refused;
- ``RawServer("silent")``: accepts and never answers (until stopped);
- ``RawServer("close")``: reads the request, closes without a word;
- ``RawServer("garbage")``: answers a line that is not HTTP;
- ``RawServer("plain")``: answers plain HTTP to anything, so an ``https://`` URL
  to it fails its TLS handshake;
- ``RawServer("plain", tls=self_signed_context(dir))``: a TLS server whose
  certificate nobody trusts.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Literal

Behaviour = Literal["silent", "close", "garbage", "plain"]

ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    b"Connection: close\r\n\r\n{}"
)


def closed_port() -> int:
    """A loopback port that refuses connections (nothing listens on it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def self_signed_context(folder: Path) -> ssl.SSLContext | None:
    """A server context with a fresh self-signed certificate for 127.0.0.1, or None
    without the openssl command."""
    if shutil.which("openssl") is None:
        return None
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class RawServer:
    def __init__(self, behaviour: Behaviour, *, tls: ssl.SSLContext | None = None) -> None:
        self.behaviour = behaviour
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def url(self, path: str = "", *, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            for conn in self._open:
                conn.close()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            if self.behaviour == "silent":
                self._stop.wait()
                return
            conn.settimeout(5)
            conn.recv(65536)
            if self.behaviour == "garbage":
                conn.sendall(b"HELLO THERE\r\n\r\n")
            elif self.behaviour == "plain":
                conn.sendall(ANSWER)
        except (OSError, ssl.SSLError):
            pass
        finally:
            if self.behaviour != "silent":
                conn.close()
