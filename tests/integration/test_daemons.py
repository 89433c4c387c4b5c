"""The daemons table: who may start under which name."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from tracker.exceptions import ConfigError
from tracker.poll.daemon import pid_alive
from tracker.store.store import Store

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
LIVE = timedelta(seconds=30)


QUIET = timedelta(seconds=10)


def register(store: Store, *, host: str, pid: int, at: datetime, alive: bool = True) -> None:
    store.register_daemon(
        name="d",
        host=host,
        pid=pid,
        version="test",
        now=at,
        live_within=LIVE,
        pid_alive=lambda _pid: alive,
        quiet_for=QUIET,
    )


def test_a_live_daemons_name_is_refused(store: Store) -> None:
    register(store, host="h1", pid=10, at=T0)
    with pytest.raises(ConfigError, match="already running"):
        register(store, host="h2", pid=11, at=T0 + timedelta(seconds=5))
    with pytest.raises(ConfigError, match="already running"):
        register(store, host="h1", pid=11, at=T0 + timedelta(seconds=5), alive=True)


def test_a_killed_daemon_on_this_host_can_be_restarted_once_it_is_quiet(store: Store) -> None:
    """Its process is gone and it has missed two heartbeats: no need to wait for the
    30 s after which any daemon counts as silent."""
    register(store, host="h1", pid=10, at=T0)
    # Just killed: it might still be a live daemon in another PID namespace.
    with pytest.raises(ConfigError, match="already running"):
        register(store, host="h1", pid=11, at=T0 + timedelta(seconds=1), alive=False)
    register(store, host="h1", pid=11, at=T0 + QUIET, alive=False)
    health = store.health(now=T0 + QUIET, live_within=LIVE)
    assert [(d.name, d.pid) for d in health.daemons] == [("d", 11)]


def test_a_quiet_daemon_on_another_host_keeps_its_name_until_silent(store: Store) -> None:
    register(store, host="h1", pid=10, at=T0)
    with pytest.raises(ConfigError, match="already running"):
        register(store, host="h2", pid=11, at=T0 + QUIET, alive=False)


def test_only_another_process_counts_as_alive() -> None:
    assert not pid_alive(os.getpid())  # a restarted container can reuse its PID
    assert pid_alive(os.getppid())


def test_a_silent_or_stopped_daemons_name_is_free(store: Store) -> None:
    register(store, host="h1", pid=10, at=T0)
    register(store, host="h2", pid=20, at=T0 + LIVE + timedelta(seconds=1))
    store.mark_stopped("d", now=T0 + timedelta(seconds=40), polls=0)
    register(store, host="h3", pid=30, at=T0 + timedelta(seconds=41))
