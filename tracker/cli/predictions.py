"""`tracker add`, `list`, `forget`."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import click

from tracker.api import Tracker
from tracker.cli.common import (
    database_option,
    emit_rows,
    format_option,
)
from tracker.domain import Prediction
from tracker.inputs import (
    MAX_ID_FILE_BYTES,
    MAX_ID_LINE_BYTES,
    parse_labels,
    read_ids,
    validate_ids,
)

LIST_COLUMNS = (
    "id",
    "status",
    "tracking",
    "model",
    "poll_count",
    "registered_at",
    "last_polled_at",
    "next_poll_at",
    "last_error",
)

#: what `list --format json|csv` prints: every field of a prediction but its logs
RECORD_COLUMNS = tuple(f.name for f in fields(Prediction) if f.name != "logs")


@click.command("add")
@click.argument("ids", nargs=-1)
@click.option(
    "--file",
    "id_file",
    type=click.File("rb"),
    metavar="PATH",
    help="Read IDs from a file, one per line ('-' for stdin). UTF-8; lines of at most"
    f" {MAX_ID_LINE_BYTES} bytes, files of at most {MAX_ID_FILE_BYTES // 2**20} MiB"
    " (1.2 million IDs).",
)
@click.option(
    "--webhook",
    "webhooks",
    multiple=True,
    metavar="URL",
    help="POST the prediction here on each event. Repeatable.",
)
@click.option(
    "--email",
    "emails",
    multiple=True,
    metavar="ADDR",
    help="Mail this address on each event. Repeatable.",
)
@click.option(
    "--events",
    default="completed",
    show_default=True,
    help="Comma list of start,output,logs,completed.",
)
@click.option(
    "--label", "labels", multiple=True, metavar="KEY=VALUE", help="Attach a label. Repeatable."
)
@database_option
def add_command(
    ids: tuple[str, ...],
    id_file: Any,
    webhooks: tuple[str, ...],
    emails: tuple[str, ...],
    events: str,
    labels: tuple[str, ...],
    database_url: str,
) -> None:
    """Register prediction IDs to track (adding a known ID only adds its new callbacks)."""
    all_ids = validate_ids(ids)
    if id_file is not None:
        all_ids.extend(read_ids(id_file, "stdin" if id_file.name == "<stdin>" else id_file.name))
    if not all_ids:
        raise click.UsageError("give at least one prediction ID, or --file")
    with Tracker(database_url) as tracker:
        result = tracker.add(all_ids, webhooks, emails, events=events, labels=parse_labels(labels))
    message = f"registered {result.added} prediction{'s' if result.added != 1 else ''}"
    if result.already_known:
        message += f" ({result.already_known} already known)"
    if result.callbacks_added:
        message += (
            f", {result.callbacks_added} new callback{'s' if result.callbacks_added != 1 else ''}"
        )
    click.echo(message)


@click.command("list")
@click.option("--status", "statuses", multiple=True, help="Only this upstream status. Repeatable.")
@click.option("--active", is_flag=True, help="Only predictions still being polled.")
@click.option("--model", help="Only this model (owner/name).")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many rows.")
@format_option()
@database_option
def list_command(
    statuses: tuple[str, ...],
    active: bool,
    model: str | None,
    limit: int | None,
    fmt: str,
    database_url: str,
) -> None:
    """One row per prediction, oldest registration first."""
    columns = LIST_COLUMNS if fmt == "table" else RECORD_COLUMNS
    with Tracker(database_url) as tracker:
        rows = tracker.list_columns(columns, statuses, active=active, model=model, limit=limit)
    if fmt == "table":
        emit_rows([_list_row(row) for row in rows], LIST_COLUMNS, fmt)
    else:
        emit_rows([{**row, "labels": row["labels"] or {}} for row in rows], RECORD_COLUMNS, fmt)


def _list_row(row: dict[str, Any]) -> dict[str, Any]:
    if row["last_error"]:
        row["last_error"] = row["last_error"][:60]
    return row


@click.command("forget")
@click.argument("ids", nargs=-1, required=True)
@database_option
def forget_command(ids: tuple[str, ...], database_url: str) -> None:
    """Stop tracking predictions; their history stays in the database."""
    with Tracker(database_url) as tracker:
        result = tracker.forget(ids)
    known = len(result.known)
    click.echo(f"forgot {known} prediction{'s' if known != 1 else ''}")
    if result.unknown:
        raise click.ClickException(f"not registered: {', '.join(result.unknown)}")
