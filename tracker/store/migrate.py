"""Running the alembic migrations from inside the program."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from tracker.exceptions import SchemaTooNew, StoreUnavailable
from tracker.store import revisions
from tracker.store.store import Store


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("tracker.migrations")))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def upgrade(store: Store, revision: str = "head") -> None:
    """Migrate the database to ``revision``; a no-op when it is already there."""
    _run(store, command.upgrade, revision)


def downgrade(store: Store, revision: str) -> None:
    """Migrate the database back to ``revision``."""
    _run(store, command.downgrade, revision)


def _run(store: Store, step: Callable[[Config, str], None], revision: str) -> None:
    refuse_newer(store)
    config = alembic_config()
    try:
        with store.engine.begin() as conn:
            config.attributes["connection"] = conn
            step(config, revision)
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"migration failed: {exc}") from exc


def refuse_newer(store: Store) -> None:
    """Raise ``SchemaTooNew`` when a newer tracker migrated the database: alembic
    cannot move from a revision it does not know ("Can't locate revision")."""
    current = store.schema_revision()
    if current is not None and not revisions.is_known(current):
        raise SchemaTooNew(revisions.too_new_message(current, head_revision()))
