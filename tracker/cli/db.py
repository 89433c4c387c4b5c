"""`tracker db`: the schema."""

from __future__ import annotations

import click

from tracker.cli.common import database_option, open_store
from tracker.store import migrate, revisions
from tracker.store.store import SCHEMA_HEAD, Store


@click.group("db")
def db_group() -> None:
    """Create or inspect the database schema."""


@db_group.command("upgrade")
@database_option
def upgrade_command(database_url: str) -> None:
    """Create or migrate the schema to the newest revision (safe to run again)."""
    with open_store(database_url, check=False) as store:
        before = store.schema_revision()
        migrate.upgrade(store)
        after = store.schema_revision()
    if before == after:
        click.echo(f"database is up to date (revision {after})")
    else:
        click.echo(f"database migrated from {before or 'empty'} to revision {after}")


@db_group.command("current")
@database_option
def current_command(database_url: str) -> None:
    """Print the schema revision of the database."""
    with Store.open_existing(database_url) as store:  # never creates a SQLite file
        revision = store.schema_revision()
    click.echo(revision or "empty (run `tracker db upgrade`)")
    if revision is not None and not revisions.is_known(revision):
        click.echo(f"Warning: {revisions.too_new_message(revision, SCHEMA_HEAD)}", err=True)
