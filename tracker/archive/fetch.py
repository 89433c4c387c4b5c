"""The archiver's downloads with their real parts: the storage TRACKER_ARCHIVE_URL
names and an HTTP client of their own (own connections and host policy, so a slow
file host never holds a poll). `tracker daemon`, `tracker serve` and `tracker
archive` all download through ``open_fetch``."""

from __future__ import annotations

import contextlib
import logging

from tracker.archive.archiver import DEFAULT_ARCHIVE_CONCURRENCY, Fetch
from tracker.archive.download import Downloaded, download, make_download_client
from tracker.archive.storage import ArchiveStorage, artifact_key, open_storage
from tracker.config import Settings
from tracker.domain import ArtifactJob

log = logging.getLogger("tracker")

#: part files untouched this long are swept when downloads start (seconds)
PARTS_KEPT_SECONDS = 3600.0
#: seconds a file host may stay silent during a download (see tracker.archive.download)
ARCHIVE_TIMEOUT = 60.0


async def open_fetch(
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    *,
    concurrency: int = DEFAULT_ARCHIVE_CONCURRENCY,
) -> Fetch:
    """Download artifacts into the archive until ``stack`` closes."""
    assert settings.archive_url is not None
    storage: ArchiveStorage = open_storage(settings.archive_url)
    stack.push_async_callback(storage.close)
    # Part files of downloads cut short by a crash and never retried (an artifact that
    # failed meanwhile); a retried one replaces its own part when it starts again.
    await storage.sweep_partials(older_than=PARTS_KEPT_SECONDS)
    client = await stack.enter_async_context(
        make_download_client(
            timeout=ARCHIVE_TIMEOUT,
            max_connections=2 * concurrency,
            allowed=settings.archive_allowed_hosts,
        )
    )
    log.info("output files are archived to %s", storage.describe())

    async def fetch(job: ArtifactJob) -> Downloaded:
        return await download(
            client,
            job.source_url,
            storage,
            artifact_key(job.prediction_id, job.position, job.source_url),
            max_bytes=settings.archive_max_bytes,
            api_base=settings.api_base,
            api_key=settings.api_key,
            timeout=ARCHIVE_TIMEOUT,
            defer=True,  # a small file is committed with the others the recorder writes
        )

    return fetch
