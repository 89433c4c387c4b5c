"""`tracker add`, `list`, `show`, `forget`."""

from __future__ import annotations

import sys
from dataclasses import asdict, fields
from typing import Any

import click
from rich.text import Text

from tracker.api import Tracker
from tracker.cli.common import (
    cell,
    console,
    database_option,
    emit_rows,
    format_option,
    mask_targets,
    print_table,
    to_jsonable,
)
from tracker.domain import Prediction, PredictionDetail
from tracker.inputs import (
    MAX_ID_FILE_BYTES,
    MAX_ID_LINE_BYTES,
    parse_labels,
    read_ids,
    validate_ids,
)
from tracker.text.display import escape_text, json_text

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

#: how `show` continues a field's value on the next line
FOLD = "\n" + " " * 15

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


@click.command("show")
@click.argument("prediction_id")
@format_option(("text", "json"), default="text")
@database_option
def show_command(prediction_id: str, fmt: str, database_url: str) -> None:
    """Everything known about one prediction: timeline, logs, metrics, callbacks."""
    with Tracker(database_url) as tracker:
        detail = tracker.detail(prediction_id)
    if fmt == "json":
        click.echo(json_text(to_jsonable(_masked(asdict(detail))), indent=2))
    else:
        _print_detail(detail)


def _masked(detail: dict[str, Any]) -> dict[str, Any]:
    """``show --format json`` with webhook targets masked, as in every other output."""
    callbacks, deliveries = detail["callbacks"], detail["deliveries"]
    return {**detail, "callbacks": mask_targets(callbacks), "deliveries": mask_targets(deliveries)}


def _print_detail(detail: PredictionDetail) -> None:
    p = detail.prediction
    out = console()
    shown = [
        ("id", p.id),
        ("status", p.status or "(not seen yet)"),
        ("tracking", p.tracking),
        ("model", p.model),
        ("version", p.version),
        ("created", p.created_at),
        ("started", p.started_at),
        ("completed", p.completed_at),
        ("predict time", f"{p.predict_time:.3f} s" if p.predict_time is not None else None),
        ("output", p.output),
        ("error", p.error),
        ("data removed", p.data_removed),
        ("labels", p.labels or None),
        ("metrics", p.metrics),
        ("registered", p.registered_at),
        ("polls", f"{p.poll_count} ({p.error_count} errors)"),
        ("last polled", p.last_polled_at),
        ("next poll", p.next_poll_at),
        ("last error", p.last_error),
    ]
    for name, value in shown:
        if value is not None and value != "":
            out.print(_field_line(name, cell(value)))
    transitions = [
        {
            "observed": t.observed_at,
            "from": t.from_status or "",
            "to": t.to_status,
            "upstream time": t.upstream_at,
        }
        for t in detail.transitions
    ]
    out.print()
    print_table(transitions, ("observed", "from", "to", "upstream time"), title="timeline")
    if detail.callbacks:
        out.print()
        print_table(
            mask_targets(asdict(c) for c in detail.callbacks),
            ("id", "kind", "target", "events"),
            title="callbacks",
        )
    if detail.deliveries:
        _print_deliveries(detail)
    out.print()
    counts = f" ({len(detail.logs)} chunks, {len(p.logs)} characters)"
    out.print(Text.assemble(("logs", "bold"), counts))
    sys.stdout.flush()
    logs = escape_text(p.logs)  # newlines and tabs kept, every other control shown escaped
    click.echo(logs, nl=not logs.endswith("\n"))


def _field_line(name: str, value: str) -> Text:
    """One field of ``show``: the name in bold, the value as plain text (never markup),
    escaped, its further lines indented so that they cannot pass for other fields."""
    return Text.assemble((f"{name:>13}", "bold"), "  ", escape_text(value).replace("\n", FOLD))


def _print_deliveries(detail: PredictionDetail) -> None:
    console().print()
    rows = mask_targets(asdict(d) for d in detail.deliveries)
    columns = ("id", "event", "kind", "target", "state", "attempts", "last_status_code")
    print_table(rows, (*columns, "last_error", "delivered_at"), title="deliveries")
    attempts = [{"delivery": d.id, **asdict(a)} for d in detail.deliveries for a in d.history]
    if attempts:
        console().print()
        print_table(
            attempts,
            ("delivery", "attempted_at", "status_code", "error", "duration_ms"),
            title="delivery attempts",
        )


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
