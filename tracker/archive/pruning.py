"""`tracker prune --all --archived-files`: the archived files of the predictions
deleted go too.

Each batch's transaction reads where the stored files of its predictions are
(``stored_url``) before their rows go; once it has committed, the files are
deleted from the archive TRACKER_ARCHIVE_URL names. A file whose URL lies outside
that archive (the archive was moved, or the setting changed since) is left alone
and counted; one already gone counts as missing. Killed between a batch's commit
and its deletions, the files of that batch stay behind with nothing pointing at
them: the price of never deleting a file whose row is still there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tracker.archive.local import LocalStorage
from tracker.archive.storage import ArchiveStorage, StorageError, open_storage
from tracker.exceptions import InvalidInput
from tracker.store.retention import PruneResult
from tracker.store.store import Store

#: a key every storage takes, to learn how its stored URLs begin
_PROBE = "x"
#: reasons kept of files that could not be deleted
MAX_ERRORS = 5


@dataclass(slots=True)
class FilesDeleted:
    """What became of the archived files of the deleted predictions."""

    deleted: int = 0
    missing: int = 0  #: nothing was stored there any more
    elsewhere: int = 0  #: not in this archive: left alone
    failed: int = 0  #: the storage refused (see ``errors``)
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "archived_files_deleted": self.deleted,
            "archived_files_missing": self.missing,
            "archived_files_elsewhere": self.elsewhere,
            "archived_files_not_deleted": self.failed,
        }


async def prune_with_files(
    store: Store, archive_url: str, **prune: Any
) -> tuple[PruneResult, FilesDeleted]:
    """``store.prune(**prune)`` a batch at a time, deleting after each batch the
    archived files of the predictions it deleted."""
    storage = open_storage(archive_url)
    total, gone = PruneResult(), FilesDeleted()
    files: list[str] = []
    try:
        for batch in store.prune_batches(**prune, archived_files=files):
            total += batch
            await delete_stored(storage, files, gone)
            files.clear()
    finally:
        await storage.close()
    return total, gone


async def delete_stored(
    storage: ArchiveStorage, stored_urls: Sequence[str], gone: FilesDeleted
) -> None:
    """Delete each file of ``stored_urls`` that lies in ``storage``, counting in ``gone``."""
    prefix = storage.stored_url(_PROBE).removesuffix(_PROBE)
    for url in stored_urls:
        key = url.removeprefix(prefix) if url.startswith(prefix) else None
        if not key:
            gone.elsewhere += 1
            continue
        try:
            existed = await storage.delete(key)
        except InvalidInput:  # not a key the archive makes: not ours to delete
            gone.elsewhere += 1
            continue
        except StorageError as exc:
            gone.failed += 1
            if len(gone.errors) < MAX_ERRORS:
                gone.errors.append(str(exc))
            continue
        gone.deleted += existed
        gone.missing += not existed
        if isinstance(storage, LocalStorage):
            await asyncio.to_thread(_drop_empty_folder, storage, key)


def _drop_empty_folder(storage: LocalStorage, key: str) -> None:
    """The prediction's folder, once its last file is gone (never anything else)."""
    folder = storage.path(key).parent
    if folder != storage.root:
        with contextlib.suppress(OSError):  # not empty: another file, or a part file
            os.rmdir(folder)
