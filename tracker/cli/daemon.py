"""`tracker daemon`: poll until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

import click

from tracker.callbacks.email import Mailer, parse_smtp_url, redacted
from tracker.callbacks.outbox import Sender
from tracker.callbacks.webhook import WebhookSender, make_webhook_client
from tracker.cli.common import database_option, open_store
from tracker.cli.options import daemon_options, daemon_settings
from tracker.config import Settings, require_api_key
from tracker.logsetup import configure_logging
from tracker.poll.daemon import NothingPolled, build_daemon
from tracker.poll.upstream import UpstreamClient, make_http_client

log = logging.getLogger("tracker")


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
    code = asyncio.run(run_daemon(settings, once=once, exit_when_done=exit_when_done))
    sys.exit(code)


async def run_daemon(
    settings: Settings, *, once: bool = False, exit_when_done: bool = False
) -> int:
    """Run the daemon until it stops; its exit code. NothingPolled (an ``Error:``
    line, exit 1) when ``once`` found polls due and none of them succeeded."""
    with open_store(settings.database_url) as store:
        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(
                make_http_client(max_connections=settings.concurrency)
            )
            upstream = UpstreamClient(
                http,
                settings.api_base,
                settings.api_key,
                max_answer_bytes=settings.max_answer_bytes,
                timeout=settings.poll_timeout,
            )
            senders = await _senders(settings, stack)
            daemon = build_daemon(store, upstream, settings, senders=senders)
            code = await daemon.run(once=once, exit_when_done=exit_when_done)
    if once and daemon.nothing_polled is not None:
        raise NothingPolled(daemon.nothing_polled)
    return code


async def _senders(settings: Settings, stack: contextlib.AsyncExitStack) -> dict[str, Sender]:
    """A webhook sender always; a mailer when TRACKER_SMTP_URL is set."""
    hooks = await stack.enter_async_context(
        make_webhook_client(
            timeout=settings.webhook_timeout,
            max_connections=64,
            allowed=settings.webhook_allowed_hosts,
        )
    )
    webhooks = WebhookSender(
        hooks, secret=settings.webhook_secret, timeout=settings.webhook_timeout
    )
    senders: dict[str, Sender] = {"webhook": webhooks}
    if settings.smtp_url:
        mailer = Mailer(parse_smtp_url(settings.smtp_url), settings.mail_from)
        stack.push_async_callback(mailer.close)
        senders["email"] = mailer
        log.info("mail goes through %s", redacted(settings.smtp_url))
    else:
        log.info("TRACKER_SMTP_URL is not set: email callbacks wait until it is")
    return senders
