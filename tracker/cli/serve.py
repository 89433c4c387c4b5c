"""`tracker serve`: the HTTP service, with the daemon in the same process."""

from __future__ import annotations

import sys
from typing import Any

import click

from tracker import eventloop
from tracker.cli.options import daemon_options, daemon_settings, database_option
from tracker.config import require_api_key
from tracker.logsetup import configure_logging
from tracker.service.run import DEFAULT_HOST, DEFAULT_PORT, check_host, serve


@click.command("serve")
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    help="Address to listen on. Beyond loopback (127.0.0.0/8, ::1, localhost) only with"
    " TRACKER_SERVE_TOKEN set.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on (0: any free port, named in the log).",
)
@click.option(
    "--no-daemon",
    is_flag=True,
    help="Serve only; let `tracker daemon` processes elsewhere do the polling.",
)
@daemon_options
@database_option
def serve_command(host: str, port: int, no_daemon: bool, **options: Any) -> None:
    """Serve the JSON API, /healthz and /metrics, and run the daemon in the same process.

    \b
    GET  /healthz                        200 healthy, 503 with the reasons (as `tracker status`)
    GET  /metrics                        Prometheus text format
    POST /api/predictions                register one ({"id": ...}) or a list
    GET  /api/predictions                ?status=&active=&model=&label=&since=&until=&limit=
    GET  /api/predictions/ID             what `tracker show ID --format json` prints
    POST /api/predictions/ID/cancel      501 (not available yet)
    POST /webhooks/upstream              the upstream's own webhooks, signed with
                                         TRACKER_UPSTREAM_WEBHOOK_SECRET (404 without it)

    /api/ routes need `Authorization: Bearer TOKEN` when TRACKER_SERVE_TOKEN is set;
    without it the service listens on loopback only. SIGTERM or SIGINT: stop accepting,
    finish requests, polls and deliveries in flight, exit 0. Every option of `tracker
    daemon` applies to the daemon; it needs an API key, as `tracker daemon` does.
    """
    settings = daemon_settings(options)
    check_host(host, settings)
    if not no_daemon:
        require_api_key(settings)
    configure_logging(fmt=settings.log_format, level=settings.log_level, secrets=settings.secrets())
    code = eventloop.run(serve(settings, host=host, port=port, with_daemon=not no_daemon))
    sys.exit(code)
