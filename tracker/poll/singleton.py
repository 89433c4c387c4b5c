"""One daemon per SQLite file, enforced with an OS file lock.

The lock lives next to the database file and dies with the process that holds
it, so a killed daemon never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO, Any

from tracker.exceptions import ConfigError


def sqlite_path(store: Any) -> str | None:
    """The file of a SQLite store, None for PostgreSQL and in-memory databases."""
    if store.dialect != "sqlite":
        return None
    database = store.engine.url.database
    return None if database in (None, "", ":memory:") else str(database)


class DaemonLock:
    def __init__(self, database_path: str) -> None:
        self.path = Path(f"{database_path}.daemon-lock")
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ConfigError(
                f"another tracker daemon ({holder}) is already running on this SQLite"
                " database; SQLite supports one daemon per file (use PostgreSQL for several)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class SqliteFileGuard:
    """Notices that the database file was deleted or replaced under a running daemon.

    SQLite keeps writing to the file it opened: after ``rm`` (or a restore that
    moves another file into place) every write lands in an inode nobody can open
    again, and is lost. Comparing the path's device and inode with the ones seen
    at start costs one ``stat`` per database call.
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._identity: tuple[int, int] | None = None

    @classmethod
    def for_store(cls, store: Any) -> SqliteFileGuard | None:
        path = sqlite_path(store)
        return None if path is None else cls(path)

    def remember(self) -> None:
        """Take the file as it is now as the one to keep using."""
        self._identity = self._stat()

    def problem(self) -> str | None:
        """Why the file can no longer be used, or None while it is the same file."""
        current = self._stat()
        if self._identity is None:
            self._identity = current
            return None
        if current is None:
            return f"the SQLite database file {self.path} was deleted"
        if current != self._identity:
            return f"the SQLite database file {self.path} was replaced by another file"
        return None

    def _stat(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (info.st_dev, info.st_ino)
