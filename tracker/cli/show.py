"""`tracker show`: everything known about one prediction."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Any

import click
from rich.text import Text

from tracker.api import Tracker
from tracker.cli.common import (
    cell,
    console,
    database_option,
    format_option,
    mask_targets,
    print_table,
    to_jsonable,
)
from tracker.domain import PredictionDetail
from tracker.text.display import escape_text, json_text

#: how `show` continues a field's value on the next line
FOLD = "\n" + " " * 15


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
