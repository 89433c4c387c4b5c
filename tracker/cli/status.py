"""`tracker status`: is the tracker healthy? Usable as a health check (exit code)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import click

from tracker.cli.common import (
    cell,
    console,
    database_option,
    format_option,
    open_store,
    print_table,
)
from tracker.config import LIVE_WITHIN_SECONDS
from tracker.exceptions import ConfigError, StoreError
from tracker.health import DEFAULT_MAX_LAG, judge, unknown
from tracker.store.daemons import Health
from tracker.timeparse import utcnow

#: exit codes, as monitoring plugins read them (OK, WARNING/CRITICAL, UNKNOWN)
EXIT_HEALTHY, EXIT_UNHEALTHY, EXIT_UNKNOWN = 0, 1, 3


@click.command("status")
@click.option(
    "--max-lag",
    type=click.FloatRange(min=0),
    default=DEFAULT_MAX_LAG,
    show_default=True,
    help="Unhealthy when the most overdue poll is later than this (seconds).",
)
@click.option(
    "--live-within",
    type=click.FloatRange(min=0, min_open=True),
    default=LIVE_WITHIN_SECONDS,
    show_default=True,
    help="A daemon is live if it sent a heartbeat within this many seconds.",
)
@format_option(("table", "json"))
@database_option
def status_command(max_lag: float, live_within: float, fmt: str, database_url: str) -> None:
    """Daemons, schedule lag and deliveries, as a health check: exits 0 when healthy,
    1 when unhealthy (no live daemon while predictions are active, or lag beyond
    --max-lag), 3 when the database cannot be read (unreachable, no such file, no
    or a newer schema: health unknown, as monitoring plugins say UNKNOWN).

    With --format json the answer is JSON whatever the outcome: "healthy" is
    true, false or null (unknown), "reachable" says whether the database could
    be read and "error" why not.
    """
    try:
        with open_store(database_url) as store:
            verdict = judge(store, now=utcnow(), max_lag=max_lag, live_within=live_within)
    except (StoreError, ConfigError) as exc:
        verdict = unknown(str(exc))
    if fmt == "json":
        click.echo(json.dumps(verdict.report(), indent=2))
    elif verdict.health is None:
        click.echo(f"Error: {verdict.error}", err=True)
    else:
        _print(verdict.health, verdict.problems)
    if verdict.healthy is None:
        sys.exit(EXIT_UNKNOWN)
    sys.exit(EXIT_HEALTHY if verdict.healthy else EXIT_UNHEALTHY)


def _archive_lines(health: Health) -> list[tuple[str, object]]:
    """The archive's queue, once it has had files (TRACKER_ARCHIVE_URL)."""
    if not (health.pending_artifacts or health.failed_artifacts):
        return []
    return [
        ("files to archive", health.pending_artifacts),
        ("archive failed", health.failed_artifacts),
    ]


def _print(health: Health, problems: list[str]) -> None:
    rows = [
        {**asdict(d), "state": "live" if d.live else ("stopped" if d.stopped_at else "silent")}
        for d in health.daemons
    ]
    columns = ("name", "state", "version", "started_at", "heartbeat_at", "polls")
    print_table(rows, columns, title="daemons")
    out = console()
    out.print()
    lines = [
        ("active predictions", health.active_predictions),
        ("schedule lag", f"{health.schedule_lag:.1f} s"),
        ("most overdue poll", cell(health.oldest_overdue_poll) or "none"),
        ("pending deliveries", health.pending_deliveries),
        ("dead deliveries", health.dead_deliveries),
        *_archive_lines(health),
        ("health", "healthy" if not problems else "UNHEALTHY: " + "; ".join(problems)),
    ]
    for name, value in lines:
        out.print(f"{name:>19}  {value}", highlight=False, markup=False)
