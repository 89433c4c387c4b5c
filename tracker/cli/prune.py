"""`tracker prune`: remove the bulky history of predictions that finished long ago."""

from __future__ import annotations

import json

import click

from tracker.cli.common import database_option, format_option, open_store
from tracker.cli.when import METAVAR
from tracker.exceptions import InvalidInput
from tracker.store.retention import DEFAULT_BATCH_SIZE, PruneResult
from tracker.timeparse import MOMENT_FORMS, read_moment, utcnow

#: the text output: one line per count
LABELS = {
    "examined": "finished predictions examined",
    "affected": "predictions affected",
    "log_rows_deleted": "log rows deleted",
    "raw_bodies_cleared": "raw bodies cleared",
    "attempts_deleted": "delivery attempts deleted",
    "predictions_deleted": "predictions deleted",
    "kept_pending": "predictions kept (delivery pending)",
    "transitions_deleted": "status transitions deleted",
    "callbacks_deleted": "callbacks deleted",
    "deliveries_deleted": "deliveries deleted",
}


@click.command("prune")
@click.option(
    "--older-than",
    required=True,
    metavar=METAVAR,
    help=f"Prune predictions that finished before WHEN: {MOMENT_FORMS}.",
)
@click.option(
    "--keep-logs",
    is_flag=True,
    help="Keep the prediction_logs rows (predictions.logs keeps the whole text either way).",
)
@click.option(
    "--all",
    "delete_predictions",
    is_flag=True,
    help="Delete the predictions themselves, with their transitions, logs, callbacks and"
    " deliveries (a prediction with a pending delivery is kept).",
)
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=100_000),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Predictions per transaction.",
)
@format_option(("text", "json"), default="text")
@database_option
def prune_command(
    older_than: str,
    keep_logs: bool,
    delete_predictions: bool,
    dry_run: bool,
    batch_size: int,
    fmt: str,
    database_url: str,
) -> None:
    """Remove the history of predictions that finished before --older-than.

    A prediction has finished when it is no longer polled (done, lost or
    forgotten); it finished at its upstream completed_at, or at its last poll
    when upstream never said. Active predictions are never touched.

    By default this deletes their prediction_logs rows, sets their raw bodies
    to NULL and deletes the attempts of their delivered and dead deliveries;
    every other column stays. The work goes in short transactions of
    --batch-size predictions, so a running daemon is never held up for long.
    """
    if keep_logs and delete_predictions:
        raise click.UsageError("--keep-logs cannot be combined with --all")
    now = utcnow()
    cutoff = read_moment(older_than, "--older-than", now=now)
    if cutoff > now:
        raise InvalidInput(f"--older-than {older_than!r} is in the future")
    with open_store(database_url) as store:
        result = store.prune(
            cutoff=cutoff,
            keep_logs=keep_logs,
            delete_predictions=delete_predictions,
            dry_run=dry_run,
            batch_size=batch_size,
        )
    if fmt == "json":
        document = {"cutoff": cutoff.isoformat(), "dry_run": dry_run, **result.counts()}
        click.echo(json.dumps(document, indent=2))
    else:
        _print_text(result, dry_run=dry_run, delete_predictions=delete_predictions)


def _print_text(result: PruneResult, *, dry_run: bool, delete_predictions: bool) -> None:
    counts = result.counts()
    only_with_all = {
        "predictions_deleted",
        "kept_pending",
        "transitions_deleted",
        "callbacks_deleted",
        "deliveries_deleted",
    }
    width = max(len(label) for label in LABELS.values())
    for name, label in LABELS.items():
        if name in only_with_all and not delete_predictions:
            continue
        click.echo(f"{label:<{width}}  {counts[name]}")
    if dry_run:
        click.echo("dry run: nothing was changed")
