"""An upstream on loopback that answers each prediction ID with scripted raw bytes.

``ScriptedUpstream({"id": [(200, b'{...}'), (503, b"busy")]})`` answers the
first GET of ``/v1/predictions/id`` with the first entry, the next with the
next, and repeats the last one. Bodies are sent exactly as given, so tests can
serve what no JSON library would write (lone surrogates, NaN, deep nesting).
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Script = dict[str, list[tuple[int, bytes]]]


class ScriptedUpstream:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> ScriptedUpstream:
        self._thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, prediction_id: str) -> tuple[int, bytes]:
        with self._lock:
            answers = self.script.get(prediction_id)
            if not answers:
                return 404, b'{"detail": "Not found."}'
            index = min(self.requests[prediction_id], len(answers) - 1)
            self.requests[prediction_id] += 1
            return answers[index]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                code, body = upstream.answer(self.path.rsplit("/", 1)[-1])
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        return Handler
