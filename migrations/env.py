"""Alembic environment: runs on the connection `tracker db upgrade` hands over,
or on TRACKER_DATABASE_URL when the `alembic` command is used directly."""

from __future__ import annotations

import os

from alembic import context

from tracker.store.engine import make_engine
from tracker.store.tables import metadata

config = context.config


def run_migrations(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    url = os.environ.get("TRACKER_DATABASE_URL", "sqlite:///tracker.db")
    engine = make_engine(url)
    with engine.connect() as conn:
        run_migrations(conn)
    engine.dispose()
