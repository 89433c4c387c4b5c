"""`tracker prune`: remove the bulky history of predictions that finished long ago."""

from __future__ import annotations

import functools
import json
import sys
from datetime import datetime
from typing import Any

import click

from tracker import eventloop
from tracker.archive.pruning import FilesDeleted, prune_with_files
from tracker.archive.runner import require_archive
from tracker.cli.common import cell, database_option, format_option, open_store
from tracker.cli.options import setting_options
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
#: where the counts of the text output start
WIDTH = max(len(label) for label in LABELS.values())
#: the text output of --archived-files, one line per count (zeros left out but the first)
FILE_LABELS = {
    "archived_files_deleted": "archived files deleted",
    "archived_files_missing": "archived files already gone",
    "archived_files_elsewhere": "archived files elsewhere (kept)",
    "archived_files_not_deleted": "archived files not deleted",
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
@click.option(
    "--archived-files",
    is_flag=True,
    help="With --all: delete the archived output files of the predictions deleted from"
    " the archive (TRACKER_ARCHIVE_URL) too. Without it they stay in the archive.",
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
@setting_options("archive_url")
@format_option(("text", "json"), default="text")
@database_option
def prune_command(
    older_than: str,
    keep_logs: bool,
    delete_predictions: bool,
    archived_files: bool,
    dry_run: bool,
    yes: bool,
    batch_size: int,
    archive_url: str | None,
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
    The output files archived for the predictions it deletes stay in the archive
    unless --archived-files is given.
    """
    if keep_logs and delete_predictions:
        raise click.UsageError("--keep-logs cannot be combined with --all")
    if archived_files and not delete_predictions:
        raise click.UsageError(
            "--archived-files goes with --all: it deletes the files of the predictions"
            " --all deletes"
        )
    if archived_files:
        require_archive(archive_url, "--archived-files deletes files from the archive")
    now = utcnow()
    cutoff = read_moment(older_than, "--older-than", now=now)
    if cutoff > now:
        raise InvalidInput(f"--older-than {older_than!r} is in the future")
    ask = delete_predictions and not dry_run and not yes
    if ask and not sys.stdin.isatty():
        raise click.UsageError(
            "--all deletes predictions for good: add --yes to confirm (stdin is not a terminal)"
        )
    options: dict[str, Any] = {
        "cutoff": cutoff,
        "keep_logs": keep_logs,
        "delete_predictions": delete_predictions,
        "batch_size": batch_size,
    }
    files = None
    with open_store(database_url) as store:
        prune = functools.partial(store.prune, **options)
        if ask and not _confirmed(prune(dry_run=True), cutoff, archived_files):
            click.echo("nothing was deleted", err=True)
            sys.exit(1)
        if archived_files and not dry_run:
            assert archive_url is not None
            result, files = eventloop.run(prune_with_files(store, archive_url, **options))
        else:
            result = prune(dry_run=dry_run)
    if fmt == "json":
        document = {"cutoff": cutoff.isoformat(), "dry_run": dry_run, **result.counts()}
        click.echo(json.dumps(document | (files.counts() if files else {}), indent=2))
    else:
        lines = _file_lines(result, files, dry_run=dry_run, archived_files=archived_files)
        _print_text(result, dry_run=dry_run, delete_predictions=delete_predictions, files=lines)
    if files is not None and files.failed:
        raise click.ClickException(
            f"{files.failed:,} archived file{'' if files.failed == 1 else 's'} could not be"
            f" deleted ({files.errors[0]}); their predictions are deleted"
        )


def _confirmed(planned: PruneResult, cutoff: datetime, archived_files: bool) -> bool:
    """Ask in the terminal before --all deletes predictions (nothing to delete: no question)."""
    if not planned.predictions_deleted:
        return True
    count = planned.predictions_deleted
    owned = "transitions, logs, callbacks and deliveries"
    if archived_files and planned.archived_files:
        files = planned.archived_files
        owned = f"transitions, logs, callbacks, deliveries and {files:,} archived file" + (
            "" if files == 1 else "s"
        )
    return click.confirm(
        f"Delete {count:,} prediction{'' if count == 1 else 's'} that finished before"
        f" {cell(cutoff)}, with their {owned}?",
        default=False,
        err=True,
    )


def _print_text(
    result: PruneResult, *, dry_run: bool, delete_predictions: bool, files: list[str]
) -> None:
    """The counts, one line each, then ``files`` (the lines of ``_file_lines``)."""
    counts = result.counts()
    shown = [n for n in LABELS if delete_predictions or n not in ONLY_WITH_ALL]
    if dry_run:
        click.echo(f"{counts['examined']:,} finished predictions examined")
        for name in shown[1:]:
            verb, one, many = WOULD[name]
            click.echo(f"{verb} {counts[name]:,} {one if counts[name] == 1 else many}")
        for line in files:
            click.echo(line)
        click.echo("dry run: nothing was changed")
        return
    for name in shown:
        click.echo(f"{LABELS[name]:<{WIDTH}}  {counts[name]}")
    for line in files:
        click.echo(line)


def _file_lines(
    result: PruneResult, files: FilesDeleted | None, *, dry_run: bool, archived_files: bool
) -> list[str]:
    """What became of the archived files of the deleted predictions: nothing when
    there were none and none were asked for."""
    count = result.archived_files
    if not (archived_files or count):
        return []
    what = f"{count:,} archived file{'' if count == 1 else 's'}"
    if dry_run:
        if archived_files:
            return [f"would delete {what}"]
        return [f"would keep {what} (--archived-files deletes them)"]
    pairs = [("archived files kept", count)]
    if files is not None:
        pairs = [
            (FILE_LABELS[name], value)
            for name, value in files.counts().items()
            if value or name == "archived_files_deleted"
        ]
    return [f"{label:<{WIDTH}}  {value}" for label, value in pairs]
