"""`tracker add`, `list`, `forget`."""

from __future__ import annotations

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
    wide_option,
)
from tracker.cli.listing import label_option, limit_option, say_how_many
from tracker.cli.when import since_until_options
from tracker.domain import Status, Tracking
from tracker.events import EVENT_ORDER
from tracker.inputs import (
    MAX_ID_FILE_BYTES,
    MAX_ID_LINE_BYTES,
    parse_labels,
    read_ids,
    validate_ids,
)
from tracker.records import RECORD_COLUMNS, listed_record

#: `tracker list` as a table: the main columns, then those --wide adds
LIST_COLUMNS = (
    Col("id", kind="key"),
    Col("status", priority=3, floor=10),
    Col("tracking", wide=True),  # shown in status when it is news; always read
    Col("model", priority=2),
    Col("version", wide=True),
    Col("registered_at", "registered", kind="ago", priority=2),
    Col("last_polled_at", "last poll", kind="ago", wide=True),
    Col("next_poll_at", "next poll", kind="ago", wide=True),
    Col("poll_count", "polls", kind="count", wide=True),
    Col("error_count", "errors", kind="count", wide=True),
    Col("predict_time", "predict", kind="seconds", wide=True),
    Col("labels", kind="labels", wide=True),
    Col("last_error", "last error"),
)
#: the columns the table reads (its status column is made of status and tracking)
TABLE_READS = tuple(c.name for c in LIST_COLUMNS)
STATUSES = tuple(s.value for s in Status)


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
    help=f"Comma list of {','.join(e.value for e in EVENT_ORDER)}.",
)
@click.option(
    "--label", "labels", multiple=True, metavar="KEY=VALUE", help="Attach a label. Repeatable."
)
@click.option(
    "--deadline",
    metavar="DURATION",
    help="Cancel it (once, upstream) if it has not ended this long after it was created"
    " upstream: 90s, 30m, 2h; 'none' for no deadline. Applies to known IDs too."
    "  [default: TRACKER_DEFAULT_DEADLINE, for new IDs]",
)
@database_option
def add_command(
    ids: tuple[str, ...],
    id_file: Any,
    webhooks: tuple[str, ...],
    emails: tuple[str, ...],
    events: str,
    labels: tuple[str, ...],
    deadline: str | None,
    database_url: str,
) -> None:
    """Register prediction IDs to track (adding a known ID only adds its new callbacks)."""
    all_ids = validate_ids(ids)
    if id_file is not None:
        all_ids.extend(read_ids(id_file, "stdin" if id_file.name == "<stdin>" else id_file.name))
    if not all_ids:
        raise click.UsageError("give at least one prediction ID, or --file")
    with Tracker(database_url) as tracker:
        result = tracker.add(
            all_ids, webhooks, emails, events=events, labels=parse_labels(labels), deadline=deadline
        )
    message = f"registered {result.added} prediction{'s' if result.added != 1 else ''}"
    if result.already_known:
        message += f" ({result.already_known} already known)"
    if result.callbacks_added:
        message += (
            f", {result.callbacks_added} new callback{'s' if result.callbacks_added != 1 else ''}"
        )
    click.echo(message)


@click.command("list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(STATUSES),
    help="Only this upstream status. Repeatable. (An upstream may send statuses beyond"
    " these six; they are stored and listed, and --format json shows them.)",
)
@click.option("--active", is_flag=True, help="Only predictions still being polled.")
@click.option("--model", metavar="OWNER/NAME", help="Only this model.")
@since_until_options("Predictions registered")
@label_option("Only predictions with this label")
@limit_option("predictions")
@wide_option()
@format_option()
@database_option
def list_command(
    statuses: tuple[str, ...],
    active: bool,
    model: str | None,
    since: datetime | None,
    until: datetime | None,
    labels: tuple[str, ...],
    limit: int,
    wide: bool,
    fmt: str,
    database_url: str,
) -> None:
    """One row per prediction, newest registration first.

    In a terminal the table shows the main columns (--wide for all) and says on
    stderr when --limit left rows out; piped, it prints one tab-separated line per
    row under a header line. JSON and CSV have every field but the logs.
    """
    table = fmt == "table"
    filters: dict[str, Any] = {
        "status": statuses,
        "active": active,
        "model": model,
        "since": since,
        "until": until,
        "labels": parse_labels(labels),
    }
    with Tracker(database_url) as tracker:
        rows = tracker.iter_columns(
            TABLE_READS if table else RECORD_COLUMNS,
            limit=limit or None,
            newest_first=True,
            **filters,
        )
        if table:
            shown = emit((_table_row(r) for r in rows), fmt, LIST_COLUMNS, wide=wide)
            if is_terminal():
                say_how_many(shown, limit, "predictions", partial(tracker.count, **filters))
        else:
            records = (listed_record(row) for row in rows)
            emit(records, fmt, RECORD_COLUMNS)


def _table_row(row: dict[str, Any]) -> dict[str, Any]:
    """What the table shows: the status, and how the tracker stands with it when that
    is news (lost, forgotten; not polled yet)."""
    status, tracking = row["status"], row["tracking"]
    state = status or ("waiting" if tracking == Tracking.ACTIVE else "never seen")
    if tracking in (Tracking.LOST, Tracking.FORGOTTEN):
        state = f"{state} ({tracking})"
    return {**row, "status": state}


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
