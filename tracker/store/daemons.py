"""Daemons registering themselves, heartbeating, and the health view `tracker status` reads."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from tracker.domain import ArtifactState, DeliveryState, Tracking
from tracker.exceptions import ConfigError
from tracker.store.base import StoreBase, insert_ignore
from tracker.store.tables import artifacts, daemons, deliveries, predictions


@dataclass(frozen=True, slots=True)
class DaemonInfo:
    name: str
    host: str
    pid: int
    version: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    polls: int
    live: bool


@dataclass(frozen=True, slots=True)
class Health:
    checked_at: datetime
    daemons: list[DaemonInfo]
    active_predictions: int
    oldest_overdue_poll: datetime | None  #: the earliest next_poll_at in the past
    pending_deliveries: int
    dead_deliveries: int
    oldest_overdue_delivery: datetime | None
    pending_artifacts: int = 0  #: output files waiting to be archived
    failed_artifacts: int = 0  #: output files the archive gave up on

    @property
    def live_daemons(self) -> list[DaemonInfo]:
        return [d for d in self.daemons if d.live]

    @property
    def schedule_lag(self) -> float:
        """Seconds the most overdue poll is late (0 when nothing is overdue)."""
        if self.oldest_overdue_poll is None:
            return 0.0
        return max(0.0, (self.checked_at - self.oldest_overdue_poll).total_seconds())


class DaemonOps(StoreBase):
    """Daemon bookkeeping (mixed into ``Store``)."""

    def register_daemon(
        self,
        *,
        name: str,
        host: str,
        pid: int,
        version: str,
        now: datetime,
        live_within: timedelta,
        pid_alive: Callable[[int], bool] = lambda _pid: True,
        quiet_for: timedelta | None = None,
    ) -> None:
        """Record a starting daemon; refuse a name a live daemon already uses.

        A daemon counts as live while its heartbeat is recent (``live_within``),
        unless it ran on this host, ``pid_alive`` says its process is gone (killed,
        so it never said it stopped) and it has been silent for ``quiet_for``: then
        a restart under the same name waits that long, not ``live_within``. The
        silence guards against a live daemon in another PID namespace (a container)
        that shares this host name: it heartbeats more often than that.
        """
        with self._transaction() as conn:
            row = conn.execute(
                select(
                    daemons.c.heartbeat_at, daemons.c.stopped_at, daemons.c.host, daemons.c.pid
                ).where(daemons.c.name == name)
            ).first()
            live = (
                row is not None
                and row.stopped_at is None
                and row.heartbeat_at > now - live_within
                and not (
                    quiet_for is not None
                    and row.heartbeat_at <= now - quiet_for
                    and row.host == host
                    and not pid_alive(row.pid)
                )
            )
            if live and row is not None:
                raise ConfigError(
                    f"a daemon named {name!r} is already running (last heartbeat"
                    f" {row.heartbeat_at:%H:%M:%S} UTC); give this one another --name"
                )
            values = {
                "host": host,
                "pid": pid,
                "version": version,
                "started_at": now,
                "heartbeat_at": now,
                "stopped_at": None,
                "polls": 0,
            }
            conn.execute(insert_ignore(self.dialect, daemons), [{"name": name, **values}])
            conn.execute(update(daemons).where(daemons.c.name == name).values(values))

    def heartbeat(
        self,
        name: str,
        *,
        now: datetime,
        polls: int,
        lease_until: datetime,
        in_flight: Collection[str] = (),
    ) -> None:
        """Say this daemon is alive, and extend the leases of the polls it has in flight."""
        with self._transaction() as conn:
            conn.execute(
                update(daemons)
                .where(daemons.c.name == name)
                .values(heartbeat_at=now, polls=polls, stopped_at=None)
            )
            if in_flight:
                # SKIP LOCKED: a row locked right now is being written by its poll,
                # which ends the claim anyway; waiting for it could deadlock.
                held = (
                    select(predictions.c.id)
                    .where(
                        predictions.c.id.in_(sorted(in_flight)),
                        predictions.c.claimed_by == name,
                        predictions.c.next_poll_at < lease_until,
                    )
                    .with_for_update(skip_locked=True)
                )
                conn.execute(
                    update(predictions)
                    .where(predictions.c.id.in_(held.scalar_subquery()))
                    .values(next_poll_at=lease_until)
                )

    def mark_stopped(self, name: str, *, now: datetime, polls: int) -> None:
        with self._transaction() as conn:
            conn.execute(
                update(daemons)
                .where(daemons.c.name == name)
                .values(stopped_at=now, heartbeat_at=now, polls=polls)
            )

    def health(self, *, now: datetime, live_within: timedelta) -> Health:
        active = predictions.c.tracking == Tracking.ACTIVE.value
        pending = deliveries.c.state == DeliveryState.PENDING.value
        with self._reading() as conn:
            rows = conn.execute(select(daemons).order_by(daemons.c.started_at)).all()
            active_count = conn.execute(
                select(func.count()).select_from(predictions).where(active)
            ).scalar_one()
            # ORDER BY ... LIMIT 1 walks the partial due index; min() may not.
            overdue = conn.execute(
                select(predictions.c.next_poll_at)
                .where(active, predictions.c.next_poll_at <= now)
                .order_by(predictions.c.next_poll_at)
                .limit(1)
            ).scalar()
            # One count per state, each over its own partial index (due, dead).
            counts = {
                state: conn.execute(
                    select(func.count()).select_from(deliveries).where(deliveries.c.state == state)
                ).scalar_one()
                for state in (DeliveryState.PENDING.value, DeliveryState.DEAD.value)
            }
            files = {
                state: conn.execute(
                    select(func.count()).select_from(artifacts).where(artifacts.c.state == state)
                ).scalar_one()
                for state in (ArtifactState.PENDING.value, ArtifactState.FAILED.value)
            }
            late_delivery = conn.execute(
                select(deliveries.c.next_attempt_at)
                .where(pending, deliveries.c.next_attempt_at <= now)
                .order_by(deliveries.c.next_attempt_at)
                .limit(1)
            ).scalar()
        infos = [
            DaemonInfo(
                name=r.name,
                host=r.host,
                pid=r.pid,
                version=r.version,
                started_at=r.started_at,
                heartbeat_at=r.heartbeat_at,
                stopped_at=r.stopped_at,
                polls=r.polls,
                live=r.stopped_at is None and r.heartbeat_at > now - live_within,
            )
            for r in rows
        ]
        return Health(
            checked_at=now,
            daemons=infos,
            active_predictions=active_count,
            oldest_overdue_poll=overdue,
            pending_deliveries=counts.get(DeliveryState.PENDING.value, 0),
            dead_deliveries=counts.get(DeliveryState.DEAD.value, 0),
            oldest_overdue_delivery=late_delivery,
            pending_artifacts=files[ArtifactState.PENDING.value],
            failed_artifacts=files[ArtifactState.FAILED.value],
        )
