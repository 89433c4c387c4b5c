"""``GET /files/{prediction_id}/{position}``: an archived output file, streamed from
the archive (TRACKER_ARCHIVE_URL), never fetched from the upstream's URL.

Only a ``stored`` artifact whose stored URL lies in this service's archive is
served. PNG, JPEG, WebP and GIF are shown inline as themselves; anything else (SVG
and HTML included) is a download, ``application/octet-stream`` with a file name
made of portable characters. The dashboard's security headers apply (a strict CSP,
``nosniff``), and the file may be kept by the browser for an hour.
"""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from tracker.archive.storage import StoredObjectMissing, file_name
from tracker.domain import ID_PATTERN, Artifact
from tracker.service.dashboard.views import IMAGE_TYPES, stored
from tracker.service.dashboard.web import DASHBOARD

#: a key every storage takes, to learn how its stored URLs begin
_PROBE = "x"
_POSITION = re.compile(r"^[0-9]{1,9}$")
#: seconds a browser may keep an archived file (it never changes under its URL)
MAX_AGE = 3600


async def archived_file(request: web.Request) -> web.StreamResponse:
    dashboard = request.app[DASHBOARD]
    prediction_id, position = request.match_info["id"], request.match_info["position"]
    if not ID_PATTERN.fullmatch(prediction_id) or not _POSITION.fullmatch(position):
        raise web.HTTPNotFound(text="no such file")
    storage = dashboard.storage
    if storage is None:
        raise web.HTTPNotFound(text="this service has no archive (TRACKER_ARCHIVE_URL)")
    artifact = await asyncio.to_thread(dashboard.queries.artifact, prediction_id, int(position))
    if artifact is None or not stored(artifact) or artifact.stored_url is None:
        raise web.HTTPNotFound(text="this file is not in the archive")
    prefix = storage.stored_url(_PROBE).removesuffix(_PROBE)
    key = artifact.stored_url.removeprefix(prefix)
    if not artifact.stored_url.startswith(prefix) or not key:
        raise web.HTTPNotFound(text="this file is stored in another archive")
    try:
        chunks = await storage.read(key)
    except StoredObjectMissing:
        raise web.HTTPNotFound(text="this file is gone from the archive") from None
    response = web.StreamResponse(headers=file_headers(artifact))
    await response.prepare(request)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


def file_headers(artifact: Artifact) -> dict[str, str]:
    """Content type and disposition: an image type inline, anything else a download."""
    content_type = (artifact.content_type or "").split(";")[0].strip().lower()
    name = f"{artifact.position}-{file_name(artifact.source_url)}"
    headers = {"Cache-Control": f"private, max-age={MAX_AGE}"}
    if content_type in IMAGE_TYPES:
        headers["Content-Type"] = content_type
        headers["Content-Disposition"] = f'inline; filename="{name}"'
    else:
        headers["Content-Type"] = "application/octet-stream"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return headers
