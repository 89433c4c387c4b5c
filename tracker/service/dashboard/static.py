"""The dashboard's stylesheet and script, read once and served from memory under
``/static/NAME?v=HASH`` (the hash changes with the file, so browsers may keep it)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"
#: the files served, and their content types
FILES = {
    "dashboard.css": "text/css",
    "live.js": "text/javascript",
}
#: seconds a browser may keep a file (its URL changes with its content)
MAX_AGE = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


@dataclass(frozen=True, slots=True)
class StaticFiles:
    files: dict[str, StaticFile] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path = STATIC) -> StaticFiles:
        files = {}
        for name, content_type in FILES.items():
            body = (folder / name).read_bytes()
            files[name] = StaticFile(body, content_type, hashlib.sha256(body).hexdigest()[:16])
        return cls(files)

    @property
    def urls(self) -> dict[str, str]:
        """Each file's URL by its name, ``.`` and ``-`` as ``_`` (``dashboard_css``)."""
        return {
            name.replace(".", "_").replace("-", "_"): f"/static/{name}?v={f.etag}"
            for name, f in self.files.items()
        }

    def response(self, request: web.Request, name: str) -> web.Response:
        found = self.files.get(name)
        if found is None:
            raise web.HTTPNotFound()
        etag = f'"{found.etag}"'
        headers = {"ETag": etag, "Cache-Control": f"public, max-age={MAX_AGE}"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=found.body, content_type=found.content_type, charset="utf-8", headers=headers
        )
