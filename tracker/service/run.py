"""The life of `tracker serve`: the HTTP site and, unless ``--no-daemon``, the daemon,
in one event loop.

Start: the store is opened (its schema checked), the site listens, then the daemon
starts. SIGTERM or SIGINT: the site stops accepting connections and the daemon stops
claiming work; requests in flight are finished (up to SHUTDOWN_SECONDS) and so are
the daemon's polls and deliveries (its own drain); then the exit code, 0. When the
daemon stops by itself (its database file was replaced, say), the site stops too and
the daemon's exit code is the process's.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address

from aiohttp import web

from tracker.asyncapi import AsyncTracker
from tracker.config import Settings
from tracker.exceptions import ConfigError, InvalidInput
from tracker.service.app import build_app
from tracker.service.context import Service
from tracker.service.metrics import Metrics
from tracker.store.store import Store

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: seconds requests in flight have to finish once the service is stopping
SHUTDOWN_SECONDS = 10.0


class ServeRefused(ConfigError, InvalidInput):
    """`tracker serve` cannot run as asked (a usage error: exit 2)."""


@dataclass(frozen=True)
class Listening:
    """Where the site listens (the port the system chose for ``--port 0``)."""

    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is this machine only: ``localhost``, 127.0.0.0/8 or ::1."""
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, settings: Settings) -> None:
    """Without TRACKER_SERVE_TOKEN the API is open: refuse to listen beyond loopback."""
    if not settings.serve_token and not is_loopback_host(host):
        raise ServeRefused(
            f"--host {host} is not a loopback address: set TRACKER_SERVE_TOKEN (the bearer"
            " token the API will ask for) to listen there, or listen on 127.0.0.1"
        )


async def serve(
    settings: Settings,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    with_daemon: bool = True,
    on_listening: Callable[[Listening], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run the service until SIGTERM or SIGINT (or ``stop`` is set); its exit code."""
    check_host(host, settings)
    stop = stop or asyncio.Event()
    store = await asyncio.to_thread(Store.open_checked, settings.database_url)
    try:
        async with AsyncTracker(settings=settings) as tracker:
            metrics = Metrics(store)
            service = Service(settings, tracker, store, metrics)
            return await _serve(service, host, port, with_daemon, on_listening, stop)
    finally:
        await asyncio.to_thread(store.close)


async def _serve(
    service: Service,
    host: str,
    port: int,
    with_daemon: bool,
    on_listening: Callable[[Listening], None] | None,
    stop: asyncio.Event,
) -> int:
    runner = web.AppRunner(build_app(service), access_log=None, shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ServeRefused(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        listening = _listening(runner, host, port)
        _say_listening(service, listening, with_daemon)
        if on_listening is not None:
            on_listening(listening)
        await stop.wait()
        log.info("stopping: no new connections; finishing requests in flight")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
    log.info("service stopped")
    return code


def _listening(runner: web.AppRunner, host: str, port: int) -> Listening:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return Listening(str(address[0]), int(address[1]))
    return Listening(host, port)


def _say_listening(service: Service, listening: Listening, with_daemon: bool) -> None:
    auth = "bearer token required" if service.settings.serve_token else "no token (loopback only)"
    log.info(
        "listening on %s (/api/: %s; daemon: %s)",
        listening.url,
        auth,
        "in this process" if with_daemon else "not run here (--no-daemon)",
        extra={"url": listening.url},
    )
