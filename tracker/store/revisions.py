"""Which schema revisions this tracker knows: telling an old database from a newer one."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory


def script_directory() -> ScriptDirectory:
    # alembic is imported here, not at the top: every command imports the store,
    # and only the rare check of an unknown revision needs alembic.
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(resources.files("tracker.migrations")))


def is_known(revision: str) -> bool:
    """Whether ``revision`` is one of this tracker's migrations."""
    from alembic.util.exc import CommandError

    try:
        return script_directory().get_revision(revision) is not None
    except CommandError:
        return False


def too_new_message(revision: str, head: str) -> str:
    """What to tell a user whose database was migrated by a newer tracker."""
    return (
        f"the database is newer than this tracker (schema revision {revision}; this tracker"
        f" knows revisions up to {head}): upgrade the tracker"
    )
