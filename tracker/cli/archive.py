"""`tracker archive [ID...] [--retry]`: archive the outputs of finished predictions now."""

from __future__ import annotations

import click

from tracker import eventloop
from tracker.archive.runner import ArchiveRun, archive_outputs, checked_ids, require_archive
from tracker.cli.common import Col, database_option, emit, format_option, open_store
from tracker.cli.options import setting_options
from tracker.config import Settings
from tracker.net.policy import HostPolicy
from tracker.text import human

#: the summary as a table: one row per prediction
COLUMNS = (
    Col("prediction_id", "prediction", kind="key"),
    Col("status", priority=2),
    Col("files", kind="count", priority=3),
    Col("stored", kind="count", priority=4),
    Col("failed", kind="count", priority=4),
    Col("pending", kind="count", priority=4),
    Col("stored_bytes", "stored size", kind="bytes", priority=3),
    Col("note", priority=5, floor=24),
)
#: what JSON and CSV have, in this order
RECORD_COLUMNS = tuple(c.name for c in COLUMNS)


@click.command("archive")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option(
    "--retry",
    is_flag=True,
    help="First put failed files back in the queue (of the IDs given, else all of them).",
)
@setting_options("archive_url", "archive_max_bytes", "archive_allowed_hosts")
@format_option()
@database_option
def archive_command(
    ids: tuple[str, ...],
    retry: bool,
    archive_url: str | None,
    archive_max_bytes: int,
    archive_allowed_hosts: HostPolicy,
    fmt: str,
    database_url: str,
) -> None:
    """Archive the output files of finished predictions now.

    Every http(s) URL in the output of the succeeded predictions given (or, with
    no ID, of every succeeded prediction) is queued for the archive, once, and
    downloaded by this command; files of the IDs given that wait for a retry are
    tried at once. A running daemon shares the work without fetching a file
    twice. Prints one row per prediction: how many files are stored, failed or
    still pending, and why a file is not stored.

    Exits 1 when an ID is not registered or a file could not be archived.
    """
    wanted = checked_ids(ids) if ids else None
    settings = Settings.build(
        database_url=database_url,
        archive_url=archive_url,
        archive_max_bytes=archive_max_bytes,
        archive_allowed_hosts=archive_allowed_hosts,
    )
    require_archive(settings.archive_url)
    with open_store(database_url) as store:
        run = eventloop.run(archive_outputs(store, settings, wanted, retry=retry))
    emit((row.record() for row in run.rows), fmt, COLUMNS, data=RECORD_COLUMNS)
    click.echo(summary(run), err=True)
    problems = _problems(run)
    if problems:
        raise click.ClickException(problems)


def summary(run: ArchiveRun) -> str:
    """One line: what this run did."""
    done = [f"{run.stored:,} file{'' if run.stored == 1 else 's'} archived"]
    if run.stored:
        done[0] += f" ({human.size(run.stored_bytes)})"
    if run.failed:
        done.append(f"{run.failed:,} failed")
    if run.retried:
        done.append(f"{run.retried:,} failed file{'' if run.retried == 1 else 's'} re-queued")
    if run.queued:
        done.append(f"{run.queued:,} new in the queue")
    return ", ".join(done)


def _problems(run: ArchiveRun) -> str:
    """The ``Error:`` line's text, or '' when every ID was known and nothing failed."""
    parts = []
    if run.unknown:
        parts.append(f"not registered: {', '.join(run.unknown)}")
    if run.not_stored:
        count = run.not_stored
        parts.append(
            f"{count:,} file{' was' if count == 1 else 's were'} not archived (see the note;"
            " `tracker archive --retry` tries failed ones again)"
        )
    return "; ".join(parts)
