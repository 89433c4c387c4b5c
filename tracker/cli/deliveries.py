"""`tracker deliveries`: see and re-queue callback deliveries."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from functools import partial
from typing import Any

import click

from tracker.api import Tracker
from tracker.cli.common import (
    Col,
    database_option,
    emit,
    format_option,
    is_terminal,
    mask_target,
    wide_option,
)
from tracker.cli.listing import label_option, limit_option, say_how_many
from tracker.cli.when import since_option, since_until_options
from tracker.domain import Delivery, DeliveryState
from tracker.inputs import parse_labels

#: `deliveries list` as a table: the main columns, then those --wide adds
LIST_COLUMNS = (
    Col("id", kind="key"),
    Col("prediction_id", "prediction", kind="key"),
    Col("event", priority=2, floor=9),
    Col("kind", wide=True),
    Col("state", priority=3, floor=9),
    Col("attempts", "tries", kind="count", priority=2),
    Col("last_status_code", "code", kind="count", wide=True),
    Col("target", priority=1, floor=16),
    Col("created_at", "created", kind="ago", priority=0),
    Col("next_attempt_at", "next try", kind="ago", wide=True),
    Col("delivered_at", "delivered", kind="ago", wide=True),
    Col("callback_id", "callback", kind="count", wide=True),
    Col("message_id", "webhook-id", wide=True),
    Col("last_error", "last error", priority=2),
)
#: what JSON and CSV have: every field of a delivery but its attempts
RECORD_COLUMNS = tuple(f.name for f in fields(Delivery) if f.name != "history")
STATES = tuple(s.value for s in DeliveryState)


@click.group("deliveries")
def deliveries_group() -> None:
    """See and re-queue callback deliveries (webhooks and email)."""


@deliveries_group.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATES),
    help="Only this state. Repeatable.",
)
@click.option("--prediction", "prediction_id", metavar="ID", help="Only this prediction's.")
@since_until_options("Deliveries created")
@label_option("Only deliveries about predictions with this label")
@limit_option("deliveries")
@wide_option()
@format_option()
@database_option
def list_command(
    states: tuple[str, ...],
    prediction_id: str | None,
    since: datetime | None,
    until: datetime | None,
    labels: tuple[str, ...],
    limit: int,
    wide: bool,
    fmt: str,
    database_url: str,
) -> None:
    """One row per delivery, newest first.

    In a terminal the table shows the main columns (--wide for all) and says on
    stderr when --limit left rows out; piped, it prints one tab-separated line per
    row under a header line. Webhook URLs are shown with secrets masked.
    """
    filters: dict[str, Any] = {"since": since, "until": until, "labels": parse_labels(labels)}
    with Tracker(database_url) as tracker:
        found = tracker.iter_deliveries(
            states, prediction_id, limit or None, newest_first=True, **filters
        )
        records = (mask_target(_record(d)) for d in found)
        shown = emit(records, fmt, LIST_COLUMNS, data=RECORD_COLUMNS, wide=wide)
        if fmt == "table" and is_terminal():
            count = partial(tracker.count_deliveries, states, prediction_id, **filters)
            say_how_many(shown, limit, "deliveries", count)


def _record(delivery: Delivery) -> dict[str, Any]:
    return {f: getattr(delivery, f) for f in RECORD_COLUMNS}


@deliveries_group.command("retry")
@click.argument("delivery_ids", nargs=-1, type=int)
@click.option("--prediction", "prediction_id", metavar="ID", help="Every dead delivery of it.")
@since_option("Every dead delivery created")
@database_option
def retry_command(
    delivery_ids: tuple[int, ...],
    prediction_id: str | None,
    since: datetime | None,
    database_url: str,
) -> None:
    """Re-queue dead deliveries: the ones given, a prediction's, or all since a time.

    A re-queued delivery keeps its webhook-id and payload and gets the whole
    retry schedule again; the daemon sends it on its next pass.
    """
    with Tracker(database_url) as tracker:
        count = tracker.retry_deliveries(delivery_ids, prediction_id, since)
    click.echo(f"re-queued {count} dead deliver{'y' if count == 1 else 'ies'}")
