"""What every route module works with: the ``Service`` of one application."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from tracker.asyncapi import AsyncTracker
from tracker.config import Settings
from tracker.store.store import Store

if TYPE_CHECKING:
    from tracker.poll.daemon import Daemon
    from tracker.service.metrics import Metrics


@dataclass
class Service:
    """The settings, the application layer (``tracker``: the API the CLI calls too),
    a store for what the API has no call for (health, the metrics' gauges), the
    metrics, and the in-process daemon (None with ``--no-daemon``)."""

    settings: Settings
    tracker: AsyncTracker
    store: Store
    metrics: Metrics
    daemon: Daemon | None = None


#: where a handler finds the service: ``request.app[SERVICE]``
SERVICE = web.AppKey("service", Service)
