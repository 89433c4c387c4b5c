"""`tracker report NAME`: canned reports over the tracker's tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from tracker.cli.common import (
    database_option,
    emit_rows,
    format_option,
    mask_targets,
    open_store,
)
from tracker.exceptions import InvalidInput
from tracker.inputs import parse_labels
from tracker.store.reports import ReportFilter, Row
from tracker.store.store import Store
from tracker.timeparse import parse_moment, utcnow

METRIC_COLUMNS = tuple(
    f"{m}_{s}"
    for m in ("predict_time", "queue_seconds", "run_seconds")
    for s in ("mean", "p50", "p95")
)

#: report name -> (columns, how to run it)
REPORTS: dict[str, tuple[tuple[str, ...], Callable[[Store, ReportFilter, int], list[Row]]]] = {
    "status": (
        ("status", "tracking", "predictions"),
        lambda store, flt, limit: store.report_status(flt),
    ),
    "models": (
        (
            "model",
            "predictions",
            "succeeded",
            "failed",
            "canceled",
            "aborted",
            "success_rate",
            *METRIC_COLUMNS,
        ),
        lambda store, flt, limit: store.report_models(flt),
    ),
    "daily": (
        ("day", "registered", "succeeded", "failed", "canceled", "aborted", "mean_run_seconds"),
        lambda store, flt, limit: store.report_daily(flt),
    ),
    "failures": (
        ("predictions", "error", "example_id", "last_seen"),
        lambda store, flt, limit: store.report_failures(flt, limit=limit),
    ),
    "deliveries": (
        (
            "kind",
            "target",
            "deliveries",
            "delivered",
            "dead",
            "pending",
            "mean_attempts",
            "p95_delivery_seconds",
        ),
        lambda store, flt, limit: store.report_deliveries(flt),
    ),
    "slow": (
        ("id", "status", "model", "since", "running_seconds", "poll_count", "last_polled_at"),
        lambda store, flt, limit: store.report_slow(flt, now=utcnow(), limit=limit),
    ),
}


@click.command("report")
@click.argument("name", metavar="NAME")
@click.option(
    "--since", metavar="WHEN", help="Predictions registered since: 2026-11-01, RFC 3339, or 7d."
)
@click.option(
    "--until", metavar="WHEN", help="Predictions registered before: same forms as --since."
)
@click.option("--model", help="Only this model.")
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only predictions with this label. Repeatable.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Rows for `failures` and `slow`.",
)
@format_option()
@database_option
def report_command(
    name: str,
    since: str | None,
    until: str | None,
    model: str | None,
    labels: tuple[str, ...],
    limit: int,
    fmt: str,
    database_url: str,
) -> None:
    """Print a canned report: status, models, daily, failures, deliveries or slow.

    \b
    status      predictions per status and tracking state
    models      per model: outcomes, success rate, mean/p50/p95 of predict_time,
                queue and run seconds
    daily       per UTC day: registered, completed by status, mean run seconds
    failures    failed predictions grouped by error text, most frequent first
    deliveries  per callback target: delivered, dead, pending, attempts, p95 latency
    slow        the longest-running active predictions
    """
    if name not in REPORTS:
        raise InvalidInput(f"unknown report {name!r}: choose from {', '.join(REPORTS)}")
    flt = ReportFilter(
        since=_moment("--since", since),
        until=_moment("--until", until),
        model=model,
        labels=parse_labels(labels),
    )
    columns, run = REPORTS[name]
    with open_store(database_url) as store:
        rows = run(store, flt, limit)
    emit_rows(mask_targets(rows), columns, fmt)


def _moment(option: str, text: str | None) -> Any:
    if text is None:
        return None
    moment = parse_moment(text)
    if moment is None:
        raise InvalidInput(
            f"cannot read {option} {text!r}: use a date (2026-11-01), an RFC 3339 time or 7d"
        )
    return moment
