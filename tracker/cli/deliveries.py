"""`tracker deliveries`: see and re-queue callback deliveries."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from tracker.cli.common import (
    database_option,
    emit_rows,
    format_option,
    mask_targets,
    open_store,
)
from tracker.domain import DeliveryState, validate_id
from tracker.exceptions import InvalidInput
from tracker.timeparse import parse_moment, utcnow

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
    if prediction_id is not None:
        validate_id(prediction_id)
    store = open_store(database_url)
    try:
        rows = store.list_deliveries(states=states, prediction_id=prediction_id, limit=limit)
    finally:
        store.close()
    records: list[dict[str, Any]] = mask_targets(
        {k: v for k, v in asdict(d).items() if k != "history"} for d in rows
    )
    emit_rows(records, LIST_COLUMNS if fmt == "table" else _columns(records), fmt)


def _columns(records: list[dict[str, Any]]) -> list[str]:
    return list(records[0]) if records else [*LIST_COLUMNS, "callback_id", "message_id"]


@deliveries_group.command("retry")
@click.argument("delivery_ids", nargs=-1, type=int)
@click.option("--prediction", "prediction_id", metavar="ID", help="Every dead delivery of it.")
@click.option("--since", metavar="TIME", help="Every dead delivery created since (date, time, 7d).")
@database_option
def retry_command(
    delivery_ids: tuple[int, ...], prediction_id: str | None, since: str | None, database_url: str
) -> None:
    """Re-queue dead deliveries: the ones given, a prediction's, or all since a time.

    A re-queued delivery keeps its webhook-id and payload and gets the whole
    retry schedule again; the daemon sends it on its next pass.
    """
    if not (delivery_ids or prediction_id or since):
        raise click.UsageError("give delivery IDs, --prediction ID or --since TIME")
    if prediction_id is not None:
        validate_id(prediction_id)
    moment = None
    if since is not None:
        moment = parse_moment(since)
        if moment is None:
            raise InvalidInput(
                f"cannot read --since {since!r}: use 2026-11-01, an RFC 3339 time or 7d"
            )
    store = open_store(database_url)
    try:
        count = store.retry_deliveries(
            now=utcnow(), ids=delivery_ids, prediction_id=prediction_id, since=moment
        )
    finally:
        store.close()
    click.echo(f"re-queued {count} dead deliver{'y' if count == 1 else 'ies'}")
