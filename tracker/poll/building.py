"""Assembling a daemon from its parts: the poller, the outbox, the observation writer,
the archiver, the deadlines and the database runner they share (``build_daemon``;
``tracker.poll.assembly.open_daemon`` gives it its real connections)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping

from tracker.archive.archiver import Archiver, Fetch
from tracker.callbacks.outbox import Outbox, Sender
from tracker.callbacks.retry import RetryPolicy
from tracker.config import Settings
from tracker.net.failurelog import FailureLog
from tracker.observer import NO_OBSERVER, PollObserver
from tracker.poll.cancel import Canceller, CancelUpstream
from tracker.poll.daemon import Daemon, archive_log, outbox_log
from tracker.poll.deadlines import Deadlines
from tracker.poll.poller import Poller, Upstream
from tracker.poll.pushes import PushApplier
from tracker.poll.schedule import PollPolicy
from tracker.poll.singleton import sqlite_path
from tracker.poll.writer import ObservationWriter
from tracker.store.runner import DatabaseRunner
from tracker.store.store import Store


def build_daemon(
    store: Store,
    upstream: Upstream,
    settings: Settings,
    *,
    policy: PollPolicy | None = None,
    senders: Mapping[str, Sender] | None = None,
    observer: PollObserver = NO_OBSERVER,
    fetch: Fetch | None = None,
) -> Daemon:
    """A daemon with its parts, all sharing one database runner; ``observer`` is told
    what they do (``tracker.observer``: `tracker serve`'s metrics). With
    ``fetch`` (TRACKER_ARCHIVE_URL) it archives output files too."""
    owner = settings.name or f"{socket.gethostname()}:{os.getpid()}"
    stopping = asyncio.Event()
    # SQLite has one writer at a time; more threads would only queue on its lock.
    db = DatabaseRunner(workers=1 if store.dialect == "sqlite" else 4, stopping=stopping.is_set)
    outbox = Outbox(
        store,
        senders or {},
        owner=owner,
        db=db,
        policy=RetryPolicy(settings.retry_schedule),
        lease_seconds=settings.lease_seconds,
        failure_log=FailureLog(outbox_log, interval=settings.log_interval),
        observer=observer,
    )
    archiver = None
    if fetch is not None:
        archiver = Archiver(
            store,
            fetch,
            owner=owner,
            db=db,
            lease_seconds=settings.lease_seconds,
            retry_delays=settings.archive_retry_schedule,
            default_callbacks=settings.default_callbacks,
            on_deliveries=outbox.wake,
            failure_log=FailureLog(archive_log, interval=settings.log_interval),
        )
    writer = ObservationWriter(
        store.apply_observations,
        db.write,
        owner=owner,
        default_callbacks=settings.default_callbacks,
        handoff=outbox.handoff,
        on_handoff=outbox.accept,
        observer=observer,
        archive=archiver is not None,
        archive_handoff=archiver.handoff if archiver is not None else lambda: None,
        on_artifacts=archiver.accept if archiver is not None else lambda _jobs, _left: None,
    )
    policy = policy or PollPolicy(settings.poll_min, settings.poll_max)
    poller = Poller(
        store,
        upstream,
        db,
        writer,
        settings,
        owner=owner,
        policy=policy,
        on_deliveries=outbox.wake,
        observer=observer,
    )
    deadlines = None
    if isinstance(upstream, CancelUpstream):  # cancels share the polls' gate
        canceller = Canceller(store, db.write, upstream, poller.gate, follow_up=policy.poll_min)
        deadlines = Deadlines(
            store,
            db,
            canceller,
            default_callbacks=settings.default_callbacks,
            on_deliveries=outbox.wake,
            ready=lambda: poller.gate.auth_error is None and not poller.gate.remaining_pause(),
        )
    # The upstream's own webhooks (`tracker serve`) go through the same writer.
    pushes = PushApplier(
        store,
        db,
        writer,
        policy,
        default_callbacks=settings.default_callbacks,
        default_deadline=settings.default_deadline,
        on_deliveries=outbox.wake,
    )
    return Daemon(
        store,
        settings,
        owner=owner,
        db=db,
        poller=poller,
        outbox=outbox,
        writer=writer,
        stopping=stopping,
        sqlite_file=sqlite_path(store),
        health=store.health,
        pushes=pushes,
        archiver=archiver,
        deadlines=deadlines,
    )
