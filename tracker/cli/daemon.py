"""`tracker daemon`: poll until stopped."""

from __future__ import annotations

import sys
from typing import Any

import click

from tracker import eventloop
from tracker.cli.common import database_option, open_store
from tracker.cli.options import daemon_options, daemon_settings
from tracker.config import Settings, require_api_key
from tracker.logsetup import configure_logging
from tracker.poll.assembly import open_daemon
from tracker.poll.daemon import NothingPolled


@click.command("daemon")
@click.option(
    "--once",
    is_flag=True,
    help="Poll everything due now once, send due callbacks, then exit;"
    " exit 1 when polls were due and none succeeded.",
)
@click.option("--exit-when-done", is_flag=True, help="Exit once no prediction is active.")
@daemon_options
@database_option
def daemon_command(once: bool, exit_when_done: bool, **options: Any) -> None:
    """Poll due predictions until stopped (SIGINT/SIGTERM finish in-flight polls, exit 0).

    The API key comes from TRACKER_API_KEY, ANYAPI_API_KEY or REPLICATE_API_TOKEN
    (first one set); it is never logged or stored. Without one the daemon does not
    start (exit 2), unless TRACKER_API_BASE is on this machine (127.0.0.0/8, ::1,
    localhost). Callbacks: TRACKER_WEBHOOK_SECRET signs webhooks, TRACKER_SMTP_URL
    and TRACKER_MAIL_FROM send mail, TRACKER_RETRY_SCHEDULE sets the retry delays,
    TRACKER_DEFAULT_WEBHOOK, TRACKER_DEFAULT_EMAIL and TRACKER_DEFAULT_EVENTS add
    callbacks to every prediction.
    """
    settings = daemon_settings(options)
    require_api_key(settings)
    configure_logging(fmt=settings.log_format, level=settings.log_level, secrets=settings.secrets())
    code = eventloop.run(run_daemon(settings, once=once, exit_when_done=exit_when_done))
    sys.exit(code)


async def run_daemon(
    settings: Settings, *, once: bool = False, exit_when_done: bool = False
) -> int:
    """Run the daemon until it stops; its exit code. NothingPolled (an ``Error:``
    line, exit 1) when ``once`` found polls due and none of them succeeded."""
    with open_store(settings.database_url) as store:
        async with open_daemon(store, settings) as daemon:
            code = await daemon.run(once=once, exit_when_done=exit_when_done)
    if once and daemon.nothing_polled is not None:
        raise NothingPolled(daemon.nothing_polled)
    return code
