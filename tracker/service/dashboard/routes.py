"""The dashboard's routing table, and the parts it opens with the application."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from tracker.archive.storage import open_storage
from tracker.exceptions import ConfigError
from tracker.service.context import Service
from tracker.service.dashboard import actions, files, pages
from tracker.service.dashboard.auth import Sessions
from tracker.service.dashboard.overview import Cached, read_overview
from tracker.service.dashboard.render import environment
from tracker.service.dashboard.static import StaticFiles
from tracker.service.dashboard.web import DASHBOARD, Dashboard, add_security_headers

log = logging.getLogger(__name__)


def add_routes(app: web.Application, service: Service) -> None:
    """The dashboard's routes (names ``dashboard.…``), its parts and its headers."""
    dashboard = Dashboard(
        service=service,
        templates=environment(),
        sessions=Sessions(service.settings.serve_token),
        static=StaticFiles.load(),
    )
    dashboard.overview = Cached(lambda: read_overview(service.store, dashboard.queries))
    app[DASHBOARD] = dashboard
    app.on_response_prepare.append(add_security_headers)
    app.cleanup_ctx.append(_parts)
    get, post = app.router.add_get, app.router.add_post
    get("/", pages.overview, name="dashboard.overview")
    get("/fragments/overview", pages.overview_fragment, name="dashboard.fragment_overview")
    get("/predictions", pages.predictions, name="dashboard.predictions")
    get("/predictions/{id}", pages.prediction, name="dashboard.prediction")
    get("/predictions/{id}/logs", pages.logs, name="dashboard.logs")
    get(
        "/fragments/predictions/{id}",
        pages.prediction_fragment,
        name="dashboard.fragment_prediction",
    )
    post("/predictions/{id}/cancel", actions.cancel, name="dashboard.cancel")
    post("/predictions/{id}/deliveries/{delivery}/retry", actions.retry, name="dashboard.retry")
    get("/files/{id}/{position}", files.archived_file, name="dashboard.file")
    get("/login", actions.login_form, name="dashboard.login")
    post("/login", actions.login, name="dashboard.login_post")
    post("/logout", actions.logout, name="dashboard.logout")
    get("/static/{name}", _static, name="dashboard.static")


async def _static(request: web.Request) -> web.Response:
    return request.app[DASHBOARD].static.response(request, request.match_info["name"])


async def _parts(app: web.Application) -> AsyncIterator[None]:
    """While the application runs: the archive open (when there is one); at the end
    it is closed, and a read of the overview still running is waited for."""
    dashboard = app[DASHBOARD]
    archive_url = dashboard.service.settings.archive_url
    if archive_url:
        try:
            dashboard.storage = await asyncio.to_thread(open_storage, archive_url)
        except ConfigError as exc:
            log.error("dashboard: archived files cannot be shown: %s", exc)
    try:
        yield
    finally:
        await dashboard.overview.close()
        if dashboard.storage is not None:
            await dashboard.storage.close()
