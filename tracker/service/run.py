"""The life of `tracker serve`: the HTTP site and, unless ``--no-daemon``, the daemon,
in one event loop.

Start: the store is opened (its schema checked), the site listens, then the daemon
starts. SIGTERM or SIGINT: the site stops accepting connections and the requests in
flight are finished (up to SHUTDOWN_SECONDS; pushes among them still have the
daemon's writer), then the daemon stops as `tracker daemon` does (polls and
deliveries in flight finished, claims released); the exit code is 0. When the daemon
stops by itself (its database file was replaced, say), the site stops too and the
daemon's exit code is the process's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from ipaddress import ip_address

from aiohttp import web

from tracker.asyncapi import AsyncTracker
from tracker.config import Settings
from tracker.exceptions import ConfigError, InvalidInput
from tracker.poll.assembly import open_daemon
from tracker.poll.daemon import Daemon
from tracker.service.app import build_app
from tracker.service.context import Service
from tracker.service.metrics import Metrics
from tracker.service.protocol_log import quiet_bad_requests
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
    handle_signals: bool = True,
) -> int:
    """Run the service until SIGTERM or SIGINT (with ``handle_signals``) or until
    ``stop`` is set; its exit code. ``on_listening`` is told where it listens."""
    check_host(host, settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with _service(settings, with_daemon) as service:
            return await _run(service, host, port, on_listening, stop)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def _service(settings: Settings, with_daemon: bool) -> AsyncIterator[Service]:
    """The service's parts, closed when the block ends: the store (its schema checked
    first), the application layer, the metrics and, unless not wanted, the daemon."""
    store = await asyncio.to_thread(Store.open_checked, settings.database_url)
    try:
        metrics = Metrics(store)
        async with contextlib.AsyncExitStack() as stack:
            daemon = None
            if with_daemon:
                daemon = await stack.enter_async_context(
                    open_daemon(store, settings, observer=metrics)
                )
            # Cancel requests share the daemon's request budget and 429 pauses.
            gate = daemon.poller.gate if daemon is not None else None
            tracker = await stack.enter_async_context(AsyncTracker(settings=settings, gate=gate))
            service = Service(settings, tracker, store, metrics)
            service.daemon = daemon
            yield service
    finally:
        await asyncio.to_thread(store.close)


async def _run(
    service: Service,
    host: str,
    port: int,
    on_listening: Callable[[Listening], None] | None,
    stop: asyncio.Event,
) -> int:
    # lingering_time=0: a body left unread (over the limit, refused before it was read)
    # is not drained: its connection is closed after the answer.
    quiet_bad_requests()
    runner = web.AppRunner(
        build_app(service),
        access_log=None,
        shutdown_timeout=SHUTDOWN_SECONDS,
        lingering_time=0,
    )
    await runner.setup()
    daemon_run: asyncio.Task[int] | None = None
    code = 0
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ServeRefused(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        listening = _listening(runner, host, port)
        _say_listening(service, listening)
        if service.daemon is not None:
            daemon_run = asyncio.create_task(
                service.daemon.run(handle_signals=False), name="daemon"
            )
        if on_listening is not None:
            on_listening(listening)
        await _until_stopped(stop, daemon_run)
        log.info("stopping: no new connections; finishing requests in flight")
    finally:
        await runner.cleanup()
        if daemon_run is not None and service.daemon is not None:
            code = await _stop_daemon(service.daemon, daemon_run)
    log.info("service stopped")
    return code


async def _until_stopped(stop: asyncio.Event, daemon_run: asyncio.Task[int] | None) -> None:
    """Until ``stop`` is set, or the daemon ended by itself."""
    if daemon_run is None:
        await stop.wait()
        return
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([stopped, daemon_run], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if daemon_run.done() and not stop.is_set():
        log.error("the daemon stopped: the service stops too")


async def _stop_daemon(daemon: Daemon, daemon_run: asyncio.Task[int]) -> int:
    """Stop the daemon (its polls and deliveries in flight finish) and wait for it."""
    daemon.stop()
    return await daemon_run


def _listening(runner: web.AppRunner, host: str, port: int) -> Listening:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return Listening(str(address[0]), int(address[1]))
    return Listening(host, port)


def _say_listening(service: Service, listening: Listening) -> None:
    auth = "bearer token required" if service.settings.serve_token else "no token (loopback only)"
    where = "in this process" if service.daemon is not None else "not here (--no-daemon)"
    log.info(
        "listening on %s (/api/: %s; daemon: %s)",
        listening.url,
        auth,
        where,
        extra={"url": listening.url},
    )
