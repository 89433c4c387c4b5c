"""`tracker prune`: remove the bulky history of predictions that finished long ago."""

from __future__ import annotations

import functools
import json
import sys
from datetime import datetime

import click

from tracker.cli.common import cell, database_option, format_option, open_store
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
#: the text output of a dry run: what would happen, one sentence per count
WOULD = {
    "affected": ("would prune", "prediction", "predictions"),
    "log_rows_deleted": ("would delete", "log row", "log rows"),
    "raw_bodies_cleared": ("would clear", "raw body", "raw bodies"),
    "attempts_deleted": ("would delete", "delivery attempt", "delivery attempts"),
    "predictions_deleted": ("would delete", "prediction", "predictions"),
    "kept_pending": (
        "would keep",
        "prediction (delivery pending)",
        "predictions (delivery pending)",
    ),
    "transitions_deleted": ("would delete", "status transition", "status transitions"),
    "callbacks_deleted": ("would delete", "callback", "callbacks"),
    "deliveries_deleted": ("would delete", "delivery", "deliveries"),
}
#: counts that only --all makes
ONLY_WITH_ALL = frozenset(
    {
        "predictions_deleted",
        "kept_pending",
        "transitions_deleted",
        "callbacks_deleted",
        "deliveries_deleted",
    }
)


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
    "--yes",
    "-y",
    is_flag=True,
    help="Do not ask before --all deletes predictions (needed when stdin is not a terminal).",
)
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
    yes: bool,
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

    --all asks first in a terminal; elsewhere (a script, cron) it needs --yes.
    """
    if keep_logs and delete_predictions:
        raise click.UsageError("--keep-logs cannot be combined with --all")
    now = utcnow()
    cutoff = read_moment(older_than, "--older-than", now=now)
    if cutoff > now:
        raise InvalidInput(f"--older-than {older_than!r} is in the future")
    ask = delete_predictions and not dry_run and not yes
    if ask and not sys.stdin.isatty():
        raise click.UsageError(
            "--all deletes predictions for good: add --yes to confirm (stdin is not a terminal)"
        )
    with open_store(database_url) as store:
        prune = functools.partial(
            store.prune,
            cutoff=cutoff,
            keep_logs=keep_logs,
            delete_predictions=delete_predictions,
            batch_size=batch_size,
        )
        if ask and not _confirmed(prune(dry_run=True), cutoff):
            click.echo("nothing was deleted", err=True)
            sys.exit(1)
        result = prune(dry_run=dry_run)
    if fmt == "json":
        document = {"cutoff": cutoff.isoformat(), "dry_run": dry_run, **result.counts()}
        click.echo(json.dumps(document, indent=2))
    else:
        _print_text(result, dry_run=dry_run, delete_predictions=delete_predictions)


def _confirmed(planned: PruneResult, cutoff: datetime) -> bool:
    """Ask in the terminal before --all deletes predictions (nothing to delete: no question)."""
    if not planned.predictions_deleted:
        return True
    count = planned.predictions_deleted
    return click.confirm(
        f"Delete {count:,} prediction{'' if count == 1 else 's'} that finished before"
        f" {cell(cutoff)}, with their transitions, logs, callbacks and deliveries?",
        default=False,
        err=True,
    )


def _print_text(result: PruneResult, *, dry_run: bool, delete_predictions: bool) -> None:
    counts = result.counts()
    shown = [n for n in LABELS if delete_predictions or n not in ONLY_WITH_ALL]
    if dry_run:
        click.echo(f"{counts['examined']:,} finished predictions examined")
        for name in shown[1:]:
            verb, one, many = WOULD[name]
            click.echo(f"{verb} {counts[name]:,} {one if counts[name] == 1 else many}")
        click.echo("dry run: nothing was changed")
        return
    width = max(len(label) for label in LABELS.values())
    for name in shown:
        click.echo(f"{LABELS[name]:<{width}}  {counts[name]}")
