"""`tracker deliveries`: see and re-queue callback deliveries."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

import click

from tracker.api import Tracker
from tracker.cli.common import database_option, emit_rows, format_option, mask_targets
from tracker.cli.when import since_option
from tracker.domain import DeliveryState

LIST_COLUMNS = (
    "id",
    "prediction_id",
    "event",
    "kind",
    "target",
    "state",
    "attempts",
    "last_status_code",
    "last_error",
    "created_at",
    "next_attempt_at",
    "delivered_at",
)
STATES = tuple(s.value for s in DeliveryState)


@click.group("deliveries")
def deliveries_group() -> None:
    """See and re-queue callback deliveries (webhooks and email)."""


@deliveries_group.command("list")
@click.option("--state", "states", multiple=True, type=click.Choice(STATES), help="Repeatable.")
@click.option("--prediction", "prediction_id", metavar="ID", help="Only this prediction's.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many rows.")
@format_option()
@database_option
def list_command(
    states: tuple[str, ...],
    prediction_id: str | None,
    limit: int | None,
    fmt: str,
    database_url: str,
) -> None:
    """One row per delivery, oldest first."""
    with Tracker(database_url) as tracker:
        rows = tracker.list_deliveries(states, prediction_id, limit)
    records: list[dict[str, Any]] = mask_targets(
        {k: v for k, v in asdict(d).items() if k != "history"} for d in rows
    )
    emit_rows(records, LIST_COLUMNS if fmt == "table" else _columns(records), fmt)


def _columns(records: list[dict[str, Any]]) -> list[str]:
    return list(records[0]) if records else [*LIST_COLUMNS, "callback_id", "message_id"]


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
